"""The experiment runner's pure parts: the workflow convention, prompt lists, the plan of items, the resumable
state, the work queue, the average over prompts, the paper tables, and the report files for a finished state."""

from __future__ import annotations

import json
import threading

import pytest

from ddistill_dev.gpu.runner_graphs import tiny_workflow
from ddistill_dev.host.comfy_host import PACK_ROOT
from runner import paper
from runner.results import Cell, average
from runner.work import Item, RunState, StateError, WorkQueue, fingerprint, plan
from runner.workflow import WorkflowError, load_prompts, load_workflow, parse_workflow


def test_build_sets_prompt_seed_batch_and_keeps_only_the_method_and_the_static_nodes():
    wf = parse_workflow(tiny_workflow())
    assert list(wf.methods) == ["base", "hybrid"]
    assert wf.prompt_nodes == ["3"] and sorted(wf.seed_nodes) == ["10", "20"] and wf.batch_nodes == ["4"]
    assert wf.default_batch == 3 and wf.meter_backend.startswith("efficientnet")
    g = wf.build("hybrid", "a cat", 17, 5)
    assert set(g) == {"1", "2", "3", "4", "5", "20", "21", "22", "23", "24"}  # no base branch, no PreviewImage
    assert g["3"]["inputs"]["text"] == "a cat" and g["20"]["inputs"]["seed"] == 17
    assert g["4"]["inputs"]["batch_size"] == 5
    assert wf.graph["3"]["inputs"]["text"] == "" and wf.graph["20"]["inputs"]["seed"] == 0  # original untouched
    # the distilled model's loader (2) travels with the base graph too: ComfyUI keeps its output cached for the next
    # hybrid graph instead of dropping it (it does not run: nothing of the base graph needs it)
    assert wf.static_nodes == ["1", "2", "5"]
    assert set(wf.build("base", "x", 1, 2)) == {"1", "2", "3", "4", "5", "10", "11", "12", "13"}


def _broken(change):
    g = tiny_workflow()
    change(g)
    with pytest.raises(WorkflowError) as e:
        parse_workflow(g, "wf.json")
    return str(e.value)


def test_workflow_errors_name_the_node_and_the_fix():
    assert "has no node titled 'prompt'" in _broken(lambda g: g["3"].pop("_meta"))
    assert "has no node titled 'seed'" in _broken(lambda g: [g[k].pop("_meta") for k in ("10", "20")])
    msg = _broken(lambda g: [g[k].pop("_meta") for k in ("12", "13", "23", "24")])
    assert "no node titled 'method: NAME'" in msg and "CONVENTIONS.md" in msg
    assert "method 'hybrid' has no SaveImage/PreviewImage" in _broken(lambda g: g["23"].pop("_meta"))
    msg = _broken(lambda g: g["24"]["inputs"].update(images=["11", 0]))
    assert "does not measure the batch that node 23 saves" in msg
    msg = _broken(lambda g: g["21"].update(_meta={"title": "method: hybrid"}))
    assert "node 21 (DDistill_DistilledContinueSampler, titled 'method: hybrid') carries a method title" in msg
    assert "does not use any node titled 'seed'" in _broken(lambda g: g["20"].pop("_meta"))
    assert "different backends" in _broken(lambda g: g["24"]["inputs"].update(backend="dreamsim_ensemble"))


def test_ui_format_and_non_workflow_files(tmp_path):
    ui = {"last_node_id": 3, "nodes": [{"id": 1, "type": "KSampler"}], "links": [], "version": 0.4}
    (tmp_path / "ui.json").write_text(json.dumps(ui))
    with pytest.raises(WorkflowError, match=r"UI \(canvas\) format.*workflows/api/.*Export \(API\)"):
        load_workflow(tmp_path / "ui.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        load_workflow(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(WorkflowError, match="not an API-format workflow"):
        load_workflow(tmp_path / "list.json")
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.json")
    (tmp_path / "body.json").write_text(json.dumps({"prompt": tiny_workflow(), "client_id": "x"}))
    assert list(load_workflow(tmp_path / "body.json").methods) == ["base", "hybrid"]


def test_shipped_api_workflows_follow_the_convention():
    files = sorted((PACK_ROOT / "workflows" / "api").glob("*.json"))
    if not files:
        pytest.skip("no workflows/api/*.json in this checkout")
    for f in files:
        wf = load_workflow(f)
        assert wf.methods and wf.prompt_nodes and wf.seed_nodes, f.name
        for name in wf.methods:
            g = wf.build(name, "image of a car", 3, 2)
            assert any(n["inputs"].get("text") == "image of a car" for n in g.values()), (f.name, name)


def test_prompt_lists(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("# comment\nsunset beach\n  cute puppy  \n\n")
    assert load_prompts(p) == ["sunset beach", "cute puppy"]
    p.write_text("a\n\nb\na\n")
    with pytest.raises(WorkflowError) as e:
        load_prompts(p)
    assert "line 2 is blank" in str(e.value) and "line 4 repeats line 1 ('a')" in str(e.value)
    p.write_text("# only a comment\n")
    with pytest.raises(WorkflowError, match="holds no prompt"):
        load_prompts(p)


def test_plan_chunks_seeds_and_batches():
    items = plan(["base", "hybrid"], ["a", "b"], seeds=5, batch=2, seed_start=10)
    assert len(items) == 2 * 2 * 3 and len({i.id for i in items}) == len(items)
    a_base = [i for i in items if i.method == "base" and i.prompt == "a"]
    assert [(i.seed, i.batch, i.first_sample) for i in a_base] == [(10, 2, 0), (11, 2, 2), (12, 1, 4)]
    with pytest.raises(ValueError, match="--seeds: 1 is too few"):
        plan(["m"], ["a"], 1, 1, 0)


def test_state_records_once_and_resumes(tmp_path):
    item = Item("hybrid", 0, "a", 0, 0, 2, 0)
    st = RunState(tmp_path, "fp1")
    (tmp_path / "img.png").write_bytes(b"x")
    assert st.record(item, {"images": ["img.png"]}) is True
    assert st.record(item, {"images": ["img.png"]}) is False  # a second completion is not counted
    with open(tmp_path / "state.jsonl", "a") as f:
        f.write('{"kind": "done", "item": "cut sho')  # a crash mid-line
    again = RunState(tmp_path, "fp1")
    assert again.is_done(item) and len(again.done) == 1
    (tmp_path / "img.png").unlink()
    assert not RunState(tmp_path, "fp1").is_done(item)  # an image gone: the item runs again
    with pytest.raises(StateError, match="different workflow.*--fresh"):
        RunState(tmp_path, "fp2")
    assert RunState(tmp_path, "fp2", fresh=True).done == {}
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})


def test_work_queue_gives_back_and_retries():
    a, b = Item("m", 0, "a", 0, 0, 2, 0), Item("m", 0, "a", 1, 1, 2, 2)
    q = WorkQueue([a, b], max_attempts=2)
    assert q.take() == a and q.take() == b
    got = []
    t = threading.Thread(target=lambda: got.append(q.take()))  # waits: items are in flight elsewhere
    t.start()
    q.give_back(a)  # a server died with `a` in flight
    t.join(5)
    assert got == [a]
    q.failed_attempt(b, "boom")  # first failure: retried
    assert q.take() == b
    q.failed_attempt(b, "boom again")
    assert q.failed == {b.id: "boom again"}
    q.finish(a)
    assert q.take() is None  # nothing pending, nothing in flight


def test_average_over_prompts_combines_intervals():
    cells = [
        Cell("m", "a", 10, 45, 0.30, 0.1, (0.26, 0.34), "graph"),
        Cell("m", "b", 10, 45, 0.40, 0.1, (0.37, 0.43), "graph"),
    ]
    avg = average(cells)
    se = ((0.08 / 3.919927969) ** 2 + (0.06 / 3.919927969) ** 2) ** 0.5 / 2
    assert avg["mean"] == pytest.approx(0.35)
    assert avg["ci"] == pytest.approx((0.35 - 1.959963984540054 * se, 0.35 + 1.959963984540054 * se))
    assert average([cells[0], Cell("m", "c", 2, 1, 0.2, 0.0, None, "graph")])["ci"] is None


def test_paper_tables():
    assert paper.TABLES["table3"]["rows"]["person"]["distilled"] == 0.347
    assert paper.TABLES["tableE1"]["rows"]["image of a car"]["replace final"] == 0.251
    assert (
        paper.pick_table("auto", ["base", "distilled", "hybrid"], ["a photo of a sunset beach", "cute puppy"])
        == "table3"
    )
    assert paper.pick_table("auto", ["base", "distilled", "hybrid", "replace final"], ["image of a car"]) == "tableE1"
    assert paper.pick_table("auto", ["x"], ["a cat"]) is None
    with pytest.raises(ValueError, match="--paper"):
        paper.pick_table("table9", [], [])


def test_shipped_prompt_lists_match_the_paper_rows():
    table3 = load_prompts(PACK_ROOT / "runner" / "prompts" / "table3.txt")
    assert [paper.paper_row("table3", p) for p in table3] == list(paper.TABLES["table3"]["rows"].values())
    car = load_prompts(PACK_ROOT / "runner" / "prompts" / "car.txt")
    assert car == ["image of a car"] and paper.paper_row("tableE1", car[0])["hybrid"] == 0.350


def test_cli_bad_input_exits_2_without_a_report(tmp_path, capsys):
    from runner.cli import main

    ui = {"last_node_id": 1, "nodes": [], "links": [], "version": 0.4}
    (tmp_path / "ui.json").write_text(json.dumps(ui))
    (tmp_path / "api.json").write_text(json.dumps(tiny_workflow()))
    (tmp_path / "p.txt").write_text("a car\n\na car\n")
    (tmp_path / "ok.txt").write_text("a car\n")
    cases = [
        (["ui.json", "ok.txt"], "UI (canvas) format"),
        (["api.json", "p.txt"], "line 2 is blank"),
        (["api.json", "ok.txt", "--seeds", "1"], "--seeds: 1 is too few"),
    ]
    for (wf, prompts, *extra), message in cases:
        rc = main(
            [
                str(tmp_path / wf),
                "--prompts",
                str(tmp_path / prompts),
                "--out",
                str(tmp_path / "out"),
                "--server",
                "127.0.0.1:9",
                *extra,
            ]
        )
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and message in err, err
        assert not (tmp_path / "out" / "report.json").exists()


def test_progress_bars_overall_and_per_server():
    import io

    from runner.progress import Progress, bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = Progress(total=4, already_done=1, servers=["http://a:1", "http://b:2"], stream=stream)
    item = Item("hybrid", 0, "a red car", 0, 7, 3, 0)
    p.started("http://a:1", item)
    p.step("http://a:1", 2, 4)
    p.render(force=True)
    first = stream.getvalue()
    assert "overall  [" in first and "1/4 items" in first
    assert "http://a:1: 0 done, running step [#####-----]  50.0% hybrid | a red car | seed 7 x3" in first
    p.finished("http://a:1", item)
    p.dead("http://b:2", "server http://b:2: connection lost", 1)
    p.render(force=True)
    again = stream.getvalue()[len(first) :]
    # the message replaces the bars (cursor up 3 lines, clear), stays, and the bars are drawn again below it
    assert again.startswith(
        "\x1b[F\x1b[F\x1b[F\x1b[Jserver http://b:2: connection lost; server http://b:2 "
        "stopped, 1 unfinished item(s) went back to the queue\n\x1b[2Koverall"
    )
    assert "2/4 items" in again and "http://a:1: 1 done, running \n" in again and "http://b:2: 0 done, gone" in again
    assert bar(1, 4, 8) == "[##------]  25.0%"

"""The sampler nodes through the real ComfyUI server: validation, execution errors, interrupt, equality."""

import time

import pytest
import torch

from ddistill_dev.gpu.runner_graphs import hybrid_prompt, node, tiny_conditioning
from ddistill_dev.host.comfy_server import ComfyServer, execution_error


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy")) as s:
        yield s


def node_errors(body):
    return str(body.get("node_errors", body))


@pytest.mark.parametrize(
    "inputs,bad_input,needle",
    [
        ({"base_steps": -1}, "base_steps", "smaller than min of 0"),
        ({"steps": 0}, "steps", "smaller than min of 2"),
        ({"steps": 1}, "steps", "smaller than min of 2"),
        ({"latent_image": ["1", 0]}, "latent_image", "MODEL"),  # a MODEL output linked to a LATENT input
    ],
)
def test_validation_errors_once_on_the_right_input(server, inputs, bad_input, needle):
    """Queue-time errors are ComfyUI's own: one per problem, attached to the input at fault."""
    prompt = hybrid_prompt()
    prompt["5"]["inputs"].update(inputs)
    status, body = server.queue(prompt)
    errors = body["node_errors"]["5"]["errors"]
    assert status == 400 and len(errors) == 1, body
    assert errors[0]["extra_info"]["input_name"] == bad_input and needle in str(errors[0]), errors


def test_rule_between_inputs_is_one_named_error_when_run(server):
    prompt = hybrid_prompt()
    prompt["5"]["inputs"]["base_steps"] = 4
    err = execution_error(server.run(prompt))
    assert "base_steps: 4 leaves no step for the distilled model" in err["exception_message"], err
    assert err["node_type"] == "DDistill_BaseFirstStepSampler"


@pytest.mark.parametrize(
    "inputs,needle",
    [
        ({"handover_amplification": 0.001}, "handover_amplification: no step before the last reaches A <= 0.001"),
        ({"handover_amplification": 0.0}, "handover_amplification: must be above 0, got 0.0"),
        ({"handover_sigma": 20.0}, "handover_sigma: 20 is above the schedule's start (sigma 14.61)"),
        ({"handover_sigma": 0.1}, "handover_sigma: the schedule reaches sigma <= 0.1 only at its last step"),
    ],
)
def test_noise_level_handover_errors_then_server_keeps_serving(server, inputs, needle):
    """A handover the schedule never reaches (or a non-positive one) is one named error on the input; the next
    prompt, the rule's default, runs: SDXL's lcm schedule hands over at t = 759 (k = 1), as the paper does."""
    prompt = hybrid_prompt()
    prompt["5"]["inputs"].update(base_steps=0, **inputs)
    err = execution_error(server.run(prompt))
    assert needle in err["exception_message"] and err["node_type"] == "DDistill_BaseFirstStepSampler", err
    prompt["5"]["inputs"].update(handover_amplification=18.2, handover_sigma=0.0)
    assert server.run(prompt)["status"]["status_str"] == "success"
    assert "hands over to the distilled model at k = 1 of 4 steps, sigma 4.261, A 18.2" in server.log_text()


@pytest.mark.parametrize(
    "mode,needle",
    [("nan", "latent_image: the latent contains NaN"), ("channels16", "latent_image: the latent has 16 channels")],
)
def test_execution_errors_then_server_keeps_serving(server, mode, needle):
    prompt = hybrid_prompt()
    prompt["4"] = node("DDTest_BadLatent", {"mode": mode, "batch": 2})
    entry = server.run(prompt)
    err = execution_error(entry)
    assert entry["status"]["status_str"] == "error" and needle in err["exception_message"], err
    assert err["node_type"] == "DDistill_BaseFirstStepSampler"
    assert server.run(hybrid_prompt())["status"]["status_str"] == "success"


def test_pair_error_through_server(server):
    prompt = hybrid_prompt()
    prompt["2"]["inputs"]["kind"] = "sd15"
    prompt["8"] = tiny_conditioning("sd15")
    prompt["6"]["inputs"].update(positive=["8", 0], negative=["8", 0])
    err = execution_error(server.run(prompt))
    assert (
        "distilled_model is BaseModel" in err["exception_message"]
        and "latent spaces differ" in err["exception_message"]
    )


def test_server_result_equals_in_process(server, pack):
    """The latent saved by the server equals the same graph run in process (same seeds, same weights)."""
    import importlib

    from ddistill_dev.models import tiny_models as tm

    entry = server.run(hybrid_prompt(batch=2, seed=3))
    saved = server.saved_latent(entry, "7")
    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    cond = tm.make_conditioning("sdxl", 1, 0)
    latent = {"samples": torch.zeros(2, 4, 16, 16)}
    mid = hn.BaseFirstStepSampler.execute(tm.make_model("sdxl", 1), cond, cond, latent, 3, 1.0, 1, 4, "lcm", "lcm")
    out = hn.DistilledContinueSampler.execute(tm.make_model("sdxl", 2), cond, cond, mid.result[0], 1.0)
    assert torch.equal(saved, out.result[0]["samples"].contiguous())


def test_interrupt_stops_cleanly_and_next_prompt_runs(server):
    prompt = hybrid_prompt(batch=2)
    prompt["4"]["inputs"].update(width=512, height=512)
    prompt["5"]["inputs"].update(steps=400, seed=99, scheduler="sgm_uniform")
    status, body = server.queue(prompt)
    assert status == 200
    deadline = time.time() + 60
    while not server.get("/queue")["queue_running"] and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    server.post("/interrupt")
    entry = server.wait(body["prompt_id"], timeout=120)
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds, entry["status"]["messages"]
    assert server.run(hybrid_prompt())["status"]["status_str"] == "success"

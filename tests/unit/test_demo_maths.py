"""Pure parts of the demo: the DMD objective, the digit maps, the classifier's coverage, the report's checks,
and the demo workflow against the runner's conventions (no server)."""

import pytest
import torch

from ddistill import demo_model as dm
from demo import report  # noqa: E402
from demo.classifier import DigitClassifier, coverage, images_to_digits  # noqa: E402
from demo.common import WEIGHTS  # noqa: E402
from demo.distill import dmd_target  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from safetensors.torch import load_file

    sd = load_file(str(WEIGHTS / "digits_base.safetensors"))
    return sd["images"], sd["labels"]


def test_digit_maps_roundtrip_and_noise_shrink():
    d = torch.rand(5, 64) * 2 - 1
    x = dm.from_digits(d)
    assert x.shape == (5, 3, 32, 32) and torch.allclose(dm.to_digits(x), d, atol=1e-6)
    noise = torch.randn(20000, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(dm.to_digits(noise).std()) == pytest.approx(1 / dm.NOISE_SHRINK, rel=0.02)


def test_sigma_at_interpolates_comfyui_table():
    table = dm.training_sigmas()
    assert float(table[999]) == pytest.approx(14.6146, abs=1e-3) and float(table[759]) == pytest.approx(4.261, abs=1e-3)
    s = dm.sigma_at(torch.tensor([999.0, 499.0, 10.5]), table.log())
    assert torch.allclose(s[:2], table[[999, 499]])
    assert table[10] < s[2] < table[11]


def test_dmd_target_vanishes_when_student_matches_data(digits):
    """Exact scores: if the student's samples are the data set itself, D_fake = D_real and the gradient is 0."""
    images = digits[0][:200]
    s = torch.full((200,), 0.5)
    target = dmd_target(images, images, s, torch.randn(200, 64), dm.posterior_mean)
    assert torch.allclose(target, images, atol=1e-5)


def test_dmd_target_spreads_a_collapsed_batch(digits):
    """A batch collapsed near one digit is pushed apart (the fake score's repulsion) and toward real digits."""
    images = digits[0]
    g = torch.Generator().manual_seed(0)
    x0 = images[:1] + 0.05 * torch.randn(64, 64, generator=g)
    s = torch.full((64,), 0.6)
    target = dmd_target(x0, images, s, torch.randn(64, 64, generator=g), dm.posterior_mean)
    assert float(torch.pdist(target).mean()) > 2 * float(torch.pdist(x0).mean())


def test_classifier_weights_and_coverage(digits):
    from safetensors.torch import load_file

    clf = DigitClassifier()
    clf.load_state_dict(load_file(str(WEIGHTS / "digit_classifier.safetensors")))
    x, y = digits
    with torch.no_grad():
        acc = float((clf(x).argmax(1) == y).float().mean())
    assert acc > 0.93  # trained on the 500 held-out digits only
    # through the IMAGE path (32x32 RGB in [0, 1]) the same digits give the same classes
    img = ((dm.from_digits(x[:50]) + 1) / 2).permute(0, 2, 3, 1)
    assert torch.allclose(images_to_digits(img), x[:50], atol=1e-6)
    c = coverage(torch.bincount(y, minlength=10))
    assert c["classes_covered"] == 10 and c["entropy_bits"] == pytest.approx(3.32, abs=0.01)
    assert coverage(torch.tensor([50, 0, 0, 0, 0, 0, 0, 0, 0, 0]))["entropy_bits"] == 0.0


def test_report_checks_and_bootstrap():
    paper_like = {"base": 1.0, "hybrid": 0.95, "skip first": 0.7, "distilled": 0.5, "replace final": 0.52}
    assert all(ok for _, ok, _ in report.checks(paper_like))
    flat = {"base": 1.0, "hybrid": 0.85, "skip first": 0.84, "distilled": 0.83, "replace final": 0.9}
    assert [ok for _, ok, _ in report.checks(flat)] == [False, False, True, False]
    x = torch.arange(100.0)
    lo, hi = report.bootstrap_ci(lambda i: float(x[i].mean()), 100)
    assert lo < 49.5 < hi and hi - lo < 15


def test_demo_workflow_follows_runner_conventions(tmp_path):
    import json

    from demo import workflow
    from runner.workflow import load_workflow

    path = tmp_path / "demo.json"
    path.write_text(json.dumps(workflow.build(8)))
    wf = load_workflow(str(path))
    assert list(wf.methods) == report.METHODS
    assert wf.default_batch == 8
    for m in wf.methods.values():
        assert m.image_node and m.meter_node and m.x0_node


def test_base_weights_are_the_sklearn_digits_split(digits):
    """Provenance: the stored base images/labels are exactly demo/common.py's split of scikit-learn's digits."""
    pytest.importorskip("sklearn", reason="scikit-learn (tests/requirements.txt) checks the data provenance")
    from demo.common import digits_split

    x_tr, y_tr, x_ho, y_ho = digits_split()
    assert torch.equal(x_tr, digits[0]) and torch.equal(y_tr, digits[1])
    assert len(x_ho) == 500 and int((torch.cdist(x_ho, x_tr).min(1).values == 0).sum()) == 0  # disjoint


def test_training_is_seeded(digits):
    """A few steps of demo/train.py's student training give identical weights twice (and finite ones)."""
    from demo.train import train_student

    runs = [
        train_student(dm, digits[0][:256], warmup_iters=5, dmd_iters=2, batch=32, log=lambda *_: None)[0]
        for _ in range(2)
    ]
    a, b = (r.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) and torch.isfinite(a[k]).all() for k in a)

"""Pure parts of the demo: the DMD objective, the digit maps, the classifier's coverage, the report's checks,
and the demo workflow against the runner's conventions (no server)."""

import pytest
import torch

from ddistill import demo_model as dm
from demo import report
from demo.classifier import DigitClassifier, coverage, images_to_digits
from demo.common import WEIGHTS
from demo.distill import dmd_target


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
    for name, m in wf.methods.items():
        assert m.image_node and m.meter_node and bool(m.x0_node) == (name in workflow.WITH_X0)
    assert {"base", "hybrid", "hybrid noise level", "flow hybrid noise level"} <= workflow.WITH_X0


def test_base_weights_are_the_sklearn_digits_split(digits):
    """Provenance: the stored base images/labels are exactly demo/train.py's split of scikit-learn's digits."""
    pytest.importorskip("sklearn", reason="scikit-learn (tests/requirements.txt) checks the data provenance")
    from demo.train import digits_split

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


# --- the flow pair (rectified flow, ComfyUI CONST, shift 3) ---


def test_flow_schedule_is_comfyui_simple_on_shift_3():
    """8 steps of `simple` on ModelSamplingDiscreteFlow(shift 3): t = 1 - i/8 shifted to 3t / (1 + 2t), then 0."""
    table = dm.flow_training_sigmas()
    assert table.dtype == torch.float32 and table.shape == (1000,)
    assert bool((table[1:] > table[:-1]).all()) and float(table[-1]) == 1.0
    assert float(table[0]) == pytest.approx(3 * 0.001 / (1 + 2 * 0.001), rel=1e-6)
    sig = dm.flow_simple_sigmas(8, 3.0)
    expected = [3 * t / (1 + 2 * t) for t in (1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8)] + [0.0]
    assert sig.tolist() == pytest.approx(expected, abs=1e-6)
    assert sig.tolist() == pytest.approx([1, 21 / 22, 0.9, 5 / 6, 0.75, 9 / 14, 0.5, 0.3, 0], abs=1e-6)
    # shift 1 is the plain linear table; other step counts follow the same rule
    assert dm.flow_simple_sigmas(4, 1.0).tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0], abs=1e-6)


def test_flow_denoiser_equals_eps_denoiser_at_matching_level(digits):
    """A digit-space flow latent y = (1-s) d0 + s/sqrt(48) eps is, divided by 1-s, an eps-pair latent at
    sigma_d = s / ((1-s) sqrt(48)): both exact denoisers give the same E[d0 | y]."""
    images = digits[0]
    g = torch.Generator().manual_seed(0)
    for s in (0.05, 0.3, 0.5, 0.75, 0.9, 0.99):
        d0 = images[torch.randint(0, len(images), (16,), generator=g)]
        y = dm.flow_noising(d0, s, torch.randn(d0.shape, generator=g))
        sig = torch.full((16,), s)
        flow = dm.flow_posterior_mean(y, sig, images)
        eps = dm.posterior_mean(y / (1 - s), sig / ((1 - s) * dm.NOISE_SHRINK), images)
        assert torch.allclose(flow, eps, atol=1e-4), f"sigma {s}: {(flow - eps).abs().max()}"
    # and the noising is ComfyUI's noise_scaling seen through the block means
    d0, noise = images[:4], torch.randn(4, 3, 32, 32, generator=g)
    x = 0.4 * noise + (1 - 0.4) * dm.from_digits(d0)
    assert torch.allclose(dm.to_digits(x), dm.flow_noising(d0, 0.4, dm.to_digits(noise) * dm.NOISE_SHRINK), atol=1e-6)


def test_flow_models_at_sigma_one_are_finite(digits):
    """sigma = 1 (1 - sigma = 0, the student's first step): the exact denoiser gives the data mean, no NaN;
    the flow networks give finite velocities there and at the clamped ends of the table."""
    images = digits[0]
    y = torch.randn(5, 64, generator=torch.Generator().manual_seed(1)) / dm.NOISE_SHRINK
    mean = dm.flow_posterior_mean(y, torch.ones(5), images)
    assert torch.isfinite(mean).all() and torch.allclose(mean, images.mean(0).expand(5, -1), atol=1e-5)
    near = dm.flow_posterior_mean(y, torch.full((5,), 1 - 1e-7), images)
    assert torch.isfinite(near).all()
    base = dm.PosteriorMeanFlowDenoiser(num_images=len(images))
    base.images.copy_(images)
    student = dm.DigitFlowStudent()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for model in (base, student):
        for t in (1000.0, 500.0, 3.0, 0.0):
            v = model(x, torch.full((2,), t))
            assert v.shape == x.shape and torch.isfinite(v).all(), (type(model).__name__, t)
    assert torch.isfinite(student.predict_x0(y, torch.ones(5))).all()


def test_flow_base_velocity_gives_the_exact_denoiser(digits):
    """ComfyUI's CONST: denoised = x - sigma * v. The flow base's v makes that the exact posterior mean."""
    images = digits[0]
    base = dm.PosteriorMeanFlowDenoiser(num_images=len(images))
    base.images.copy_(images)
    g = torch.Generator().manual_seed(3)
    for s in (1.0, 0.75, 0.3):
        d0 = images[torch.randint(0, len(images), (3,), generator=g)]
        x = s * torch.randn(3, 3, 32, 32, generator=g) + (1 - s) * dm.from_digits(d0)
        denoised = x - s * base(x, torch.full((3,), s * 1000))
        expected = dm.from_digits(dm.flow_posterior_mean(dm.to_digits(x), torch.full((3,), s), images))
        assert torch.allclose(denoised, expected, atol=1e-5)


def test_flow_student_preconditioning_is_edm_on_the_rescaled_latent():
    """The flow student's c_skip/c_out/c_in are EDM's (the eps student's) on y/(1-s) at digit noise b/(1-s),
    b = s/sqrt(48): with a network that reads only its digit input, both students give the same x0."""

    class DigitPart(torch.nn.Module):  # ignores the noise features (they differ by design: log(b) vs log(b/a))
        def forward(self, h):
            return torch.tanh(h[:, :64]) * 0.7 + 0.1

    flow, eps = dm.DigitFlowStudent(), dm.DigitStudent()
    flow.net = eps.net = DigitPart()
    y = torch.randn(6, 64, generator=torch.Generator().manual_seed(4))
    s = torch.tensor([0.05, 0.3, 0.5, 0.75, 0.9, 0.99])
    a, b = 1 - s, s / dm.NOISE_SHRINK
    assert torch.allclose(flow.predict_x0(y, s), eps.predict_x0(y / a[:, None], b / a), atol=1e-5)
    # at s = 1 the skip term vanishes and the output is sigma_data * net(noise / b)
    one = flow.predict_x0(y, torch.ones(6))
    assert torch.allclose(one, flow.sigma_data * DigitPart()(y * dm.NOISE_SHRINK), atol=1e-6)


def test_flow_lcm_chain_starts_from_pure_noise_and_renoises():
    """The flow chain's first input is noise of digit std 1/sqrt(48) (sigma = 1); later ones are
    (1-s) x0 + s/sqrt(48) z around the student's x0 (here a constant student)."""
    from demo.distill import lcm_chain_inputs

    class Const:
        def predict_x0(self, y, s):
            return torch.full_like(y, 0.5)

    sig = [float(s) for s in dm.flow_simple_sigmas(8)[:-1]]
    inputs = lcm_chain_inputs(Const(), sig, 4096, torch.Generator().manual_seed(0), dm.flow_noising)
    assert len(inputs) == 8
    assert float(inputs[0].mean()) == pytest.approx(0.0, abs=2e-3)
    assert float(inputs[0].std()) == pytest.approx(1 / dm.NOISE_SHRINK, rel=0.01)
    for y, s in zip(inputs[1:], sig[1:]):
        assert float(y.mean()) == pytest.approx((1 - s) * 0.5, abs=2e-3)
        assert float(y.std()) == pytest.approx(s / dm.NOISE_SHRINK, rel=0.01)


def test_flow_training_is_seeded(digits):
    """A few steps of demo/train.py's flow student training give identical weights twice (and finite ones)."""
    from demo.train import train_student

    runs = [train_student(dm, digits[0][:256], 5, 2, batch=32, log=lambda *_: None, pair="flow") for _ in range(2)]
    assert runs[0][1] == pytest.approx([float(s) for s in dm.flow_simple_sigmas(8)[:-1]])
    assert isinstance(runs[0][0], dm.DigitFlowStudent)
    a, b = (r[0].state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) and torch.isfinite(a[k]).all() for k in a)


def test_flow_student_weights_fit_the_network():
    from safetensors.torch import load_file

    path = WEIGHTS / "digits_flow_student.safetensors"
    sd = load_file(str(path))
    student = dm.DigitFlowStudent()
    student.load_state_dict(sd, strict=True)
    assert all(v.dtype == torch.float32 for v in sd.values()) and path.stat().st_size < 4 * 1024 * 1024

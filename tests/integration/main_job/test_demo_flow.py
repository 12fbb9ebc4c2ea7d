"""The demo's flow pair (rectified flow, shift 3, 8-step student) inside real ComfyUI classes (in process, CPU):
ComfyUI's own FLOW model_sampling, its `simple` schedule against the pure core's, the exact base, samples of
both models measured with the repository's digit classifier, the pair check, and the loader's default."""

import importlib
import json
import os

import comfy.sample
import comfy.samplers
import pytest
import torch


@pytest.fixture(scope="module")
def flow(demo):
    base, student, vae = demo.DemoDigitModels.execute(pair=demo.FLOW_PAIR).args
    return base, student, vae, demo.DemoDigitPrompt.execute("a handwritten digit").args[0]


@pytest.fixture(scope="module")
def base_images(demo):
    from safetensors.torch import load_file

    sd = load_file(str(demo.WEIGHTS_DIR / demo.BASE_FILE))
    return sd["images"], sd["labels"]


@pytest.fixture(scope="module")
def classifier(demo):
    from safetensors.torch import load_file

    from demo.classifier import DigitClassifier

    clf = DigitClassifier()
    clf.load_state_dict(load_file(str(demo.WEIGHTS_DIR / "digit_classifier.safetensors")))
    return clf.eval()


def sample(model, cond, seed, sigmas, sampler, latent=None, noise=None, batch=1):
    """Stock ComfyUI sampling of a sigma segment (comfy.sample.sample_custom), as SamplerCustom runs it."""
    x = torch.zeros(batch, 3, 32, 32) if latent is None else latent
    noise = comfy.sample.prepare_noise(x, seed) if noise is None else noise
    return comfy.sample.sample_custom(
        model, noise, 1.0, comfy.samplers.sampler_object(sampler), sigmas, cond, cond, x, seed=seed
    )


def classes(clf, vae, samples):
    from demo.classifier import class_histogram, images_to_digits

    return class_histogram(clf, images_to_digits(vae.decode(samples)))


def test_flow_pair_is_comfyui_flow_with_shift_3(pack, demo, flow):
    import comfy.model_patcher
    import comfy.model_sampling

    sampling = importlib.import_module(pack.__name__ + ".nodes.sampling")
    base, student, vae, _ = flow
    for m in (base, student):
        assert isinstance(m, comfy.model_patcher.ModelPatcher)
        ms = m.get_model_object("model_sampling")
        assert isinstance(ms, comfy.model_sampling.CONST)
        assert isinstance(ms, comfy.model_sampling.ModelSamplingDiscreteFlow)
        assert ms.shift == 3.0 and ms.multiplier == 1000
        assert float(ms.sigma_max) == 1.0 and float(ms.sigma_min) == pytest.approx(0.003 / 1.002, rel=1e-5)
        assert type(m.get_model_object("latent_format")).__name__ == "DemoDigitLatent"
        assert m.model.model_type.name == "FLOW"
        info = sampling.model_info(m)
        assert info.prediction == "CONST" and not info.variance_preserving_noise
        assert info.latent_format == "DemoDigitLatent" and info.latent_channels == 3
        assert info.name == "DemoDigitFlowModel" and "shift 3" in info.sampling
    assert vae.latent_channels == 3 and vae.downscale_ratio == 1
    importlib.import_module(pack.__name__ + ".ddistill.pairing").check_pair(
        sampling.model_info(base), sampling.model_info(student)
    )


def test_comfyui_simple_schedule_equals_the_core_function(pack, dm, flow):
    sampling = importlib.import_module(pack.__name__ + ".nodes.sampling")
    base, student, _, _ = flow
    core = dm.flow_simple_sigmas(8, 3.0)
    for m in (base, student):
        ms = m.get_model_object("model_sampling")
        assert torch.equal(ms.sigmas.float(), dm.flow_training_sigmas())
        assert torch.equal(comfy.samplers.calculate_sigmas(ms, "simple", 8).float().cpu(), core)
        assert torch.equal(sampling.model_schedule(m, 8, "simple"), core)
        for steps in (1, 3, 4, 40):
            comfy_sigmas = comfy.samplers.calculate_sigmas(ms, "simple", steps).float()
            assert torch.equal(comfy_sigmas, dm.flow_simple_sigmas(steps))
    assert core.tolist() == pytest.approx([1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3, 0.0], abs=1e-4)


def test_flow_base_is_the_exact_posterior_mean(dm, flow, base_images):
    """ComfyUI's denoised output of the flow base equals E[x0 | x] for x = (1 - s) x0 + s eps over the upsampled
    training images, computed independently in full 3x32x32 pixel space (float64), including s = 1."""
    base = flow[0]
    images = base_images[0]
    full = dm.from_digits(images).flatten(1).double()  # [N, 3072]
    g = torch.Generator().manual_seed(0)
    for s in (1.0, 0.9545, 0.75, 0.5, 0.3, 0.05):
        x0 = dm.from_digits(images[torch.randint(0, len(images), (3,), generator=g)])
        x = (1 - s) * x0 + s * torch.randn(x0.shape, generator=g)
        denoised = base.model.apply_model(x, torch.full((3,), s), c_crossattn=torch.zeros(3, 1, 1))
        d2 = torch.cdist(x.flatten(1).double(), (1 - s) * full).square()
        expected = (torch.softmax(-d2 / (2 * s**2), 1) @ full).float().reshape(x.shape)
        assert torch.isfinite(denoised).all()
        assert torch.allclose(denoised, expected, atol=2e-4), f"sigma {s}: {(denoised - expected).abs().max()}"


def test_base_40_euler_steps_give_training_digits_of_many_classes(dm, flow, base_images, classifier):
    base, _, vae, cond = flow
    sigmas = comfy.samplers.calculate_sigmas(base.get_model_object("model_sampling"), "simple", 40).cpu()
    out = sample(base, cond, seed=0, sigmas=sigmas, sampler="euler", batch=40)
    assert out.shape == (40, 3, 32, 32) and torch.isfinite(out).all()
    nearest = torch.cdist(dm.to_digits(out), base_images[0]).min(1).values
    assert float(nearest.max()) < 0.2  # a memorising exact denoiser lands on training digits
    counts = classes(classifier, vae, out)
    assert int((counts > 0).sum()) >= 8, counts.tolist()  # 40 draws spread over the 10 classes


def test_student_8_lcm_steps_give_finite_digits(dm, flow, base_images, demo):
    import nodes

    _, student, vae, cond = flow
    latent = nodes.EmptyLatentImage().generate(256, 256, 8)[0]
    out = nodes.common_ksampler(student, 5, 8, 1.0, "lcm", "simple", cond, cond, latent)[0]["samples"]
    assert out.shape == (8, 3, 32, 32) and torch.isfinite(out).all()
    pixels = vae.decode(out)
    assert pixels.shape == (8, 32, 32, 3) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    # the student's x0 is a digit: blocky (all latent energy in digit space) and in the data range
    assert torch.allclose(out, dm.from_digits(dm.to_digits(out)), atol=1e-5)
    assert float(dm.to_digits(out).abs().max()) < 1.5
    again = nodes.common_ksampler(student, 5, 8, 1.0, "lcm", "simple", cond, cond, latent)[0]["samples"]
    assert torch.equal(out, again)


def test_hybrid_nodes_run_on_the_flow_pair(pack, flow):
    hyb = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    base, student, _, cond = flow
    latent = {"samples": torch.zeros(3, 3, 32, 32)}
    first = hyb.BaseFirstStepSampler.execute(
        base, cond, cond, latent, 7, 1.0, 2, 8, "simple", "lcm", distilled_model=student
    )
    samples = hyb.DistilledContinueSampler.execute(student, cond, cond, first.args[0], 1.0).args[0]["samples"]
    assert samples.shape == (3, 3, 32, 32) and torch.isfinite(samples).all()


def test_eps_and_flow_demo_models_fail_the_pair_check(pack, demo, flow):
    hyb = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    pairing = importlib.import_module(pack.__name__ + ".ddistill.pairing")
    eps_base, eps_student, _ = demo.DemoDigitModels.execute().args
    _, flow_student, _, cond = flow
    latent = {"samples": torch.zeros(1, 3, 32, 32)}
    first = hyb.BaseFirstStepSampler.execute(eps_base, cond, cond, latent, 1, 1.0, 1, 4, "lcm", "lcm")
    with pytest.raises(
        pairing.PairError,
        match=r"base_model is DemoDigitModel \(EPS prediction.*distilled_model is DemoDigitFlowModel \(CONST "
        r"prediction.*write noisy latents differently",
    ):
        hyb.DistilledContinueSampler.execute(flow_student, cond, cond, first.args[0], 1.0)
    with pytest.raises(pairing.PairError, match=r"DemoDigitFlowModel \(CONST.*DemoDigitModel \(EPS"):
        hyb.BaseFirstStepSampler.execute(
            flow[0], cond, cond, latent, 1, 1.0, 1, 4, "lcm", "lcm", distilled_model=eps_student
        )


def test_loader_without_pair_is_the_eps_pair(demo):
    """Workflows and API prompts saved before the input existed keep today's models, bit for bit."""
    import nodes

    schema = demo.DemoDigitModels.define_schema()
    (pair_input,) = schema.inputs
    assert pair_input.id == "pair" and pair_input.optional and pair_input.default == demo.EPS_PAIR
    assert pair_input.options == [demo.EPS_PAIR, demo.FLOW_PAIR]
    assert demo.PAIRS == ["digits eps (4-step lcm)", "digits flow (shift 3, 8-step)"]

    default, named = demo.DemoDigitModels.execute().args, demo.DemoDigitModels.execute(pair=demo.EPS_PAIR).args
    cond = demo.unconditional()
    latent = nodes.EmptyLatentImage().generate(256, 256, 2)[0]
    for a, b in zip(default[:2], named[:2]):
        assert type(a.model).__name__ == "DemoDigitModel" and a.model.model_type.name == "EPS"
        assert type(a.model.diffusion_model) is type(b.model.diffusion_model)
        sa, sb = a.model.diffusion_model.state_dict(), b.model.diffusion_model.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert torch.equal(a.get_model_object("model_sampling").sigmas, b.get_model_object("model_sampling").sigmas)
    out_default = nodes.common_ksampler(default[1], 3, 4, 1.0, "lcm", "sgm_uniform", cond, cond, latent)[0]
    out_named = nodes.common_ksampler(named[1], 3, 4, 1.0, "lcm", "sgm_uniform", cond, cond, latent)[0]
    assert torch.equal(out_default["samples"], out_named["samples"])
    with pytest.raises(ValueError, match="pair: expected one of"):
        demo.load_demo_pair(pair="digits")


def test_flow_student_weights_are_checked(demo, tmp_path):
    import shutil

    for name in demo.WEIGHT_SHA256:
        shutil.copy(demo.WEIGHTS_DIR / name, tmp_path / name)
    demo.load_demo_pair(tmp_path, pair=demo.FLOW_PAIR)  # intact copy loads
    data = bytearray((tmp_path / demo.FLOW_STUDENT_FILE).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / demo.FLOW_STUDENT_FILE).write_bytes(bytes(data))
    with pytest.raises(demo.DemoWeightsError, match=r"digits_flow_student.safetensors is corrupted.*git checkout"):
        demo.load_demo_pair(tmp_path, pair=demo.FLOW_PAIR)
    demo.load_demo_pair(tmp_path)  # the eps pair does not read the flow student
    (tmp_path / demo.FLOW_STUDENT_FILE).unlink()
    with pytest.raises(demo.DemoWeightsError, match=r"digits_flow_student.safetensors is missing"):
        demo.load_demo_pair(tmp_path, pair=demo.FLOW_PAIR)


def coverage_figures(pack, flow, clf, seeds: int) -> dict:
    """Class coverage of the flow pair over ``seeds`` seeds (batch 1 each): base (40 euler, simple), student
    (8 lcm, simple) and the hybrid with the base on the first k student steps (stock sample_custom segments as
    tests/integration/hybrid/test_hybrid.py builds them: base on sigmas[0:k+1] from the initial noise, student on
    sigmas[k:] with zero noise and the derived continue seed), k = 1..7. For reference also the base alone on
    the student's 8-step lcm schedule (what the hybrid tends to as k grows)."""
    from demo.classifier import coverage

    schedules = importlib.import_module(pack.__name__ + ".ddistill.schedules")
    base, student, vae, cond = flow
    ms = base.get_model_object("model_sampling")
    sig40, sig8 = (comfy.samplers.calculate_sigmas(ms, "simple", n).cpu() for n in (40, 8))
    ks = range(1, 8)
    out = {name: [] for name in ["base", "distilled", "base 8-step lcm", *(f"hybrid k={k}" for k in ks)]}
    for seed in range(seeds):
        x = torch.zeros(1, 3, 32, 32)
        noise = comfy.sample.prepare_noise(x, seed)
        out["base"].append(sample(base, cond, seed, sig40, "euler", x, noise))
        out["distilled"].append(sample(student, cond, seed, sig8, "lcm", x, noise))
        out["base 8-step lcm"].append(sample(base, cond, seed, sig8, "lcm", x, noise))
        for k in ks:
            mid = sample(base, cond, seed, sig8[: k + 1], "lcm", x, noise)
            cseed = schedules.derive_seed(seed, 1)
            out[f"hybrid k={k}"].append(sample(student, cond, cseed, sig8[k:], "lcm", mid, torch.zeros_like(mid)))
    figures = {}
    for name, samples in out.items():
        cov = coverage(classes(clf, vae, torch.cat(samples)))
        figures[name] = {"classes_covered": cov["classes_covered"], "entropy_bits": round(cov["entropy_bits"], 3)}
        figures[name]["counts"] = cov["counts"]
    return figures


def test_flow_coverage_figures(pack, flow, classifier):
    """The figures of demo/TRAINING.md (flow pair), measured, printed and checked only for being measurements:
    no expected ordering. DDISTILL_DEMO_FLOW_SEEDS sets the number of seeds (TRAINING.md: 100)."""
    seeds = int(os.environ.get("DDISTILL_DEMO_FLOW_SEEDS", "12"))
    figures = coverage_figures(pack, flow, classifier, seeds)
    print("\nflow pair coverage over", seeds, "seeds:", json.dumps(figures))
    for f in figures.values():
        assert sum(f["counts"]) == seeds and 0 <= f["entropy_bits"] <= 3.33 and 1 <= f["classes_covered"] <= 10


def test_flow_pair_through_the_server(tmp_path_factory, demo):
    """The combo through ComfyUI's server: /object_info lists it as an optional input (eps first and default), a
    prompt naming the flow pair runs stock KSampler (8 lcm steps, simple) -> VAE Decode -> Save Image, and an
    unknown option is refused with the options named."""
    from ddistill_dev.gpu import runner_graphs as rg
    from ddistill_dev.host.comfy_server import ComfyServer, execution_error

    with ComfyServer(tmp_path_factory.mktemp("comfy_demo_flow"), with_fixture_pack=False) as server:
        spec = server.object_info()["DDistill_DemoModelLoader"]["input"]
        assert "required" not in spec or "pair" not in spec["required"]
        options, opts = spec["optional"]["pair"][0], spec["optional"]["pair"][1]
        if isinstance(options, str):  # COMBO declared as ["COMBO", {"options": [...]}]
            options = opts["options"]
        assert options == demo.PAIRS and opts["default"] == demo.EPS_PAIR
        graph = {
            "1": rg.demo_loader(pair=demo.FLOW_PAIR),
            "2": rg.demo_prompt(),
            "3": rg.empty_latent(32, 2, "EmptyChromaRadianceLatentImage"),
            "4": rg.ksampler(["1", 1], ["2", 0], ["2", 0], ["3", 0], 5, 8, "lcm", "simple"),
            "5": rg.vae_decode(["4", 0], ["1", 2]),
            "9": rg.save_image(["5", 0], "demo_flow"),
        }
        entry = server.run(graph)
        assert entry["status"]["status_str"] == "success", execution_error(entry)
        assert len(entry["outputs"]["9"]["images"]) == 2
        graph["1"]["inputs"]["pair"] = "digits flow (shift 5)"
        status, body = server.queue(graph)
        if status == 400:  # 0.33 checks an optional combo's value at queue time, on the input
            errors = body["node_errors"]["1"]["errors"]
            assert [e["extra_info"]["input_name"] for e in errors] == ["pair"], body
        else:  # 0.3.75 does not: the node refuses it when it runs, naming the options
            entry = server.wait(body["prompt_id"])
            assert entry["status"]["status_str"] == "error"
            assert "pair: expected one of ['digits eps" in execution_error(entry)["exception_message"]

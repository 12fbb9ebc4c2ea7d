"""The bundled demo pair inside real ComfyUI classes (in process, CPU): weights, exactness of the base
denoiser, stock KSampler / VAE Decode on both models, the pack's hybrid on them, and bad input."""

import importlib
import shutil

import pytest
import torch

from ddistill_dev.models.tiny_models import make_conditioning, make_model


@pytest.fixture(scope="module")
def loaded(demo):
    base, student, vae = demo.DemoDigitModels.execute().args
    return base, student, vae, demo.DemoDigitPrompt.execute("a handwritten digit").args[0]


@pytest.fixture(scope="module")
def base_images(demo):
    from safetensors.torch import load_file

    sd = load_file(str(demo.WEIGHTS_DIR / demo.BASE_FILE))
    return sd["images"], sd["labels"]


def ksample(model, cond, seed, steps, sampler, scheduler, batch=4, size=256):
    import nodes

    latent = nodes.EmptyLatentImage().generate(size, size, batch)[0]
    return nodes.common_ksampler(model, seed, steps, 1.0, sampler, scheduler, cond, cond, latent)[0]["samples"]


def test_weights_checked_and_small(demo):
    total = 0
    for name in demo.WEIGHT_SHA256:
        total += demo.verify_weights(name).stat().st_size
    total += sum(p.stat().st_size for p in demo.WEIGHTS_DIR.glob("digit_classifier*"))
    assert 0 < total <= 20 * 1024 * 1024


def test_pair_is_comfyui_eps_with_sd_schedule(demo, dm, loaded):
    import comfy.model_patcher
    import comfy.model_sampling

    base, student, vae, cond = loaded
    for m in (base, student):
        assert isinstance(m, comfy.model_patcher.ModelPatcher)
        ms = m.get_model_object("model_sampling")
        assert isinstance(ms, comfy.model_sampling.EPS) and isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
        assert torch.allclose(ms.sigmas.float(), dm.training_sigmas(), rtol=1e-5)
        assert type(m.get_model_object("latent_format")).__name__ == "DemoDigitLatent"
    assert vae.latent_channels == 3 and vae.downscale_ratio == 1
    assert float(base.get_model_object("model_sampling").sigma_max) == pytest.approx(14.6146, abs=1e-3)


def test_base_is_the_exact_posterior_mean(dm, loaded, base_images):
    """ComfyUI's denoised output of the base equals E[x0 | x_t] over the upsampled training images,
    computed independently in full 3x32x32 pixel space."""
    base = loaded[0]
    images = base_images[0]
    full = dm.from_digits(images).flatten(1)  # [N, 3072]
    g = torch.Generator().manual_seed(0)
    ms = base.get_model_object("model_sampling")
    for t in (999, 759, 499, 259, 50):
        sigma = ms.sigmas[t].float()
        x0 = dm.from_digits(images[torch.randint(0, len(images), (3,), generator=g)])
        x = x0 + sigma * torch.randn(x0.shape, generator=g)
        denoised = base.model.apply_model(x, sigma.repeat(3), c_crossattn=torch.zeros(3, 1, 1))
        w = torch.softmax(-torch.cdist(x.flatten(1).double(), full.double()).square() / (2 * sigma.double() ** 2), 1)
        expected = (w @ full.double()).float().reshape(x.shape)
        assert torch.allclose(denoised, expected, atol=2e-4), f"t={t}: {(denoised - expected).abs().max()}"


def test_stock_ksampler_and_vae_decode_on_both(loaded, base_images):
    base, student, vae, cond = loaded
    images = base_images[0]
    out_base = ksample(base, cond, seed=3, steps=30, sampler="euler", scheduler="normal")
    out_student = ksample(student, cond, seed=3, steps=4, sampler="lcm", scheduler="sgm_uniform")
    for samples in (out_base, out_student):
        assert samples.shape == (4, 3, 32, 32) and torch.isfinite(samples).all()
        pixels = vae.decode(samples)
        assert pixels.shape == (4, 32, 32, 3) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    # the base (exact denoiser, 30 euler steps) lands on training digits
    d = torch.cdist(out_base.mean(1)[:, ::4, ::4].flatten(1), images).min(1).values
    assert float(d.max()) < 0.2
    # same seed, same result
    assert torch.equal(out_student, ksample(student, cond, seed=3, steps=4, sampler="lcm", scheduler="sgm_uniform"))


def test_hybrid_nodes_run_on_the_pair(pack, loaded):
    hyb = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")

    base, student, vae, cond = loaded
    latent = {"samples": torch.zeros(3, 3, 32, 32)}  # what EmptyChromaRadianceLatentImage makes
    first = hyb.BaseFirstStepSampler.execute(base, cond, cond, latent, 7, 1.0, 1, 4, "lcm", "lcm")
    handed = first.args[0]
    done = hyb.DistilledContinueSampler.execute(student, cond, cond, handed, 1.0)
    samples = done.args[0]["samples"]
    assert samples.shape == (3, 3, 32, 32) and torch.isfinite(samples).all()


def test_demo_with_sdxl_fails_the_pair_check(pack, loaded):
    hyb = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    pairing = importlib.import_module(pack.__name__ + ".ddistill.pairing")

    base, _, _, cond = loaded
    latent = {"samples": torch.zeros(1, 3, 32, 32)}
    first = hyb.BaseFirstStepSampler.execute(base, cond, cond, latent, 1, 1.0, 1, 4, "lcm", "lcm")
    handed = first.args[0]
    sdxl_cond = make_conditioning("sdxl")
    with pytest.raises(pairing.PairError, match="DemoDigitModel .*DemoDigitLatent.*SDXL"):
        hyb.DistilledContinueSampler.execute(make_model("sdxl"), sdxl_cond, sdxl_cond, handed, 1.0)


def test_wrong_latent_size_is_a_clear_error(dm, loaded):
    base, _, _, cond = loaded
    with pytest.raises(
        dm.DemoInputError,
        match=r"latent_image: .*32x32.*EmptyChromaRadianceLatentImage of 32x32.*Empty Latent Image of 256x256",
    ):
        ksample(base, cond, seed=0, steps=2, sampler="euler", scheduler="normal", batch=1, size=512)


def test_missing_and_corrupted_weights(demo, tmp_path):
    for name in demo.WEIGHT_SHA256:
        shutil.copy(demo.WEIGHTS_DIR / name, tmp_path / name)
    demo.load_demo_pair(tmp_path)  # intact copy loads
    data = bytearray((tmp_path / demo.STUDENT_FILE).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / demo.STUDENT_FILE).write_bytes(bytes(data))
    with pytest.raises(demo.DemoWeightsError, match=r"digits_student.safetensors is corrupted.*git checkout"):
        demo.load_demo_pair(tmp_path)
    (tmp_path / demo.BASE_FILE).unlink()
    with pytest.raises(demo.DemoWeightsError, match=r"digits_base.safetensors is missing.*demo/train.py"):
        demo.load_demo_pair(tmp_path)


def test_weights_of_the_wrong_network_are_refused(demo, tmp_path):
    """A file with the right checksum list but other tensors (e.g. retrained with another network) is named."""
    import hashlib

    from safetensors.torch import save_file

    shutil.copy(demo.WEIGHTS_DIR / demo.BASE_FILE, tmp_path / demo.BASE_FILE)
    save_file({"net.0.weight": torch.zeros(3, 3)}, str(tmp_path / demo.STUDENT_FILE))
    names = (demo.BASE_FILE, demo.STUDENT_FILE)
    expected = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in names}
    with pytest.raises(demo.DemoWeightsError, match=r"digits_student.safetensors does not fit the demo network"):
        demo.load_demo_pair(tmp_path, expected)

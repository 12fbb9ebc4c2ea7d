"""Recorded x̂0 on real ComfyUI models (CPU): it is the reconstruction the model implies, a model that predicts
the true noise recovers x0 exactly, frames/labels match the steps, batch order is kept; the Record x̂0 Sampler
wrapper leaves stock SamplerCustom's result unchanged."""

import importlib

import comfy.sample
import comfy.samplers
import pytest
import torch
from comfy.patcher_extension import WrappersMP
from comfy_execution.utils import CurrentNodeContext
from comfy_extras.nodes_custom_sampler import SamplerCustom

from ddistill_dev.models import tiny_models as tm


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        preview_nodes="nodes.preview_nodes", hybrid_nodes="nodes.hybrid_nodes", sampling="nodes.sampling"
    )


def target_x0(batch=3, size=8, seed=5):
    """A distinct x0 per batch item, in the model's (process_latent_in) space."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, size, size, generator=g) + torch.arange(batch).view(-1, 1, 1, 1).float()


def x0_from_eps(x, sigma, eps):
    """x̂0 = x - sigma * eps in ComfyUI's sigma space (eq. A.2 with x = x_ddpm * sqrt(1 + sigma^2))."""
    return x - sigma * eps


def _sigma_and_x(xc, transformer_options):
    sigma = transformer_options["sigmas"].view(-1, 1, 1, 1)
    return sigma, xc * (sigma**2 + 1).sqrt()  # undo EPS c_in = 1 / sqrt(sigma^2 + 1)


def oracle(kind, x0):
    """A real tiny model whose UNet (through ComfyUI's diffusion-model wrapper hook) predicts the true noise of x
    towards x0; ComfyUI's own model_sampling scales its input and turns its eps into x̂0."""
    model = tm.make_model(kind, 0)

    def true_eps(executor, xc, t, context, y, control, transformer_options, **kw):
        sigma, x = _sigma_and_x(xc, transformer_options)
        return (x - x0.repeat(x.shape[0] // x0.shape[0], 1, 1, 1)) / sigma

    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "x0_test_oracle", true_eps)
    return model


def spy(model):
    """Records (x, sigma, eps_pred) of every real UNet call, passing its output through unchanged."""
    calls = []

    def wrapper(executor, xc, t, context, y, control, transformer_options, **kw):
        eps = executor(xc, t, context, y, control, transformer_options, **kw)
        sigma, x = _sigma_and_x(xc, transformer_options)
        calls.append((x, sigma, eps.float()))
        return eps

    model = model.clone()
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "x0_test_spy", wrapper)
    return model, calls


def stock(model, sampler, sigmas, latent, seed=3, add_noise=True, cfg=1.0):
    pos, neg = tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)
    return SamplerCustom.execute(model, add_noise, seed, cfg, pos, neg, sampler, sigmas, latent).result


def record(mods, inner_name="euler", label="sampler"):
    node = mods["preview_nodes"].RecordX0Sampler
    return node.execute(comfy.samplers.sampler_object(inner_name), label).result


def skip_first(mods, model, latent, steps=4, seed=4):
    """Skip First Step on ``model`` (lcm, cfg 1): (output latent, trajectory)."""
    pos, neg = tm.make_conditioning("sdxl"), tm.make_conditioning("sdxl")
    node = mods["hybrid_nodes"].SkipFirstStep
    return node.execute(
        model=model,
        positive=pos,
        negative=neg,
        latent_image=latent,
        seed=seed,
        cfg=1.0,
        steps=steps,
        scheduler="lcm",
        sampler_name="lcm",
    ).result


def test_true_noise_model_recovers_x0_exactly_in_the_hybrid(run_hybrid):
    x0 = target_x0()
    base, distilled = oracle("sdxl", x0), oracle("sdxl", x0)
    pos, neg = tm.make_conditioning("sdxl"), tm.make_conditioning("sdxl")
    latent, traj = run_hybrid(base, distilled, pos, neg, tm.empty_latent(3, 8), seed=9)[1]
    want = base.model.process_latent_out(x0)
    assert len(traj) == 4
    for f in traj.frames:
        torch.testing.assert_close(f.x0, want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(latent["samples"], want, atol=2e-5, rtol=1e-5)


def test_recorded_x0_is_the_models_eps_reconstruction(mods):
    model, calls = spy(tm.make_model("sdxl", 4))
    sampler, recording = record(mods, "euler_ancestral", "stock")
    sigmas = mods["sampling"].model_schedule(model, 5, "sgm_uniform")
    stock(model, sampler, sigmas, tm.empty_latent(2, 8))
    traj = recording.trajectory()
    assert len(calls) == len(traj) == 5
    for (x, sigma, eps), frame in zip(calls, traj.frames):
        assert float(sigma.flatten()[0]) == pytest.approx(frame.sigma)
        implied = model.model.process_latent_out(x0_from_eps(x, sigma, eps))
        torch.testing.assert_close(frame.x0, implied, atol=1e-5, rtol=1e-5)


def test_pack_sampler_frames_are_the_eps_reconstruction(mods):
    model, calls = spy(tm.make_model("sdxl", 6))
    _, traj = skip_first(mods, model, tm.empty_latent(2, 8), steps=4)
    assert len(calls) == len(traj) == 3
    for (x, sigma, eps), frame in zip(calls, traj.frames):
        torch.testing.assert_close(
            frame.x0, model.model.process_latent_out(x0_from_eps(x, sigma, eps)), atol=1e-5, rtol=1e-5
        )


def test_wrapper_leaves_stock_result_unchanged_and_labels_steps(mods):
    model = tm.make_model("sdxl", 3)
    sigmas = mods["sampling"].model_schedule(model, 4, "lcm")
    plain_out, plain_denoised = stock(model, comfy.samplers.sampler_object("lcm"), sigmas, tm.empty_latent(2, 8))
    sampler, recording = record(mods, "lcm", "distilled")
    out, denoised = stock(model, sampler, sigmas, tm.empty_latent(2, 8))
    assert torch.equal(out["samples"], plain_out["samples"])  # recording changes nothing
    traj = recording.trajectory()
    ms = model.get_model_object("model_sampling")
    assert [f.step for f in traj.frames] == [0, 1, 2, 3]
    assert [f.sigma for f in traj.frames] == pytest.approx(sigmas[:-1].tolist())
    assert [f.timestep for f in traj.frames] == pytest.approx([float(ms.timestep(s)) for s in sigmas[:-1]])
    assert [f.model for f in traj.frames] == ["distilled"] * 4
    first = traj.frames[0]
    assert (first.step, first.level, first.model) == (0, "sigma 14.6 · t 999 · A 214", "distilled")
    torch.testing.assert_close(traj.frames[-1].x0, denoised["samples"])  # SamplerCustom's own denoised_output


def test_batch_order_kept_per_frame(mods):
    x0 = target_x0(batch=3)
    model = oracle("sdxl", x0)
    sampler, recording = record(mods, "euler")
    sigmas = mods["sampling"].model_schedule(model, 3, "sgm_uniform")
    stock(model, sampler, sigmas, tm.empty_latent(3, 8))
    want = model.model.process_latent_out(x0)
    for f in recording.trajectory().frames:
        for b in range(3):
            torch.testing.assert_close(f.x0[b], want[b], atol=2e-5, rtol=1e-5)


def test_two_chained_stock_runs_make_one_trajectory(mods):
    base, distilled = tm.make_model("sdxl", 1), tm.make_model("sdxl", 2)
    sigmas = mods["sampling"].model_schedule(distilled, 4, "lcm")
    sampler, recording = record(mods, "lcm", "hybrid")
    with CurrentNodeContext("prompt-a", "10"):
        mid, _ = stock(base, sampler, sigmas[:2], tm.empty_latent(2, 8))
    with CurrentNodeContext("prompt-a", "11"):
        stock(distilled, sampler, sigmas[1:], mid, add_noise=False, seed=8)
    traj = recording.trajectory()
    assert [f.step for f in traj.frames] == [0, 1, 2, 3]
    assert [f.sigma for f in traj.frames] == pytest.approx(sigmas[:-1].tolist())
    # a later prompt replaces the earlier prompt's runs (a re-run, not an append)
    with CurrentNodeContext("prompt-b", "10"):
        stock(base, sampler, sigmas, tm.empty_latent(2, 8))
    assert [f.step for f in recording.trajectory().frames] == [0, 1, 2, 3]
    assert len(recording.runs) == 1


def test_one_recording_for_two_unrelated_runs_is_a_clear_error(mods):
    model = tm.make_model("sdxl", 1)
    sigmas = mods["sampling"].model_schedule(model, 2, "sgm_uniform")
    sampler, recording = record(mods, "euler")
    for node in ("5", "9"):
        with CurrentNodeContext("prompt-c", node):
            stock(model, sampler, sigmas, tm.empty_latent(1, 8))
    with pytest.raises(ValueError, match=r"recording: .*2 separate sampler runs.*nodes 5, 9.*its own Record"):
        recording.trajectory()


def test_unrun_recording_and_bad_sampler_errors(mods):
    _, recording = record(mods)
    with pytest.raises(ValueError, match="recording: nothing was recorded; connect Record"):
        recording.trajectory()
    with pytest.raises(ValueError, match="sampler: expected a SAMPLER"):
        mods["preview_nodes"].RecordX0Sampler.execute("euler", "x")


def test_wrapper_under_sampler_custom_advanced(mods):
    from comfy_extras.nodes_custom_sampler import BasicGuider, RandomNoise, SamplerCustomAdvanced

    model = tm.make_model("sdxl", 7)
    sigmas = mods["sampling"].model_schedule(model, 3, "trailing")
    guider = BasicGuider.execute(model, tm.make_conditioning("sdxl")).result[0]
    noise = RandomNoise.execute(13).result[0]

    def run(sampler):
        return SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, tm.empty_latent(2, 8)).result

    plain, _ = run(comfy.samplers.sampler_object("euler_ancestral"))
    sampler, recording = record(mods, "euler_ancestral", "adv")
    out, denoised = run(sampler)
    assert torch.equal(out["samples"], plain["samples"])
    traj = recording.trajectory()
    assert [f.step for f in traj.frames] == [0, 1, 2] and traj.stacked().shape[1] == 2
    torch.testing.assert_close(traj.frames[-1].x0, denoised["samples"])


def _slow_server(sent, delay=0.05, fail=False):
    """The one part stood in for: the frontend's socket (PromptServer.send_sync), slow enough that a frame still
    being sent when its sampling ended would be seen as missing."""
    import threading
    import time
    from types import SimpleNamespace

    def send_sync(event, data, sid):
        time.sleep(delay)
        if fail:
            raise ConnectionResetError("socket closed")
        sent.append((event, data, threading.current_thread().name))

    return SimpleNamespace(client_id="c1", send_sync=send_sync)


def _live(monkeypatch, pack, server):
    from types import SimpleNamespace

    recorder = importlib.import_module(pack.__name__ + ".nodes.recorder")
    monkeypatch.setattr(recorder, "_prompt_server", lambda: server)
    monkeypatch.setattr(recorder, "get_executing_context", lambda: SimpleNamespace(node_id="5", prompt_id="p"))
    return recorder


def test_live_frames_are_made_off_the_sampling_thread_and_all_sent_before_the_node_returns(mods, pack, monkeypatch):
    """The sampler's callback only queues a frame (a synchronous preview would stall a GPU sampler every step):
    the Latent2RGB preview, the JPEG and the socket send run on the pack's sender thread, in step order, and the
    node returns only once every frame of its sampling is sent. The frames are those of the synchronous previewer
    on the same x̂0 (item 0)."""
    import base64
    import io
    import threading

    import latent_preview
    import numpy as np
    from PIL import Image

    sent = []
    recorder = _live(monkeypatch, pack, _slow_server(sent))
    decoded_on = []
    real = latent_preview.Latent2RGBPreviewer.decode_latent_to_preview

    def spy_decode(self, x0):
        decoded_on.append(threading.current_thread().name)
        return real(self, x0)

    monkeypatch.setattr(latent_preview.Latent2RGBPreviewer, "decode_latent_to_preview", spy_decode)
    model = tm.make_model("sdxl", 6)
    _, traj = skip_first(mods, model, tm.empty_latent(2, 16), steps=5)
    main = threading.current_thread().name
    assert len(sent) == len(traj) == 4  # all sent by the time the node returned
    assert [d["step"] for _, d, _ in sent] == [f.step for f in traj.frames]
    assert {t for *_, t in sent} == set(decoded_on) and all(t.startswith("ddistill-x0-frames") for t in decoded_on)
    assert main not in decoded_on
    fmt = model.model.latent_format
    previewer = latent_preview.Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias)
    for (_, data, _), frame in zip(sent, traj.frames):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image"].split(",", 1)[1]))), dtype=float)
        want = previewer.decode_latent_to_preview(model.model.process_latent_in(frame.x0[:1]))
        buf = io.BytesIO()
        want.save(buf, format="JPEG", quality=85)
        assert np.abs(img - np.asarray(Image.open(buf), dtype=float)).max() <= 1  # same picture, same JPEG
    assert recorder.FILMSTRIP_PX >= img.shape[0]


def test_a_failing_socket_stops_live_frames_not_the_sampling(mods, pack, monkeypatch, caplog):
    sent = []
    _live(monkeypatch, pack, _slow_server(sent, delay=0.0, fail=True))
    model = tm.make_model("sdxl", 6)
    with caplog.at_level("WARNING"):
        out, traj = skip_first(mods, model, tm.empty_latent(1, 8))
    assert sent == [] and len(traj) == 3 and torch.isfinite(out["samples"]).all()
    warnings = [r.getMessage() for r in caplog.records if "live frames disabled" in r.getMessage()]
    assert len(warnings) == 1 and "socket closed" in warnings[0]

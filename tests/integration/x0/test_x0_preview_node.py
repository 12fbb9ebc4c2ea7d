"""x̂0 Preview in process, on real tiny ComfyUI models and VAEs: decoded frames, grid, curve, caps and errors."""

import comfy.samplers
import pytest
import torch
from comfy_extras.nodes_custom_sampler import SamplerCustom
from test_x0_vae import make_kl_vae, make_taesd_vae

from ddistill_dev.models import tiny_models as tm


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        preview_nodes="nodes.preview_nodes",
        trajectory="ddistill.trajectory",
        embedding="ddistill.embedding",
    )


@pytest.fixture(scope="module")
def vae():
    return make_kl_vae(3)


@pytest.fixture(scope="module")
def hybrid(run_hybrid):
    """Base First Step + Distilled Continue on tiny SDXL models: (final LATENT, trajectory), batch 2, 4 steps."""
    base, distilled = tm.make_model("sdxl", 1), tm.make_model("sdxl", 2)
    pos, neg = tm.make_conditioning("sdxl"), tm.make_conditioning("sdxl", seed=1)
    return tuple(run_hybrid(base, distilled, pos, neg, tm.empty_latent(2, 8), seed=5)[1])


def preview(mods, vae, metric=None, max_cells=64, cell_size=48, **sources):
    node = mods["preview_nodes"].X0Preview
    metric = metric or mods["preview_nodes"].PIXEL_METRIC
    return node.execute(vae=vae, max_cells=max_cells, cell_size=cell_size, metric=metric, **sources)


def test_frames_are_batched_vae_decodes_in_step_then_batch_order(mods, vae, hybrid):
    latent, traj = hybrid
    out = preview(mods, vae, trajectory=traj)
    grid, frames, curve, csv = out.result
    assert frames.shape == (8, 64, 64, 3)
    for k, f in enumerate(traj.frames):
        for b in range(2):
            torch.testing.assert_close(frames[2 * k + b], vae.decode(f.x0[b : b + 1])[0].detach(), atol=1e-5, rtol=0)
    assert not torch.allclose(frames[0], frames[1])  # two seeds, two images
    assert grid.shape[0] == 1 and grid.shape[-1] == 3 and grid.shape[2] > 4 * 48
    assert curve.shape == (1, 420, 720, 3)
    lines = csv.splitlines()
    assert lines[0] == "step,sigma,model,mean,seed_0,seed_1"
    assert [ln.split(",")[2] for ln in lines[1:]] == ["base", "distilled", "distilled", "distilled"]
    assert [int(ln.split(",")[0]) for ln in lines[1:]] == [1, 2, 3, 4]
    assert float(lines[-1].split(",")[3]) == 0.0  # the final x̂0 is the final image
    ui = out.ui
    assert len(ui["images"]) == 2 and all(i["type"] == "temp" for i in ui["images"])
    assert ui["text"][0].startswith("mean distance to final (pixel (RMS, 0..1)) by step: 1:")


def test_curve_uses_the_final_latent_and_matches_pixel_rms(mods, vae, hybrid):
    latent, traj = hybrid
    _, frames, _, csv = preview(mods, vae, trajectory=traj, latent=latent).result
    final = vae.decode(latent["samples"]).detach()
    want = (frames.view(4, 2, 64, 64, 3) - final).pow(2).flatten(2).mean(2).sqrt()
    got = torch.tensor([[float(v) for v in ln.split(",")[4:]] for ln in csv.splitlines()[1:]])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_pack_latent_alone_carries_the_trajectory(mods, vae, hybrid):
    latent, traj = hybrid
    a = preview(mods, vae, latent=latent).result[1]
    b = preview(mods, vae, trajectory=traj).result[1]
    assert torch.equal(a, b)  # and deterministic


def test_perceptual_metric_backend(mods, vae, hybrid):
    _, traj = hybrid
    csv = preview(mods, vae, metric=mods["embedding"].EFFNET_BACKEND, trajectory=traj).result[3]
    means = [float(ln.split(",")[3]) for ln in csv.splitlines()[1:]]
    assert means[-1] == pytest.approx(0.0, abs=1e-5) and max(means) > 0


def test_more_frames_than_the_grid_holds_are_capped_and_said(mods, vae, hybrid):
    _, traj = hybrid
    out = preview(mods, vae, max_cells=4, trajectory=traj)
    _, frames, _, csv = out.result
    assert frames.shape[0] == 4  # steps 1 and 4 of both seeds
    assert [int(ln.split(",")[0]) for ln in csv.splitlines()[1:]] == [1, 4]
    assert "max_cells 4: showing 2 of 4 steps and 2 of 2 seeds" in out.ui["text"][0]


def test_stock_sampler_through_recording(mods, vae):
    model = tm.make_model("sdxl", 3)
    sampler, recording = (
        mods["preview_nodes"].RecordX0Sampler.execute(comfy.samplers.sampler_object("euler"), "stock").result
    )
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 3)
    pos, neg = tm.make_conditioning("sdxl"), tm.make_conditioning("sdxl", seed=1)
    out, _ = SamplerCustom.execute(model, True, 2, 1.0, pos, neg, sampler, sigmas, tm.empty_latent(2, 8)).result
    _, frames, _, csv = preview(mods, vae, recording=recording, latent=out).result
    assert frames.shape[0] == 6
    assert [ln.split(",")[2] for ln in csv.splitlines()[1:]] == ["stock"] * 3


def test_bad_inputs_name_the_input(mods, vae, hybrid):
    latent, traj = hybrid
    Trajectory = mods["trajectory"].Trajectory
    with pytest.raises(ValueError, match="trajectory: it is empty"):
        preview(mods, vae, trajectory=Trajectory())
    with pytest.raises(ValueError, match="vae: no VAE connected"):
        preview(mods, None, trajectory=traj)
    with pytest.raises(
        ValueError,
        match=r"vae: this VAE decodes 16-channel 2-D latents but the trajectory's x̂0 is "
        r"\(2, 4, 8, 8\)",
    ):
        preview(mods, make_taesd_vae(0, latent_channels=16), trajectory=traj)
    with pytest.raises(ValueError, match="trajectory: nothing to show"):
        preview(mods, vae)
    _, recording = mods["preview_nodes"].RecordX0Sampler.execute(comfy.samplers.sampler_object("euler"), "x").result
    with pytest.raises(ValueError, match="trajectory / recording: connect one of them, not both"):
        preview(mods, vae, trajectory=traj, recording=recording)
    with pytest.raises(ValueError, match="latent: connect the stock sampler's output LATENT"):
        preview(mods, vae, recording=recording)
    with pytest.raises(ValueError, match=r"latent: its samples have shape \(3, 4, 8, 8\)"):
        preview(mods, vae, trajectory=traj, latent=tm.empty_latent(3, 8))
    mixed = Trajectory(traj.frames[:1]).extended(
        [traj.frames[1].__class__(1, 1.0, 500.0, "x", torch.zeros(3, 4, 8, 8))]
    )
    with pytest.raises(ValueError, match=r"trajectory: the frame of step 2 has shape \(3, 4, 8, 8\)"):
        preview(mods, vae, trajectory=mixed)
    with pytest.raises(ValueError, match="metric: 'dreamsim_ensemble' failed: DreamSim 'ensemble' weights are missing"):
        preview(mods, vae, metric="dreamsim_ensemble", trajectory=traj)


def test_all_frames_go_through_comfy_vae_decode_in_one_batched_call(mods, hybrid):
    latent, traj = hybrid
    vae = make_kl_vae(3)
    seen = []
    decode = vae.first_stage_model.decode

    def counting(z, **kw):
        seen.append(z.shape[0])
        return decode(z, **kw)

    vae.first_stage_model.decode = counting
    preview(mods, vae, trajectory=traj, latent=latent)
    assert seen == [4 * 2 + 2]  # 4 steps x 2 seeds + the 2 final images, one batch (memory permitting)

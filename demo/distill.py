"""The student's training objective (pure torch): Distribution Matching Distillation (Yin et al., CVPR 2024,
"One-step Diffusion with Distribution Matching Distillation"), multi-step with backward simulation as in DMD2
(Yin et al., NeurIPS 2024), without the GAN term and without DMD's regression loss.

The DMD gradient of KL(p_student || p_data) at a student sample x is E_t[(D_fake(x_t) - D_real(x_t)) w]
with x_t = x + sigma_t * eps. Here both denoisers are exact: D_real is the base model's posterior mean
over the training digits and D_fake is the posterior mean over the student's own current samples (the
denoiser DMD's "fake score" network is trained to approximate). Reverse KL is mode seeking: a student
trained this way drops modes, which is the collapse the paper reports for DMD/DMD2 students.

Both demo pairs use the same objective in digit space. The flow pair's student runs its chain in flow form
(``lcm_chain_inputs`` with ``noising=flow_noising``), but its x0 is diffused for the gradient exactly as the eps
student's is (x0 + sigma_d * eps at digit-space levels): the exact flow denoiser at flow sigma s is the same
function as the eps one at sigma_d = s / ((1 - s) sqrt(48)), so the gradient does not depend on the
parameterisation of the noisy latent (demo/TRAINING.md, flow pair).
"""

from __future__ import annotations

import torch


def dmd_target(
    x0: torch.Tensor, images: torch.Tensor, sigma_d: torch.Tensor, noise: torch.Tensor, posterior_mean
) -> torch.Tensor:
    """Regression target x0 - grad for the DMD loss 0.5*||x0 - sg(x0 - grad)||^2 (x0 detached, [B, 64]).

    ``sigma_d`` [B] are digit-space noise levels, ``noise`` [B, 64] standard normal; the gradient is
    normalised per sample by mean |x0 - D_real| as in DMD.
    """
    x0 = x0.detach()
    noisy = x0 + sigma_d.reshape(-1, 1) * noise
    d_real = posterior_mean(noisy, sigma_d, images)
    d_fake = posterior_mean(noisy, sigma_d, x0)
    grad = (d_fake - d_real) / (x0 - d_real).abs().mean(dim=1, keepdim=True).clamp_min(1e-3)
    return x0 - grad


def ve_noising(x0: torch.Tensor, sigma, noise: torch.Tensor) -> torch.Tensor:
    """The eps pair's digit-space noisy latent x0 + sigma_d * noise (sigma_d a float or a broadcastable tensor)."""
    return x0 + sigma * noise


def lcm_chain_inputs(
    student, sigmas: list[float], batch: int, g: torch.Generator, noising=ve_noising
) -> list[torch.Tensor]:
    """Backward simulation: the student's own lcm chain from noise; the input [B, 64] of every step.

    ``sigmas`` are the student's noise levels in its own units (digit-space sigma_d for the eps student, flow
    sigma for the flow student) and ``noising(x0, sigma, noise)`` writes a noisy latent as ComfyUI's lcm sampler
    does between steps (model_sampling.noise_scaling): pure noise at the first level, then fresh noise around
    the student's x0 prediction.
    """
    inputs = []
    y = noising(torch.zeros(batch, 64), sigmas[0], torch.randn(batch, 64, generator=g))
    with torch.no_grad():
        for k, s in enumerate(sigmas):
            inputs.append(y)
            if k + 1 < len(sigmas):
                x0 = student.predict_x0(y, torch.full((batch,), s))
                y = noising(x0, sigmas[k + 1], torch.randn(batch, 64, generator=g))
    return inputs

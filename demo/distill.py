"""The student's training objective (pure torch): Distribution Matching Distillation (Yin et al., CVPR 2024,
"One-step Diffusion with Distribution Matching Distillation"), multi-step with backward simulation as in DMD2
(Yin et al., NeurIPS 2024), without the GAN term and without DMD's regression loss.

The DMD gradient of KL(p_student || p_data) at a student sample x is E_t[(D_fake(x_t) - D_real(x_t)) w]
with x_t = x + sigma_t * eps. Here both denoisers are exact: D_real is the base model's posterior mean
over the training digits and D_fake is the posterior mean over the student's own current samples (the
denoiser DMD's "fake score" network is trained to approximate). Reverse KL is mode seeking: a student
trained this way drops modes, which is the collapse the paper reports for DMD/DMD2 students.
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


def lcm_chain_inputs(student, sigmas_d: list[float], batch: int, g: torch.Generator) -> list[torch.Tensor]:
    """Backward simulation: the student's own 4-step lcm chain from noise; the input [B, 64] of every step."""
    inputs = []
    y = torch.randn(batch, 64, generator=g) * sigmas_d[0]
    with torch.no_grad():
        for k, s in enumerate(sigmas_d):
            inputs.append(y)
            if k + 1 < len(sigmas_d):
                x0 = student.predict_x0(y, torch.full((batch,), s))
                y = x0 + sigmas_d[k + 1] * torch.randn(batch, 64, generator=g)
    return inputs

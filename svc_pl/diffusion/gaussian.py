"""Gaussian diffusion over normalised mels: the linear-beta schedule, the training loss and sampling.

Buffer names are those of so-vits-svc 4.1 (``decoder.betas``, ``decoder.alphas_cumprod``, ...), which stores them in
its checkpoints and loads them strictly; we keep them so a checkpoint round-trips both ways.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from svc_pl.diffusion import samplers
from svc_pl.layers.diffusion import WaveNetDenoiser

Method = Literal["ddpm", "ddim", "pndm", "dpm-solver", "dpm-solver++", "unipc"]
METHODS: tuple[str, ...] = ("ddpm", "ddim", "pndm", "dpm-solver", "dpm-solver++", "unipc")


class GaussianDiffusion(nn.Module):
    """Noise-prediction diffusion (Ho et al. 2020) with a linear beta schedule on mels scaled to [-1, 1].

    Args:
        denoise_fn: the noise predictor.
        n_mels: mel bins M.
        timesteps: diffusion steps of the schedule.
        k_step_max: steps the model is trained on (0 or >= ``timesteps``: all of them); a smaller value makes a
            shallow-diffusion-only model.
        max_beta: last beta of the schedule (the first is 1e-4).
        spec_min: mel value mapped to -1.
        spec_max: mel value mapped to 1.
    """

    def __init__(self, denoise_fn: WaveNetDenoiser, n_mels: int = 128, timesteps: int = 1000, k_step_max: int = 0,
                 max_beta: float = 0.02, spec_min: float = -12.0, spec_max: float = 2.0):
        super().__init__()
        self.denoise_fn = denoise_fn
        self.n_mels = n_mels
        self.num_timesteps = int(timesteps)
        self.k_step = k_step_max if 0 < k_step_max < timesteps else self.num_timesteps
        # computed in float64 and stored in float32, as upstream does (the checkpoints hold these values)
        betas = np.linspace(1e-4, max_beta, timesteps)
        ac = np.cumprod(1.0 - betas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        for name, value in (
            ("betas", betas), ("alphas_cumprod", ac), ("alphas_cumprod_prev", ac_prev),
            ("sqrt_alphas_cumprod", np.sqrt(ac)), ("sqrt_one_minus_alphas_cumprod", np.sqrt(1.0 - ac)),
            ("log_one_minus_alphas_cumprod", np.log(1.0 - ac)), ("sqrt_recip_alphas_cumprod", np.sqrt(1.0 / ac)),
            ("sqrt_recipm1_alphas_cumprod", np.sqrt(1.0 / ac - 1)), ("posterior_variance", post_var),
            ("posterior_log_variance_clipped", np.log(np.maximum(post_var, 1e-20))),
            ("posterior_mean_coef1", betas * np.sqrt(ac_prev) / (1.0 - ac)),
            ("posterior_mean_coef2", (1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac)),
        ):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32))
        self.register_buffer("spec_min", torch.tensor([[[spec_min]]], dtype=torch.float32))
        self.register_buffer("spec_max", torch.tensor([[[spec_max]]], dtype=torch.float32))

    def norm_spec(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, N, M) mel -> the same scaled so that [spec_min, spec_max] maps to [-1, 1]."""
        return (mel - self.spec_min) / (self.spec_max - self.spec_min) * 2 - 1

    def denorm_spec(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`norm_spec`."""
        return (x + 1) / 2 * (self.spec_max - self.spec_min) + self.spec_min

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise (B, M, T) clean ``x0`` to steps ``t`` (B,): sqrt(a_t) x0 + sqrt(1 - a_t) noise."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return (self.sqrt_alphas_cumprod[t].view(shape) * x0
                + self.sqrt_one_minus_alphas_cumprod[t].view(shape) * noise)

    def loss(self, cond: torch.Tensor, mel: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss: MSE between the noise and its prediction at a random step below ``k_step_max``.

        Args:
            cond: (B, H, T) condition.
            mel: (B, T, M) target mel (log-magnitude, vocoder scale).
            t: (B,) steps; random in [0, k_step_max) when None.
            noise: (B, M, T) noise; standard normal when None.

        Returns:
            scalar loss.
        """
        x0 = self.norm_spec(mel).transpose(1, 2)
        if t is None:
            t = torch.randint(0, self.k_step, (x0.shape[0],), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)  # x0 is a transposed view, as upstream's: the same numbers for a seed
        return F.mse_loss(self.denoise_fn(self.q_sample(x0, t, noise), t, cond), noise)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, gt_mel: torch.Tensor | None = None, k_step: int = 100,
               method: Method = "dpm-solver++", speedup: int = 10, noise: torch.Tensor | None = None,
               generator: samplers.Generators = None) -> torch.Tensor:
        """Denoise from pure noise (``gt_mel`` None: ``k_step_max`` steps) or from ``gt_mel`` noised to step ``k_step``.

        Args:
            cond: (B, H, T) condition.
            gt_mel: (B, T, M) mel to refine (shallow diffusion), or None.
            k_step: shallow-diffusion depth (ignored without ``gt_mel``).
            method: sampler; ``speedup`` <= 1 always runs plain DDPM over every step.
            speedup: stride between the steps visited (DDIM, PNDM) or steps / solver steps (DPM-Solver, UniPC).
            noise: (B, T, M) initial noise; drawn from ``generator`` when None.
            generator: random source of the initial noise and of DDPM's per-step noise: one, or one per row
                (see :func:`samplers.normal_noise`).

        Returns:
            (B, T, M) mel.
        """
        b, _, frames = cond.shape
        shape = (b, self.n_mels, frames)
        if noise is None:  # drawn into the layout upstream draws it into, so a seed gives upstream's numbers
            noise = samplers.normal_noise(shape, generator, cond.device, transposed=gt_mel is not None)
        else:
            noise = noise.transpose(1, 2).to(cond.device, torch.float32)
        if gt_mel is None:
            n_steps, x = self.k_step, noise
        else:
            n_steps = k_step
            t = torch.full((b,), k_step - 1, device=cond.device, dtype=torch.long)
            x = self.q_sample(self.norm_spec(gt_mel.float()).transpose(1, 2).to(cond.device), t, noise)
        cond_proj = self.denoise_fn.project_condition(cond)

        def eps_fn(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:  # the sampler's state stays fp32
            return self.denoise_fn.denoise(x, step, cond_proj).float()

        if method == "ddpm" or speedup <= 1:
            x = samplers.ddpm(eps_fn, x, n_steps, self._ddpm_buffers(), generator)
        elif method == "ddim":
            x = samplers.ddim(eps_fn, x, n_steps, speedup, self.alphas_cumprod)
        elif method == "pndm":
            x = samplers.pndm(eps_fn, x, n_steps, speedup, self.alphas_cumprod)
        elif method in ("dpm-solver", "dpm-solver++", "unipc"):
            steps = n_steps // speedup
            if steps < 1:
                raise ValueError(f"{method} with k_step {n_steps} and speedup {speedup} leaves no solver step: "
                                 f"use a speedup of at most {n_steps}")
            if method == "unipc":
                x = samplers.unipc(eps_fn, x, self.betas[:n_steps], steps)
            else:
                x = samplers.dpm_solver(eps_fn, x, self.betas[:n_steps], steps, plus=method == "dpm-solver++")
        else:
            raise ValueError(f"unknown diffusion method {method!r}; choose one of {', '.join(METHODS)}")
        return self.denorm_spec(x.transpose(1, 2))

    def _ddpm_buffers(self) -> dict[str, torch.Tensor]:
        names = ("sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
                 "posterior_mean_coef2", "posterior_log_variance_clipped")
        return {name: getattr(self, name) for name in names}

"""WaveNet noise predictor of the shallow-diffusion mel model (upstream: ``diffusion/wavenet.py``).

The parameter names (``input_projection``, ``mlp``, ``residual_layers.N.*``, ``skip_projection``,
``output_projection``) are those of so-vits-svc 4.1 diffusion checkpoints, so their state dicts load as is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal_step_embedding(step: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of (possibly fractional) diffusion steps.

    Args:
        step: (B,) step indices; DPM-Solver and UniPC pass fractional steps.
        dim: even embedding size.

    Returns:
        (B, dim) tensor, sines in the first half and cosines in the second.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=step.device) * (-math.log(10000.0) / (half - 1)))
    angles = step.float()[:, None] * freqs[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class DiffusionResidualBlock(nn.Module):
    """Gated convolution conditioned on the step embedding and the frame-level condition.

    Args:
        cond_channels: channels H of the condition (the model's hidden size).
        channels: residual channels C.
    """

    def __init__(self, cond_channels: int, channels: int):
        super().__init__()
        self.channels = channels
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, kernel_size=3, padding=1)
        self.diffusion_projection = nn.Linear(channels, channels)
        self.conditioner_projection = nn.Conv1d(cond_channels, 2 * channels, 1)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, cond_proj: torch.Tensor, step_emb: torch.Tensor):
        """One block.

        Args:
            x: (B, C, T) residual stream.
            cond_proj: (B, 2C, T) this block's ``conditioner_projection`` of the condition.
            step_emb: (B, C) step embedding after the shared MLP.

        Returns:
            ((B, C, T) new residual stream, (B, C, T) skip output).
        """
        y = self.dilated_conv(x + self.diffusion_projection(step_emb).unsqueeze(-1)) + cond_proj
        gate, filt = y.split(self.channels, dim=1)
        residual, skip = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt)).split(self.channels, dim=1)
        return (x + residual) * (1.0 / math.sqrt(2.0)), skip


class WaveNetDenoiser(nn.Module):
    """Predicts the noise in a normalised mel at a diffusion step, given the frame condition.

    Args:
        n_mels: mel bins M.
        n_layers: residual blocks.
        n_chans: residual channels C.
        n_hidden: condition channels H.
    """

    def __init__(self, n_mels: int = 128, n_layers: int = 20, n_chans: int = 384, n_hidden: int = 256):
        super().__init__()
        self.n_chans = n_chans
        self.input_projection = nn.Conv1d(n_mels, n_chans, 1)
        self.mlp = nn.Sequential(nn.Linear(n_chans, n_chans * 4), nn.Mish(), nn.Linear(n_chans * 4, n_chans))
        self.residual_layers = nn.ModuleList(DiffusionResidualBlock(n_hidden, n_chans) for _ in range(n_layers))
        self.skip_projection = nn.Conv1d(n_chans, n_chans, 1)
        self.output_projection = nn.Conv1d(n_chans, n_mels, 1)
        for conv in (self.input_projection, self.skip_projection, self.output_projection):
            nn.init.kaiming_normal_(conv.weight)
        nn.init.zeros_(self.output_projection.weight)  # starts by predicting zero noise

    def project_condition(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Each block's projection of the condition; it does not change across sampling steps, so samplers
        compute it once.

        Args:
            cond: (B, H, T) condition.

        Returns:
            one (B, 2C, T) tensor per block.
        """
        return [layer.conditioner_projection(cond) for layer in self.residual_layers]

    def denoise(self, x: torch.Tensor, step: torch.Tensor, cond_proj: list[torch.Tensor]) -> torch.Tensor:
        """Predicted noise from a precomputed :meth:`project_condition`.

        Args:
            x: (B, M, T) noisy normalised mel.
            step: (B,) diffusion step (may be fractional).
            cond_proj: output of :meth:`project_condition`.

        Returns:
            (B, M, T) predicted noise.
        """
        h = F.relu(self.input_projection(x))
        step_emb = self.mlp(sinusoidal_step_embedding(step, self.n_chans))
        skip_sum = None
        for layer, proj in zip(self.residual_layers, cond_proj):
            h, skip = layer(h, proj, step_emb)
            skip_sum = skip if skip_sum is None else skip_sum + skip
        h = F.relu(self.skip_projection(skip_sum * (1.0 / math.sqrt(len(self.residual_layers)))))
        return self.output_projection(h)

    def forward(self, x: torch.Tensor, step: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise.

        Args:
            x: (B, M, T) noisy normalised mel.
            step: (B,) diffusion step.
            cond: (B, H, T) condition.

        Returns:
            (B, M, T) predicted noise.
        """
        return self.denoise(x, step, self.project_condition(cond))

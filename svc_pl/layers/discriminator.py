"""HiFi-GAN discriminators: one scale discriminator plus period discriminators 2, 3, 5, 7, 11
(upstream: ``models.DiscriminatorP``/``DiscriminatorS``/``MultiPeriodDiscriminator``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from svc_pl.layers.commons import get_padding
from svc_pl.layers.nsf import LRELU_SLOPE


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack then the 1-channel output conv: (logits flattened to (B, N), every layer's output)."""
    fmap = []
    for layer in convs:
        x = F.leaky_relu(layer(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Looks at the waveform folded into ``period`` columns. (B, 1, T) -> (logits (B, N), feature maps)."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False,
                 width: float = 1.0):
        super().__init__()
        self.period = period
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        pad = (get_padding(kernel_size, 1), 0)
        chans = [1] + [max(1, int(c * width)) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList([
            norm_f(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad))
            for i in range(5)
        ])
        self.conv_post = norm_f(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        return _conv_stack(self.convs, self.conv_post, x.view(b, c, t // self.period, self.period))


class DiscriminatorS(nn.Module):
    """Grouped strided 1-D convs over the raw waveform. (B, 1, T) -> (logits (B, N), feature maps)."""

    def __init__(self, use_spectral_norm: bool = False, width: float = 1.0):
        super().__init__()
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        c = [max(4, int(ch * width)) for ch in (16, 64, 256, 1024)]
        self.convs = nn.ModuleList([
            norm_f(nn.Conv1d(1, c[0], 15, 1, padding=7)),
            norm_f(nn.Conv1d(c[0], c[1], 41, 4, groups=4, padding=20)),
            norm_f(nn.Conv1d(c[1], c[2], 41, 4, groups=16, padding=20)),
            norm_f(nn.Conv1d(c[2], c[3], 41, 4, groups=64, padding=20)),
            norm_f(nn.Conv1d(c[3], c[3], 41, 4, groups=256, padding=20)),
            norm_f(nn.Conv1d(c[3], c[3], 5, 1, padding=2)),
        ])
        self.conv_post = norm_f(nn.Conv1d(c[3], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.convs, self.conv_post, x)


class DiscriminatorOutput(NamedTuple):
    """Per sub-discriminator: logits for real and generated audio, and their feature maps."""

    real_logits: list[torch.Tensor]
    fake_logits: list[torch.Tensor]
    real_fmaps: list[list[torch.Tensor]]
    fake_fmaps: list[list[torch.Tensor]]


class MultiPeriodDiscriminator(nn.Module):
    """``DiscriminatorS`` + ``DiscriminatorP`` for each period; state-dict layout as upstream.

    ``width`` scales every channel count (1.0 is upstream's, what so-vits-svc's ``D_*.pth`` hold; the tiny CPU
    config uses 0.25, where the full-size discriminator would cost more than the generator).
    """

    def __init__(self, use_spectral_norm: bool = False, periods: tuple[int, ...] = (2, 3, 5, 7, 11),
                 width: float = 1.0):
        super().__init__()
        discs: list[nn.Module] = [DiscriminatorS(use_spectral_norm=use_spectral_norm, width=width)]
        discs += [DiscriminatorP(p, use_spectral_norm=use_spectral_norm, width=width) for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscriminatorOutput:
        """y, y_hat: (B, 1, T) real and generated audio. Both go through each sub-discriminator in one batch."""
        out = DiscriminatorOutput([], [], [], [])
        n = y.size(0)
        both = torch.cat([y, y_hat], 0)
        for d in self.discriminators:
            logits, fmaps = d(both)
            out.real_logits.append(logits[:n])
            out.fake_logits.append(logits[n:])
            out.real_fmaps.append([f[:n] for f in fmaps])
            out.fake_fmaps.append([f[n:] for f in fmaps])
        return out

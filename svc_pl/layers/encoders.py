"""The synthesizer's encoders: posterior (spectrogram -> z), prior (units + pitch -> prior statistics) and the
F0 decoder (upstream: ``models.Encoder``/``TextEncoder``/``F0Decoder``)."""

from __future__ import annotations

import torch
from torch import nn

from svc_pl.layers.commons import randn_rows, sequence_mask
from svc_pl.layers.transformer import CausalTransformer, Encoder
from svc_pl.layers.wavenet import WN


class PosteriorEncoder(nn.Module):
    """Linear spectrogram -> posterior sample z and its statistics (upstream ``enc_q``, class ``Encoder``).

    forward(x (B, spec, T), lengths (B,), g (B, gin, 1)) -> (z, m, logs (B, out, T), mask (B, 1, T)).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int = 0, depthwise: bool = False):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels, depthwise=depthwise)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, g: torch.Tensor | None = None):
        x_mask = sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        x = self.enc(self.pre(x) * x_mask, x_mask, g=g)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask


class PriorEncoder(nn.Module):
    """VITS prior encoder: projected content units plus a coarse-pitch embedding -> prior statistics
    (upstream ``enc_p``, class ``TextEncoder``). The content encoders that make the units are in
    :mod:`svc_pl.data.content`.

    forward(x (B, hidden, T), mask (B, 1, T), f0_coarse (B, T) long, noise_scale)
        -> (z (B, out, T) sampled with ``noise_scale``, m, logs, mask).
    """

    def __init__(self, out_channels: int, hidden_channels: int, kernel_size: int, n_layers: int, filter_channels: int,
                 n_heads: int, p_dropout: float):
        super().__init__()
        self.out_channels = out_channels
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)
        self.f0_emb = nn.Embedding(256, hidden_channels)
        self.enc_ = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, f0_coarse: torch.Tensor, noise_scale: float = 1.0):
        x = x + self.f0_emb(f0_coarse).transpose(1, 2)
        x = self.enc_(x * x_mask, x_mask)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        z = (m + randn_rows(m) * torch.exp(logs) * noise_scale) * x_mask
        return z, m, logs, x_mask


class F0Decoder(nn.Module):
    """Predicts normalised log-F0 from the (detached) prior input, the speaker and the source pitch.

    forward(x (B, hidden, T), norm_lf0 (B, 1, T), mask (B, 1, T), spk_emb (B, gin, 1)) -> (B, out, T).
    """

    def __init__(self, out_channels: int, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int, p_dropout: float, spk_channels: int = 0):
        super().__init__()
        self.prenet = nn.Conv1d(hidden_channels, hidden_channels, 3, padding=1)
        self.decoder = CausalTransformer(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, out_channels, 1)
        self.f0_prenet = nn.Conv1d(1, hidden_channels, 3, padding=1)
        self.cond = nn.Conv1d(spk_channels, hidden_channels, 1)

    def forward(self, x: torch.Tensor, norm_f0: torch.Tensor, x_mask: torch.Tensor,
                spk_emb: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.detach(x)
        if spk_emb is not None:
            x = x + self.cond(spk_emb)
        x = x + self.f0_prenet(norm_f0)
        x = self.prenet(x) * x_mask
        x = self.decoder(x * x_mask, x_mask)
        return self.proj(x) * x_mask

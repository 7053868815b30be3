"""so-vits-svc 4.1 training losses (upstream ``modules/losses.py``): LSGAN adversarial, feature
matching, KL between the flowed posterior and the prior, and the mel reconstruction loss as a module
that owns its mel transform."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.data.spectral import MelSpectrogram


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """sum_k mean((1 - D(y))^2) + mean(D(y_hat)^2)."""
    loss = 0.0
    for dr, dg in zip(real_logits, fake_logits):
        loss = loss + torch.mean((1 - dr.float()) ** 2) + torch.mean(dg.float() ** 2)
    return loss


def generator_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """sum_k mean((1 - D(y_hat))^2)."""
    return sum(torch.mean((1 - dg.float()) ** 2) for dg in fake_logits)


def feature_loss(real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]]) -> torch.Tensor:
    """2 * sum over layers of mean |D_l(y) - D_l(y_hat)|, real features detached."""
    loss = 0.0
    for dr, dg in zip(real_fmaps, fake_fmaps):
        for rl, gl in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(rl.float().detach() - gl.float()))
    return loss * 2


def kl_loss(z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
            z_mask: torch.Tensor) -> torch.Tensor:
    """KL between the flowed posterior sample and the prior, averaged over valid frames. All (B, C, T)."""
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


class MelLoss(nn.Module):
    """L1 between log-mels of real and generated audio, computed in fp32 whatever the autocast."""

    def __init__(self, sampling_rate: int, n_fft: int, hop_length: int, win_length: int, n_mels: int = 80,
                 fmin: float = 0.0, fmax: float | None = None):
        super().__init__()
        self.mel = MelSpectrogram(sampling_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """y_hat, y: (B, 1, T). Returns (loss, mel of y_hat, mel of y)."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            mel_hat = self.mel(y_hat.float())
            mel = self.mel(y.float())
            return F.l1_loss(mel, mel_hat), mel_hat, mel


class ContentLoss(nn.Module):
    """L1 between the content encoder's units of generated and of real audio (the same segment): the output must
    read as its input's words to the encoder the units come from (an ASR encoder for Whisper units).

    The encoder is frozen and kept out of the module's state (checkpoints do not carry it); it follows the audio's
    device on the first call. Audio at another rate than the encoder's 16 kHz is resampled (differentiably).
    """

    def __init__(self, encoder: nn.Module, sampling_rate: int):
        super().__init__()
        encoder.requires_grad_(False).eval()
        self.sampling_rate = int(sampling_rate)
        # lists: not submodules, so neither saved nor moved by Lightning; the resampler's kernel is built once
        self._encoder = [encoder]
        self._resample = [] if self.sampling_rate == 16000 else [_resampler(self.sampling_rate)]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y_hat, y: (B, 1, T) at ``sampling_rate``. Returns the mean absolute unit difference."""
        from svc_pl.data.unit_window import HOP16, encode_unpadded

        enc = self._encoder[0]
        if next(enc.parameters()).device != y.device:
            for m in (enc, *self._resample):
                m.to(y.device)
        with torch.autocast(device_type=y.device.type, enabled=False):
            a, b = y_hat.float().flatten(1), y.float().flatten(1)
            for resample in self._resample:
                a, b = resample(a), resample(b)
            frames = b.shape[-1] // HOP16
            a, b = a[:, :frames * HOP16], b[:, :frames * HOP16]
            with torch.no_grad():
                units = encode_unpadded(enc, b, frames)
            return F.l1_loss(encode_unpadded(enc, a, frames), units)


def _resampler(rate: int) -> nn.Module:
    """A differentiable resampler from ``rate`` to 16 kHz (its filter computed here, once)."""
    import torchaudio

    return torchaudio.transforms.Resample(rate, 16000)

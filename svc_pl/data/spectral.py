"""Linear and mel spectrograms exactly as so-vits-svc computes them (upstream ``modules/mel_processing.py``):
reflect padding of (n_fft - hop) / 2, Hann window, ``center=False``, magnitude sqrt(re^2 + im^2 + 1e-6),
Slaney mel filters, log(clamp(x, 1e-5)). Modules build their window and filterbank once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearSpectrogram(nn.Module):
    """(B, T) or (B, 1, T) audio in [-1, 1] -> (B, n_fft // 2 + 1, T // hop) magnitudes."""

    def __init__(self, n_fft: int = 2048, hop_length: int = 512, win_length: int = 2048):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 3:
            y = y.squeeze(1)
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            pad = (self.n_fft - self.hop_length) // 2
            y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            spec = torch.stft(y, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=self.window.to(y.device), center=False, normalized=False, onesided=True,
                              return_complex=True)
            return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-6)


def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    """Slaney-normalised mel filters (n_mels, n_fft // 2 + 1), as librosa.filters.mel."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()


class MelSpectrogram(nn.Module):
    """Log-mel spectrogram. ``forward`` takes audio; ``from_linear`` takes a :class:`LinearSpectrogram` output.

    Shapes: (B, T) or (B, 1, T) -> (B, n_mels, T // hop).
    """

    def __init__(self, sampling_rate: int = 44100, n_fft: int = 2048, hop_length: int = 512, win_length: int = 2048,
                 n_mels: int = 80, fmin: float = 0.0, fmax: float | None = 22050):
        super().__init__()
        self.linear = LinearSpectrogram(n_fft, hop_length, win_length)
        self.register_buffer("mel_basis", mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax), persistent=False)

    def from_linear(self, spec: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=spec.device.type, enabled=False):
            mel = torch.matmul(self.mel_basis.to(spec.device), spec.float())
            return torch.log(torch.clamp(mel, min=1e-5))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.from_linear(self.linear(y))

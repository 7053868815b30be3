"""Linear and mel spectrograms exactly as so-vits-svc computes them (upstream ``modules/mel_processing.py``):
reflect padding of (n_fft - hop) / 2, Hann window, ``center=False``, magnitude sqrt(re^2 + im^2 + 1e-6),
Slaney mel filters, log(clamp(x, 1e-5)); and the NSF-HiFiGAN vocoder's log-mel (:class:`LogMelSpectrogram`, openvpi's
front end), which the enhancer and the diffusion model read and write. Modules build their window and filterbank once.
"""

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


class LogMelSpectrogram(nn.Module):
    """openvpi's vocoder front end (``nvSTFT.STFT.get_mel``, with its key shift): reflect padding of
    (win - hop) / 2 on each side, uncentred Hann STFT, magnitude sqrt(re² + im² + 1e-9), Slaney mel
    bank, natural log clamped at ``clip_val``. Filters and window are built once, as buffers.

    It differs from so-vits-svc's own mel (:class:`MelSpectrogram`) in the
    magnitude epsilon (1e-9, not 1e-6), the padding when win_size != n_fft, and very short input.

    forward(audio (B, T), keyshift=0.0) -> (B, num_mels, frames), frames = (T + win - hop - n_fft) // hop + 1.
    A ``keyshift`` of s semitones analyses with FFT and window stretched by ``2 ** (-s / 12)`` at the same hop, so
    the spectrum moves up by s semitones (the diffusion model's pitch-shift augmentation).
    """

    def __init__(
        self,
        sampling_rate: int,
        n_fft: int,
        win_size: int,
        hop_size: int,
        num_mels: int,
        fmin: float = 0.0,
        fmax: float | None = None,
        clip_val: float = 1e-5,
    ):
        super().__init__()
        self.n_fft = n_fft
        self.win_size = win_size
        self.hop_size = hop_size
        self.clip_val = clip_val
        fmax = None if fmax is None or fmax > sampling_rate / 2 else fmax
        self.register_buffer(
            "mel_basis", mel_filterbank(sampling_rate, n_fft, num_mels, fmin, fmax), persistent=False
        )
        self.register_buffer("window", torch.hann_window(win_size), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> LogMelSpectrogram:
        """From a vocoder's settings (:class:`svc_pl.infer.enhancer.VocoderConfig`: sampling_rate, n_fft, win_size,
        hop_size, num_mels, fmin, fmax)."""
        return cls(cfg.sampling_rate, cfg.n_fft, cfg.win_size, cfg.hop_size, cfg.num_mels, cfg.fmin, cfg.fmax)

    def forward(self, audio: torch.Tensor, keyshift: float = 0.0) -> torch.Tensor:
        n_fft, win, window = self.n_fft, self.win_size, self.window
        if keyshift:
            factor = 2 ** (keyshift / 12)
            n_fft, win = round(self.n_fft * factor), round(self.win_size * factor)
            window = torch.hann_window(win, device=audio.device)
        length = audio.size(-1)
        pad_left = (win - self.hop_size) // 2
        pad_right = max((win - self.hop_size + 1) // 2, win - length - pad_left)
        # very short input: reflect padding is impossible, zero-pad to one window as openvpi does
        mode = "reflect" if pad_right < length else "constant"
        audio = F.pad(audio.unsqueeze(1), (pad_left, pad_right), mode=mode).squeeze(1)
        spec = torch.stft(audio, n_fft, hop_length=self.hop_size, win_length=win, window=window, center=False,
                          normalized=False, onesided=True, return_complex=True)
        magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        if keyshift:  # back to the unshifted bin count and level
            size = self.n_fft // 2 + 1
            magnitude = F.pad(magnitude, (0, 0, 0, max(0, size - magnitude.size(1))))[:, :size] * (self.win_size / win)
        return torch.log(torch.clamp(torch.matmul(self.mel_basis, magnitude), min=self.clip_val))

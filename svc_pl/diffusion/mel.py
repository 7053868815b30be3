"""The diffusion model's training target: the NSF-HiFiGAN vocoder's log-mel, with so-vits-svc's key shift.

Pitch-shift augmentation (``use_pitch_aug``) trains on the mel of the audio analysed with a window stretched by
``2 ** (-shift / 12)`` (the spectrum moves by ``shift`` semitones, the frame rate stays), next to F0 times
``2 ** (shift / 12)`` and the shift itself as an input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from svc_pl.data.spectral import mel_filterbank


class VocoderLogMel(nn.Module):
    """openvpi NSF-HiFiGAN mel front end (reflect padding of (win - hop) / 2, uncentred Hann STFT, Slaney mel, natural
    log clamped at 1e-5), with an optional key shift. Equals :class:`svc_pl.infer.enhancer.LogMelSpectrogram` at
    shift 0.

    Args:
        sampling_rate: audio rate.
        n_fft: FFT size.
        win_size: window length.
        hop_size: frame hop.
        n_mels: mel bins.
        fmin: lowest mel frequency.
        fmax: highest mel frequency (None or above Nyquist: Nyquist).
    """

    def __init__(self, sampling_rate: int = 44100, n_fft: int = 2048, win_size: int = 2048, hop_size: int = 512,
                 n_mels: int = 128, fmin: float = 40.0, fmax: float | None = 16000.0):
        super().__init__()
        self.n_fft, self.win_size, self.hop_size = n_fft, win_size, hop_size
        fmax = None if fmax is None or fmax > sampling_rate / 2 else fmax
        self.register_buffer("mel_basis", mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax), persistent=False)

    def forward(self, audio: torch.Tensor, keyshift: float = 0.0) -> torch.Tensor:
        """Log-mel of (B, T) audio, shifted by ``keyshift`` semitones.

        Returns:
            (B, n_mels, frames), frames = (T + win - hop - n_fft) // hop + 1 (T // hop when win == n_fft).
        """
        factor = 2 ** (keyshift / 12)
        n_fft, win = round(self.n_fft * factor), round(self.win_size * factor)
        length = audio.size(-1)
        pad_left = (win - self.hop_size) // 2
        pad_right = max((win - self.hop_size + 1) // 2, win - length - pad_left)
        mode = "reflect" if pad_right < length else "constant"
        audio = F.pad(audio.float().unsqueeze(1), (pad_left, pad_right), mode=mode).squeeze(1)
        window = torch.hann_window(win, device=audio.device)
        spec = torch.stft(audio, n_fft, hop_length=self.hop_size, win_length=win, window=window, center=False,
                          return_complex=True)
        mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        if keyshift != 0:
            size = self.n_fft // 2 + 1
            mag = F.pad(mag, (0, 0, 0, max(0, size - mag.size(1))))[:, :size] * (self.win_size / win)
        return torch.log(torch.clamp(self.mel_basis @ mag, min=1e-5))

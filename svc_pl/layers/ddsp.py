"""A DDSP harmonic-plus-noise decoder (as DDSP-SVC uses): the network predicts, per frame, a loudness,
a distribution over harmonics and the gains of a noise filter; the audio is an additive bank of sines at
k * F0 plus filtered white noise. Pitch is followed exactly by construction, so the decoder produces
harmonics from its first training step and trains in minutes without a discriminator.

Shapes: the decoder takes frame-rate features ``x`` (B, C, T), F0 in Hz (B, T), voiced flags (B, T) and
a speaker embedding ``g`` (B, gin, 1 or T) and returns (B, 1, T * hop) audio.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.layers.commons import rand_rows


def exp_sigmoid(x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7):
    """DDSP's positive output nonlinearity: max_value * sigmoid(x) ** log(exponent) + threshold."""
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


def upsample_frames(x: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, C, T) frame values -> (B, C, T * hop), linearly interpolated between frame centres."""
    b, c, t = x.shape
    padded = torch.cat([x, x[..., -1:]], dim=-1)
    up = F.interpolate(padded, size=t * hop + 1, mode="linear", align_corners=True)
    return up[..., :-1]


def harmonic_phase(f0: torch.Tensor, hop: int, sampling_rate: int) -> torch.Tensor:
    """The fundamental's phase in cycles, wrapped to [0, 1), per sample: (B, T) frame F0 -> (B, T * hop).

    The running sum is taken in float64 and wrapped, so long inputs keep their phase accurate.
    """
    f0_up = upsample_frames(f0.unsqueeze(1).float(), hop).squeeze(1)
    return torch.frac(torch.cumsum(f0_up.double() / sampling_rate, dim=-1)).float()


class DDSPDecoder(nn.Module):
    """Frame-rate network + harmonic/noise synthesiser.

    Args:
        in_channels: channels of the frame features ``x`` (the prior encoder's output).
        sampling_rate, hop: audio rate and samples per frame.
        hidden: channels of the three convolutions.
        n_harmonics: sines per frame (those above Nyquist are silenced).
        n_noise_bands: linearly spaced gains of the noise filter, 0 Hz to Nyquist.
        gin_channels: speaker-embedding size.
        envelope_bins: 0: the network gives each harmonic's share directly (DDSP's harmonic distribution, one
            output per harmonic number); N > 0: it gives a log-amplitude envelope at N frequencies spaced evenly
            from 0 Hz to Nyquist, read at k * F0 (linear interpolation), so a formant stays at its frequency
            whatever the pitch (a source-filter reading of the same controls).
        noise_steps: times per frame the noise is shaped. 1: the noise filter's gains are set once per frame and
            applied through a 4-frame (Hann) STFT window, hop one frame. S > 1: the STFT hop is ``hop / S`` and the
            window ``4 * hop / S`` (an 80 ms window becomes 20 ms at S = 4), the frame gains are interpolated
            between frames, and a second head gives the noise a level per sub-step (``2 * sigmoid``, 1 when its
            weights are zero), so a plosive's 5-10 ms burst is not smeared over the window.
    """

    def __init__(self, in_channels: int, sampling_rate: int, hop: int, hidden: int = 256, n_harmonics: int = 64,
                 n_noise_bands: int = 65, gin_channels: int = 0, kernel_size: int = 3, envelope_bins: int = 0,
                 noise_steps: int = 1):
        super().__init__()
        if envelope_bins == 1 or envelope_bins < 0:
            raise ValueError(f"envelope_bins must be 0 (harmonic distribution) or at least 2, not {envelope_bins}")
        if noise_steps < 1 or hop % noise_steps:
            raise ValueError(f"noise_steps must be a positive divisor of the hop ({hop}), not {noise_steps}")
        self.sampling_rate = sampling_rate
        self.upp = hop
        self.n_harmonics = n_harmonics
        self.n_noise_bands = n_noise_bands
        self.envelope_bins = envelope_bins
        self.pre = nn.Conv1d(in_channels + 2, hidden, kernel_size, padding=kernel_size // 2)
        self.cond = nn.Conv1d(gin_channels, hidden, 1) if gin_channels else None
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2) for _ in range(3))
        self.norms = nn.ModuleList(nn.GroupNorm(1, hidden) for _ in range(3))
        self.out = nn.Conv1d(hidden, 1 + self.n_shape + n_noise_bands, 1)
        self.noise_steps = noise_steps
        # the noise's level per sub-step (none at one step per frame: the bases trained that way load unchanged)
        self.noise_env = nn.Conv1d(hidden, noise_steps, 1) if noise_steps > 1 else None
        if self.noise_env is not None:  # level 1 everywhere at the start (and from a base trained without it)
            nn.init.zeros_(self.noise_env.weight)
            nn.init.zeros_(self.noise_env.bias)
        self.noise_hop = hop // noise_steps
        self.n_fft = 4 * self.noise_hop
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def n_shape(self) -> int:
        """Outputs that shape the harmonics: one per harmonic, or the envelope's bins."""
        return self.envelope_bins or self.n_harmonics

    def harmonic_logits(self, shape: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """(B, K, T) logits of the harmonics' shares from the shape outputs (B, n_shape, T) and F0 (B, T)."""
        if not self.envelope_bins:
            return shape
        k = torch.arange(1, self.n_harmonics + 1, device=shape.device, dtype=shape.dtype).view(1, -1, 1)
        pos = (f0.float().unsqueeze(1) * k * (2.0 * (self.envelope_bins - 1) / self.sampling_rate))
        pos = pos.clamp(0, self.envelope_bins - 1.0)  # above Nyquist: the top bin (those harmonics are silenced)
        lo = pos.floor().clamp(max=self.envelope_bins - 2)
        w = pos - lo
        lo = lo.long()
        return torch.gather(shape, 1, lo) * (1 - w) + torch.gather(shape, 1, lo + 1) * w

    def controls(self, x: torch.Tensor, f0: torch.Tensor, uv: torch.Tensor, g: torch.Tensor | None):
        """Frame controls: harmonic amplitudes (B, K, T) (zero above Nyquist and when unvoiced) and
        noise-filter gains (B, M, T * noise_steps)."""
        lf0 = torch.log(f0.clamp(min=1.0)).unsqueeze(1) / 6.0 - 1.0
        h = self.pre(torch.cat([x, lf0.to(x.dtype), uv.unsqueeze(1).to(x.dtype)], dim=1))
        if self.cond is not None and g is not None:
            h = h + self.cond(g)
        for conv, norm in zip(self.convs, self.norms):
            h = h + F.leaky_relu(norm(conv(h)), 0.1)
        o = self.out(h).float()
        loud, noise = o[:, :1], o[:, 1 + self.n_shape:]
        dist = self.harmonic_logits(o[:, 1:1 + self.n_shape], f0)
        k = torch.arange(1, self.n_harmonics + 1, device=o.device, dtype=o.dtype).view(1, -1, 1)
        audible = (f0.float().unsqueeze(1) * k < self.sampling_rate / 2).to(o.dtype)
        dist = torch.softmax(dist, dim=1) * audible
        dist = dist / dist.sum(dim=1, keepdim=True).clamp(min=1e-7)
        amps = exp_sigmoid(loud) * dist * uv.float().unsqueeze(1)
        gains = exp_sigmoid(noise - 5.0)
        if self.noise_env is not None:  # (B, M, T) -> (B, M, T * S): between frames, times the level per sub-step
            b, _, t = gains.shape
            level = 2 * torch.sigmoid(self.noise_env(h).float())  # (B, S, T)
            level = level.transpose(1, 2).reshape(b, 1, t * self.noise_steps)  # sub-step s of frame t at t * S + s
            gains = upsample_frames(gains, self.noise_steps) * level
        return amps, gains

    def harmonics(self, amps: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """Additive synthesis: (B, K, T) amplitudes at k * F0 -> (B, T * hop)."""
        phase = harmonic_phase(f0, self.upp, self.sampling_rate)
        amps_up = upsample_frames(amps, self.upp)
        k = torch.arange(1, self.n_harmonics + 1, device=amps.device, dtype=torch.float32).view(1, -1, 1)
        sines = torch.sin(2 * math.pi * torch.frac(phase.unsqueeze(1) * k))
        return (sines * amps_up).sum(dim=1)

    def noise(self, gains: torch.Tensor, n_samples: int) -> torch.Tensor:
        """White noise shaped per sub-step by ``gains`` (B, M, T * noise_steps), via STFT filtering
        (B, n_samples)."""
        b = gains.shape[0]
        white = rand_rows(b, n_samples, device=gains.device) * 2 - 1
        spec = torch.stft(white, self.n_fft, self.noise_hop, window=self.window, return_complex=True)
        bins = spec.shape[1]
        g = F.interpolate(gains.transpose(1, 2), size=bins, mode="linear", align_corners=True).transpose(1, 2)
        g = torch.cat([g, g[..., -1:]], dim=-1)[..., :spec.shape[-1]]
        return torch.istft(spec * g, self.n_fft, self.noise_hop, window=self.window, length=n_samples)

    def forward(self, x: torch.Tensor, f0: torch.Tensor, uv: torch.Tensor, g: torch.Tensor | None = None
                ) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            amps, gains = self.controls(x.float(), f0.float(), uv.float(), None if g is None else g.float())
            n = x.shape[-1] * self.upp
            audio = self.harmonics(amps, f0.float()) + self.noise(gains, n)
        return audio.unsqueeze(1)


class MultiResolutionSTFTLoss(nn.Module):
    """Sum over FFT sizes of spectral convergence + L1 of log magnitudes (hop = size / 4)."""

    def __init__(self, fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256)):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y_hat, y: (B, 1, N) or (B, N)."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            y_hat, y = y_hat.float().reshape(y_hat.shape[0], -1), y.float().reshape(y.shape[0], -1)
            loss = 0.0
            for n in self.fft_sizes:
                w = getattr(self, f"window_{n}")
                s_hat = torch.stft(y_hat, n, n // 4, window=w, return_complex=True).abs().clamp(min=1e-7)
                s = torch.stft(y, n, n // 4, window=w, return_complex=True).abs().clamp(min=1e-7)
                sc = torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp(min=1e-7)
                loss = loss + sc + F.l1_loss(torch.log(s_hat), torch.log(s))
            return loss / len(self.fft_sizes)

"""NSF-HiFiGAN: a HiFi-GAN generator driven by a harmonic-plus-noise source built from F0
(upstream: ``vdecoder/hifigan/models.py`` for the 4.1 decoder, ``vdecoder/nsf_hifigan/models.py``
for openvpi's vocoder used by the enhancer). One definition serves both: the differences are
switches (``gin_channels``, ``padding``, ``source``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.layers.commons import get_padding, init_weights, rand_rows, randn_rows
from svc_pl.layers.conv import make_conv1d, remove_weight_norm_modules, weight_norm_modules

LRELU_SLOPE = 0.1


class ResBlock1(nn.Module):
    """Three dilated conv pairs with residuals (HiFi-GAN V1). (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5), depthwise: bool = False):
        super().__init__()

        def conv(d: int) -> nn.Module:
            return weight_norm_modules(make_conv1d(depthwise, channels, channels, kernel_size, 1, dilation=d,
                                                   padding=get_padding(kernel_size, d)))

        self.convs1 = nn.ModuleList([conv(d) for d in dilation[:3]])
        self.convs1.apply(init_weights)
        self.convs2 = nn.ModuleList([conv(1) for _ in range(3)])
        self.convs2.apply(init_weights)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            xt = F.leaky_relu(c1(xt), LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            x = c2(xt) + x
        return x * x_mask if x_mask is not None else x

    def remove_weight_norm(self) -> None:
        for layer in (*self.convs1, *self.convs2):
            remove_weight_norm_modules(layer)


class ResBlock2(nn.Module):
    """Two dilated convs with residuals (HiFi-GAN V3). (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3), depthwise: bool = False):
        super().__init__()
        self.convs = nn.ModuleList([
            weight_norm_modules(make_conv1d(depthwise, channels, channels, kernel_size, 1, dilation=d,
                                            padding=get_padding(kernel_size, d)))
            for d in dilation[:2]
        ])
        self.convs.apply(init_weights)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        for c in self.convs:
            xt = F.leaky_relu(x, LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            x = c(xt) + x
        return x * x_mask if x_mask is not None else x

    def remove_weight_norm(self) -> None:
        for layer in self.convs:
            remove_weight_norm_modules(layer)


def mean_of_blocks(blocks: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The average of ``blocks`` applied to ``x`` (one HiFi-GAN upsampling stage's multi-receptive-field fusion)."""
    xs = blocks[0](x)
    for block in blocks[1:]:
        xs = xs + block(x)
    return xs / len(blocks)


class SineGen(nn.Module):
    """Sines at F0 and its harmonics, zero where unvoiced, plus Gaussian noise.

    Two ways to integrate the phase, matching the two upstream vocoders:
    ``"sample"`` (4.1 decoder): cumulative sum at the sample rate of the upsampled F0;
    ``"frame"`` (openvpi vocoder): cumulative sum at the frame rate, linearly interpolated.

    Random numbers, drawn from the global generator in this order: the initial phase of each
    harmonic (the fundamental starts at 0), then the additive noise.
    """

    def __init__(self, sampling_rate: int, harmonic_num: int = 0, sine_amp: float = 0.1, noise_std: float = 0.003,
                 voiced_threshold: float = 0.0, mode: Literal["sample", "frame"] = "sample"):
        super().__init__()
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.dim = harmonic_num + 1
        self.sampling_rate = sampling_rate
        self.voiced_threshold = voiced_threshold
        self.mode = mode

    def _initial_phase(self, rad: torch.Tensor) -> torch.Tensor:
        rand_ini = rand_rows(rad.shape[0], rad.shape[2], device=rad.device)
        rand_ini[:, 0] = 0
        rad[:, 0, :] = rad[:, 0, :] + rand_ini
        return rad

    def _phase_sample_rate(self, f0_up: torch.Tensor) -> torch.Tensor:
        """f0_up (B, L, 1) at the sample rate -> sines (B, L, dim)."""
        harmonics = torch.arange(1, self.dim + 1, device=f0_up.device, dtype=f0_up.dtype).view(1, 1, -1)
        rad = self._initial_phase((f0_up * harmonics / self.sampling_rate) % 1)
        # Subtract 1 wherever the wrapped running phase wraps, so the cumulative sum stays small.
        wrapped = torch.cumsum(rad, 1) % 1
        shift = torch.zeros_like(rad)
        shift[:, 1:, :] = (wrapped[:, 1:, :] - wrapped[:, :-1, :] < 0) * -1.0
        return torch.sin(torch.cumsum(rad + shift, dim=1) * 2 * math.pi)

    def _phase_frame_rate(self, f0: torch.Tensor, upp: int) -> torch.Tensor:
        """f0 (B, N, 1) at the frame rate -> sines (B, N*upp, dim)."""
        harmonics = torch.arange(1, self.dim + 1, device=f0.device, dtype=f0.dtype).view(1, 1, -1)
        rad = self._initial_phase((f0 * harmonics / self.sampling_rate) % 1)
        phase = torch.cumsum(rad.double(), 1).to(rad.dtype) * upp
        phase = F.interpolate(phase.transpose(2, 1), scale_factor=upp, mode="linear", align_corners=True).transpose(2, 1)
        rad = F.interpolate(rad.transpose(2, 1), scale_factor=upp, mode="nearest").transpose(2, 1)
        phase = phase % 1
        shift = torch.zeros_like(rad)
        shift[:, 1:, :] = (phase[:, 1:, :] - phase[:, :-1, :] < 0) * -1.0
        return torch.sin(torch.cumsum((rad + shift).double(), dim=1) * 2 * math.pi).to(rad.dtype)

    @torch.no_grad()
    def forward(self, f0: torch.Tensor, upp: int) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 (B, N) Hz at the frame rate, 0 where unvoiced -> (sine waves (B, N*upp, dim), uv (B, N*upp, 1))."""
        f0 = f0.float().unsqueeze(-1)
        if self.mode == "sample":
            f0 = torch.repeat_interleave(f0, upp, dim=1)
            sines = self._phase_sample_rate(f0)
            uv = (f0 > self.voiced_threshold).float()
        else:
            sines = self._phase_frame_rate(f0, upp)
            uv = torch.repeat_interleave((f0 > self.voiced_threshold).float(), upp, dim=1)
        sines = sines * self.sine_amp
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        noise = noise_amp * randn_rows(sines)
        return sines * uv + noise, uv


class SourceModuleHnNSF(nn.Module):
    """Harmonic source: sines merged to one excitation by a linear layer and tanh. Upstream name kept."""

    def __init__(self, sampling_rate: int, harmonic_num: int = 0, sine_amp: float = 0.1, add_noise_std: float = 0.003,
                 voiced_threshold: float = 0.0, mode: Literal["sample", "frame"] = "sample"):
        super().__init__()
        self.l_sin_gen = SineGen(sampling_rate, harmonic_num, sine_amp, add_noise_std, voiced_threshold, mode)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, f0: torch.Tensor, upp: int) -> torch.Tensor:
        """f0 (B, N) -> excitation (B, 1, N*upp), in the weights' precision even under autocast (a bf16
        excitation alone costs the output about 1.5 dB of SNR against fp32)."""
        with torch.autocast(device_type=f0.device.type, enabled=False):
            sine_wavs, _ = self.l_sin_gen(f0.float(), upp)
            return self.l_tanh(self.l_linear(sine_wavs.to(self.l_linear.weight.dtype))).transpose(1, 2)


class NSFHiFiGAN(nn.Module):
    """HiFi-GAN generator with an NSF source injected after every upsampling stage.

    Args:
        in_channels: frame features (latent z for the 4.1 decoder, mel bins for openvpi's vocoder).
        sampling_rate: the rate the sine source is computed at: the output's, except for so-vits-svc models
            trained with its 44100 Hz default at another rate (see :class:`svc_pl.synthesizer.NetConfig`).
        upsample_rates / upsample_kernel_sizes / upsample_initial_channel: HiFi-GAN upsampler.
        resblock: "1" or "2"; resblock_kernel_sizes / resblock_dilation_sizes as HiFi-GAN.
        gin_channels: speaker conditioning added after ``conv_pre`` (0: none).
        padding: "sovits" pads transposed convs by (k-u+1)//2 and source convs by (s+1)//2 (4.1
            decoder); "openvpi" uses (k-u)//2 and s//2 (openvpi vocoder).
        source: phase integration of the sine source, see :class:`SineGen`.

    Shapes: forward(x (B, in, N), f0 (B, N), g (B, gin, 1 or N)) -> (B, 1, N * prod(upsample_rates)).
    """

    def __init__(self, in_channels: int, sampling_rate: int, upsample_rates: Sequence[int],
                 upsample_kernel_sizes: Sequence[int], upsample_initial_channel: int, resblock: Literal["1", "2"] = "1",
                 resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
                 resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                 gin_channels: int = 0, harmonic_num: int = 8, padding: Literal["sovits", "openvpi"] = "sovits",
                 source: Literal["sample", "frame"] = "sample"):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.upp = int(math.prod(upsample_rates))
        self.context_frames = _receptive_field_frames(upsample_rates, upsample_kernel_sizes, str(resblock),
                                                      resblock_kernel_sizes, resblock_dilation_sizes)
        # Registration order follows upstream so parameter (and optimizer-state) order matches.
        self.m_source = SourceModuleHnNSF(sampling_rate, harmonic_num=harmonic_num, mode=source)
        self.noise_convs = nn.ModuleList()
        self.conv_pre = weight_norm_modules(nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3))
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        sovits = padding == "sovits"
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_cur = upsample_initial_channel // (2 ** (i + 1))
            pad = (k - u + 1) // 2 if sovits else (k - u) // 2
            self.ups.append(weight_norm_modules(nn.ConvTranspose1d(ch, c_cur, k, u, padding=pad)))
            if i + 1 < len(upsample_rates):
                stride = int(math.prod(upsample_rates[i + 1:]))
                spad = (stride + 1) // 2 if sovits else stride // 2
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=stride * 2, stride=stride, padding=spad))
            else:
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=1))
            ch = c_cur
            for k_r, d_r in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, k_r, d_r))
        self.conv_post = weight_norm_modules(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1) if gin_channels else None

    def forward(self, x: torch.Tensor, f0: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(x, self.m_source(f0, self.upp), g)

    def decode(self, x: torch.Tensor, har_source: torch.Tensor, g: torch.Tensor | None = None,
               stages: Sequence[nn.Module | None] | None = None) -> torch.Tensor:
        """The generator given its excitation: x (B, in, N), har_source (B, 1, N*upp) -> (B, 1, N*upp).

        ``stages``: per upsampling stage, a module to run instead of that stage's residual blocks (same input
        and output; ``None`` keeps the blocks). The ONNX export uses it for 2-D forms of the same convolutions."""
        x = self.conv_pre(x)
        if self.cond is not None:
            x = x + self.cond(g)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE))
            x = x + self.noise_convs[i](har_source)
            stage = stages[i] if stages is not None else None
            x = stage(x) if stage is not None else mean_of_blocks(self.stage_blocks(i), x)
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as upstream
        return torch.tanh(x)

    def stage_blocks(self, i: int) -> nn.ModuleList:
        """The residual blocks of upsampling stage ``i`` (their outputs are averaged)."""
        return self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]

    def decode_windowed(self, x: torch.Tensor, har_source: torch.Tensor, g: torch.Tensor | None = None,
                        window: int = 256, context: int | None = None,
                        frames: tuple[int, int] | None = None, decode=None, balanced: bool = False) -> torch.Tensor:
        """:meth:`decode` in fixed-length windows of ``window + 2 * context`` frames; same output.

        Every window is decoded with ``context`` frames of real input on both sides (at least the
        generator's receptive field, :attr:`context_frames`, by default) and only its centre is kept,
        so the result equals :meth:`decode` of the whole sequence up to float rounding. The excitation
        is sliced from ``har_source``, which was computed over the whole sequence, so the sine phase
        runs on across windows. Windows near the ends are shifted inwards so that all have the same
        length: oneDNN builds its convolution kernels once per input shape (about a second for this
        generator on CPU), so one shape for every window of every file avoids that cost after the first
        call, and the working set stays small and flat however long the input is. Sequences shorter
        than one window are decoded whole.

        ``frames=(lo, hi)`` decodes only those frames (with ``context`` frames of input around them),
        returning (B, 1, (hi - lo) * upp): the same samples as the full output's slice, without the
        work for the rest (the converter's padding, for one). ``decode`` replaces :meth:`decode` (same
        arguments and result; the ONNX Runtime backend passes its graph).

        ``balanced=True`` cuts the sequence into ``ceil(n / window)`` windows of equal size instead (at most
        ``window`` frames each) and decodes each with the context that exists (none beyond the ends): no
        window is shifted inwards, so the frames decoded are ``n`` plus the context of the inner joins (a 10 s
        clip of 861 frames at window 256: 957 frames instead of 1152). Their widths change with ``n``, which
        costs PyTorch's oneDNN a kernel build per shape but not ONNX Runtime's dynamic graph, which uses it.
        """
        decode = decode or self.decode
        context = self.context_frames if context is None else int(context)
        if window < 1 or context < 0:
            raise ValueError(f"window must be >= 1 and context >= 0 frames, got {window} and {context}")
        n, upp = x.size(-1), self.upp
        per_frame_g = g is not None and g.size(-1) > 1
        if frames is not None:
            lo, hi = int(frames[0]), int(frames[1])
            if not 0 <= lo < hi <= n:
                raise ValueError(f"frames must satisfy 0 <= lo < hi <= {n}, got {frames}")
            a, b = max(0, lo - context), min(n, hi + context)
            y = self.decode_windowed(x[..., a:b], har_source[..., a * upp:b * upp], g[..., a:b] if per_frame_g else g,
                                     window, context, decode=decode, balanced=balanced)
            return y[..., (lo - a) * upp:(hi - a) * upp]
        span = window + 2 * context
        if n <= span:
            return decode(x, har_source, g)
        pieces = []
        if balanced:
            size = -(-n // -(-n // window))  # ceil(n / ceil(n / window))
            for start in range(0, n, size):
                end = min(n, start + size)
                lo, hi = max(0, start - context), min(n, end + context)
                gw = g[..., lo:hi] if per_frame_g else g
                y = decode(x[..., lo:hi], har_source[..., lo * upp:hi * upp], gw)
                pieces.append(y[..., (start - lo) * upp:(end - lo) * upp])
            return torch.cat(pieces, dim=-1)
        for start in range(0, n, window):
            end = min(n, start + window)
            lo = min(max(0, start - context), n - span)
            gw = g[..., lo:lo + span] if per_frame_g else g
            y = decode(x[..., lo:lo + span], har_source[..., lo * upp:(lo + span) * upp], gw)
            pieces.append(y[..., (start - lo) * upp:(end - lo) * upp])
        return torch.cat(pieces, dim=-1)

    def remove_weight_norm(self) -> None:
        for layer in (self.conv_pre, *self.ups, self.conv_post):
            remove_weight_norm_modules(layer)
        for block in self.resblocks:
            block.remove_weight_norm()


def _receptive_field_frames(upsample_rates: Sequence[int], upsample_kernel_sizes: Sequence[int], resblock: str,
                            resblock_kernel_sizes: Sequence[int],
                            resblock_dilation_sizes: Sequence[Sequence[int]]) -> int:
    """Input frames on each side that one output sample of :class:`NSFHiFiGAN` can depend on (rounded
    up, plus one frame of margin): the reaches of its convolutions, each divided by the samples per
    frame of the rate it runs at, added along the chain."""
    reach = 3.0  # conv_pre, kernel 7
    rate = 1
    for u, k in zip(upsample_rates, upsample_kernel_sizes):
        reach += math.ceil((k - 1) / u) / rate  # transposed conv: input samples, whatever its padding
        rate *= u
        reach += 2.0 / rate  # noise conv on the excitation: kernel 2*stride, stride = samples per stage sample
        per_block = []
        for k_r, dils in zip(resblock_kernel_sizes, resblock_dilation_sizes):
            half = (k_r - 1) // 2
            per_block.append(sum(half * d + (half if resblock == "1" else 0) for d in dils))
        reach += max(per_block) / rate
    reach += 3.0 / rate  # conv_post, kernel 7
    return math.ceil(reach) + 1

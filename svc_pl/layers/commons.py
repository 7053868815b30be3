"""Tensor helpers shared by the layers (upstream: ``modules/commons.py``).

Shapes use B = batch, C = channels, T = frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(m: nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """Normal init of conv weights; for a depthwise-separable conv, of both of its convs."""
    from svc_pl.layers.conv import DepthwiseSeparableConv1d, DepthwiseSeparableConvTranspose1d

    if isinstance(m, DepthwiseSeparableConv1d | DepthwiseSeparableConvTranspose1d):
        m.depth_conv.weight.data.normal_(mean, std)
        m.point_conv.weight.data.normal_(mean, std)
    elif "Conv" in type(m).__name__:
        m.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel with dilation."""
    return int((kernel_size * dilation - dilation) / 2)


def convert_pad_shape(pad_shape: Sequence[Sequence[int]]) -> list[int]:
    """[[before, after] per dim, first dim first] -> the flat, last-dim-first list ``F.pad`` takes."""
    return [item for sublist in reversed(pad_shape) for item in sublist]


def intersperse(lst: list, item) -> list:
    """[a, b] -> [item, a, item, b, item]."""
    result = [item] * (len(lst) * 2 + 1)
    result[1::2] = lst
    return result


def kl_divergence(m_p: torch.Tensor, logs_p: torch.Tensor, m_q: torch.Tensor, logs_q: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(P || Q) of two diagonal Gaussians given means and log-stds."""
    kl = (logs_q - logs_p) - 0.5
    kl = kl + 0.5 * (torch.exp(2.0 * logs_p) + (m_p - m_q) ** 2) * torch.exp(-2.0 * logs_q)
    return kl


def rand_gumbel(shape: Sequence[int] | torch.Size) -> torch.Tensor:
    """Gumbel(0, 1) samples, uniform draws kept away from 0 and 1 so the logs stay finite."""
    uniform_samples = torch.rand(shape) * 0.99998 + 0.00001
    return -torch.log(-torch.log(uniform_samples))


def rand_gumbel_like(x: torch.Tensor) -> torch.Tensor:
    return rand_gumbel(x.size()).to(dtype=x.dtype, device=x.device)


def slice_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """Cut ``segment_size`` frames starting at ``ids_str[b]`` from each item. (B, C, T) -> (B, C, S)."""
    idx = ids_str.to(x.device).long().view(-1, 1) + torch.arange(segment_size, device=x.device).view(1, -1)
    idx = idx.unsqueeze(1).expand(-1, x.size(1), -1)
    return torch.gather(x, 2, idx)


def slice_pitch_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """The same for a channel-less signal. (B, T) -> (B, S)."""
    return slice_segments(x.unsqueeze(1), ids_str, segment_size).squeeze(1)


def _random_starts(x: torch.Tensor, x_lengths, segment_size: int, inclusive: bool) -> torch.Tensor:
    b, _, t = x.size()
    if x_lengths is None:
        x_lengths = t
    ids_str_max = x_lengths - segment_size + (1 if inclusive else 0)
    return (torch.rand([b]).to(device=x.device) * ids_str_max).to(dtype=torch.long)


def rand_slice_segments(x: torch.Tensor, x_lengths=None, segment_size: int = 4):
    """Random ``segment_size``-frame window of each item: returns (segments (B, C, S), starts (B,))."""
    ids_str = _random_starts(x, x_lengths, segment_size, inclusive=True)
    return slice_segments(x, ids_str, segment_size), ids_str


def rand_slice_segments_with_pitch(x: torch.Tensor, pitch: torch.Tensor, x_lengths=None, segment_size: int = 4):
    """One random window cut at the same frames from ``x`` (B, C, T) and ``pitch`` (B, T).

    Returns:
        (x segments (B, C, S), pitch segments (B, S), starts (B,)).
    """
    ids_str = _random_starts(x, x_lengths, segment_size, inclusive=True)
    return slice_segments(x, ids_str, segment_size), slice_pitch_segments(pitch, ids_str, segment_size), ids_str


def rand_spec_segments(x: torch.Tensor, x_lengths=None, segment_size: int = 4):
    """Like :func:`rand_slice_segments` but the window never touches the last frame (upstream)."""
    ids_str = _random_starts(x, x_lengths, segment_size, inclusive=False)
    return slice_segments(x, ids_str, segment_size), ids_str


def get_timing_signal_1d(length: int, channels: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4):
    """Sinusoidal position signal (1, channels, length)."""
    position = torch.arange(length, dtype=torch.float)
    num_timescales = channels // 2
    log_timescale_increment = math.log(float(max_timescale) / float(min_timescale)) / (num_timescales - 1)
    inv_timescales = min_timescale * torch.exp(torch.arange(num_timescales, dtype=torch.float) * -log_timescale_increment)
    scaled_time = position.unsqueeze(0) * inv_timescales.unsqueeze(1)
    signal = torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], 0)
    signal = F.pad(signal, [0, 0, 0, channels % 2])
    return signal.view(1, channels, length)


def add_timing_signal_1d(x: torch.Tensor, min_timescale: float = 1.0, max_timescale: float = 1.0e4) -> torch.Tensor:
    _, channels, length = x.size()
    signal = get_timing_signal_1d(length, channels, min_timescale, max_timescale)
    return x + signal.to(dtype=x.dtype, device=x.device)


def cat_timing_signal_1d(x: torch.Tensor, min_timescale: float = 1.0, max_timescale: float = 1.0e4, axis: int = 1):
    _, channels, length = x.size()
    signal = get_timing_signal_1d(length, channels, min_timescale, max_timescale)
    return torch.cat([x, signal.to(dtype=x.dtype, device=x.device).expand(x.size(0), -1, -1)], axis)


def subsequent_mask(length: int) -> torch.Tensor:
    """Causal mask (1, 1, T, T): ones on and below the diagonal."""
    return torch.tril(torch.ones(length, length)).unsqueeze(0).unsqueeze(0)


def fused_add_tanh_sigmoid_multiply(input_a: torch.Tensor, input_b: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet gate: tanh(first half of a + b) * sigmoid(second half). (B, 2C, T) -> (B, C, T)."""
    in_act = input_a + input_b
    return torch.tanh(in_act[:, :n_channels]) * torch.sigmoid(in_act[:, n_channels:])


def shift_1d(x: torch.Tensor) -> torch.Tensor:
    """Shift right by one frame along T, zero-filling the first frame."""
    return F.pad(x, convert_pad_shape([[0, 0], [0, 0], [1, 0]]))[:, :, :-1]


def sequence_mask(length: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) boolean mask."""
    if max_length is None:
        max_length = int(length.max())
    x = torch.arange(max_length, dtype=length.dtype, device=length.device)
    return x.unsqueeze(0) < length.unsqueeze(1)


def generate_path(duration: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment from durations.

    Args:
        duration: (B, 1, T_x) frames per input token.
        mask: (B, 1, T_y, T_x).
    Returns:
        (B, 1, T_y, T_x) path with a one where output frame y belongs to token x.
    """
    b, _, t_y, t_x = mask.shape
    cum_duration = torch.cumsum(duration, -1)
    path = sequence_mask(cum_duration.view(b * t_x), t_y).to(mask.dtype).view(b, t_x, t_y)
    path = path - F.pad(path, convert_pad_shape([[0, 0], [1, 0], [0, 0]]))[:, :-1]
    return path.unsqueeze(1).transpose(2, 3) * mask


def clip_grad_value_(parameters: torch.Tensor | Iterable[torch.Tensor], clip_value: float | None, norm_type: float = 2):
    """Clamp every gradient to +-clip_value (if given) and return the total gradient norm before clamping."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return 0.0
    total_norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().float(), norm_type) for g in grads]), norm_type
    ).item()
    if clip_value is not None:
        for g in grads:
            g.clamp_(min=-float(clip_value), max=float(clip_value))
    return total_norm

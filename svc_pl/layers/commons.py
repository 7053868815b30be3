"""Tensor helpers shared by the layers: weight init, padding, masks, segment slicing and the WaveNet gate.

Shapes use B = batch, C = channels, T = frames.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import nn

# Per-row random generators of a batched, seeded inference (see rows_seeded); None outside one.
_ROW_GENERATORS: contextvars.ContextVar[_RowGenerators | None] = contextvars.ContextVar(
    "svc_pl_row_generators", default=None)


@contextlib.contextmanager
def rows_seeded(seed: int, batch: int) -> Iterator[None]:
    """Inside the block, :func:`randn_rows` / :func:`rand_rows` of a ``batch``-row tensor give row i the numbers
    that a one-row run after ``torch.manual_seed(seed)`` draws on that device (CPU or CUDA): a clip converts to
    the same audio whatever else shares its batch. Draws of other sizes, or on other devices, come from the
    global random state as usual."""
    token = _ROW_GENERATORS.set(_RowGenerators(seed, batch))
    try:
        yield
    finally:
        _ROW_GENERATORS.reset(token)


class _RowGenerators:
    """One generator per row and device, each seeded as ``torch.manual_seed(seed)`` seeds that device."""

    def __init__(self, seed: int, batch: int) -> None:
        self.seed, self.batch = seed, batch
        self._by_device: dict[torch.device, list[torch.Generator]] = {}

    def get(self, device: torch.device) -> list[torch.Generator] | None:
        if device.type not in ("cpu", "cuda"):
            return None
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._by_device:
            self._by_device[device] = [torch.Generator(device=device).manual_seed(self.seed)
                                       for _ in range(self.batch)]
        return self._by_device[device]


def _draw(fn, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    rows = _ROW_GENERATORS.get()
    gens = rows.get(device) if rows is not None and rows.batch == shape[0] else None
    if gens is None:
        return fn(shape, device=device, dtype=dtype)
    return torch.cat([fn((1, *shape[1:]), generator=g, device=device, dtype=dtype) for g in gens])


def randn_rows(like: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(like)``, row by row inside :func:`rows_seeded`. (B, ...) -> (B, ...)."""
    return _draw(torch.randn, tuple(like.shape), like.device, like.dtype)


def rand_rows(*shape: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.rand(*shape)`` (uniform [0, 1)), row by row inside :func:`rows_seeded`."""
    return _draw(torch.rand, tuple(shape), torch.device(device), dtype)


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


def slice_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """Cut ``segment_size`` frames starting at ``ids_str[b]`` from each item. (B, C, T) -> (B, C, S)."""
    idx = ids_str.to(x.device).long().view(-1, 1) + torch.arange(segment_size, device=x.device).view(1, -1)
    return torch.gather(x, 2, idx.unsqueeze(1).expand(-1, x.size(1), -1))


def slice_pitch_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """:func:`slice_segments` for (B, T) tracks such as F0."""
    return slice_segments(x.unsqueeze(1), ids_str, segment_size).squeeze(1)


def rand_slice_segments_with_pitch(x: torch.Tensor, pitch: torch.Tensor, x_lengths=None, segment_size: int = 4):
    """A random ``segment_size``-frame window of each item, applied to ``x`` (B, C, T) and ``pitch`` (B, T).

    Returns:
        (segments (B, C, S), pitch segments (B, S), start frames (B,)).
    """
    b, _, t = x.size()
    if x_lengths is None:
        x_lengths = t
    ids_str_max = x_lengths - segment_size + 1
    ids_str = (torch.rand([b]).to(device=x.device) * ids_str_max).to(dtype=torch.long)  # drawn on the CPU generator
    return slice_segments(x, ids_str, segment_size), slice_pitch_segments(pitch, ids_str, segment_size), ids_str


def subsequent_mask(length: int) -> torch.Tensor:
    """Causal mask (1, 1, T, T): ones on and below the diagonal."""
    return torch.tril(torch.ones(length, length)).unsqueeze(0).unsqueeze(0)


def fused_add_tanh_sigmoid_multiply(input_a: torch.Tensor, input_b: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet gate: tanh(first half of a + b) * sigmoid(second half). (B, 2C, T) -> (B, C, T)."""
    in_act = input_a + input_b
    return torch.tanh(in_act[:, :n_channels]) * torch.sigmoid(in_act[:, n_channels:])


def sequence_mask(length: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) boolean mask."""
    if max_length is None:
        max_length = int(length.max())
    x = torch.arange(max_length, dtype=length.dtype, device=length.device)
    return x.unsqueeze(0) < length.unsqueeze(1)

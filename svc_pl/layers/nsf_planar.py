"""The NSF-HiFiGAN generator as ``(1, k)`` 2-D convolutions on channels-last ``(B, C, 1, T)`` tensors: how a CPU
runs it fastest in PyTorch.

PyTorch hands a 1-D convolution to oneDNN as a 2-D one in plain (B, C, 1, T) layout, and oneDNN's fast kernels
want channels last: each call then reorders its input and output. Under bfloat16 those reorders took 45 % of the
4.1 decoder's time and the convolutions themselves less than that. Given channels-last tensors and weights from
the start, every convolution, the transposed ones included, runs in that layout with no reorder, and the
activations and residual sums between them keep it. Measured per 256-frame window of the 4.1 decoder (44.1 kHz,
288 frames with context) on a 2-core Xeon with AMX: bfloat16 0.58 s -> 0.20 s, float32 0.95 s -> 0.66 s; with
AVX-512 hidden (AVX2) float32 1.47 s -> 1.14 s (docs/benchmarks.md). The same numbers as
:meth:`NSFHiFiGAN.decode` to float rounding (float32: about 1e-7).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.layers.fast_init import constant_init
from svc_pl.layers.nsf import LRELU_SLOPE, NSFHiFiGAN, mean_of_blocks

CHANNELS_LAST = torch.channels_last


def conv2d_like(conv: nn.Conv1d) -> nn.Conv2d:
    """The ``(1, k)`` 2-D convolution computing what ``conv`` does, on (B, C, 1, T)."""
    return _with_weights(nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                                   stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                                   dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None),
                         conv)


def conv_transpose2d_like(conv: nn.ConvTranspose1d) -> nn.ConvTranspose2d:
    """The ``(1, k)`` 2-D transposed convolution computing what ``conv`` does, on (B, C, 1, T)."""
    return _with_weights(nn.ConvTranspose2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                                            stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                                            output_padding=(0, conv.output_padding[0]), groups=conv.groups,
                                            dilation=(1, conv.dilation[0]), bias=conv.bias is not None),
                         conv)


def _with_weights(out: nn.Module, conv: nn.Module) -> nn.Module:
    """``out`` (a 2-D layer) given ``conv``'s (1-D) weight, as (.., 1, k), and bias."""
    with torch.no_grad():
        out.weight.copy_(conv.weight.detach().unsqueeze(2))
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out


def planar_block(block: nn.Module) -> nn.Module | None:
    """A copy of a residual block (``convs1``/``convs2`` or ``convs`` lists of ``nn.Conv1d``) whose convolutions
    are their ``(1, k)`` 2-D forms: the block's own forward then runs on (B, C, 1, T). None for blocks with other
    layers (depthwise-separable convolutions)."""
    names = [name for name in ("convs1", "convs2", "convs") if hasattr(block, name)]
    if not names or any(not isinstance(c, nn.Conv1d) for name in names for c in getattr(block, name)):
        return None
    twin = copy.copy(block)  # the block's forward, with its own conv lists
    twin._modules = dict(block._modules)
    for name in names:
        twin._modules[name] = nn.ModuleList([conv2d_like(c) for c in getattr(block, name)])
    return twin


class PlanarDecoder(nn.Module):
    """A frozen copy of an :class:`~svc_pl.layers.nsf.NSFHiFiGAN` generator (its weights at the time of the copy)
    in ``dtype``, channels last. ``forward(x, har_source, g)`` takes and returns what ``NSFHiFiGAN.decode`` does:
    x (B, in, N), har_source (B, 1, N * upp), g (B, gin, 1 or N) -> float32 audio (B, 1, N * upp)."""

    def __init__(self, dec: NSFHiFiGAN, blocks: list[nn.Module], dtype: torch.dtype):
        super().__init__()
        self.conv_pre = conv2d_like(dec.conv_pre)
        self.cond = conv2d_like(dec.cond) if dec.cond is not None else None
        self.ups = nn.ModuleList([conv_transpose2d_like(u) for u in dec.ups])
        self.noise_convs = nn.ModuleList([conv2d_like(c) for c in dec.noise_convs])
        self.resblocks = nn.ModuleList(blocks)
        self.conv_post = conv2d_like(dec.conv_post)
        self.num_kernels, self.num_upsamples = dec.num_kernels, dec.num_upsamples
        self.dtype = dtype
        self.to(dtype).to(memory_format=CHANNELS_LAST).requires_grad_(False).eval()

    @classmethod
    def of(cls, dec: NSFHiFiGAN, dtype: torch.dtype) -> PlanarDecoder | None:
        """The planar copy of ``dec``, or None where it has layers this form does not cover. Draws no random
        numbers (the layers start constant, then take ``dec``'s weights): a seeded conversion that makes the copy
        on its way gets the same excitation as one that does not."""
        with constant_init():
            blocks = [planar_block(b) for b in dec.resblocks]
            return None if any(b is None for b in blocks) else cls(dec, blocks, dtype)

    def _planar(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype).unsqueeze(2).contiguous(memory_format=CHANNELS_LAST)

    def forward(self, x: torch.Tensor, har_source: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        # under autocast the convolutions would cast to its dtype; these weights already are in the one chosen
        with torch.autocast(device_type=x.device.type, enabled=False):
            har = self._planar(har_source)
            x = self.conv_pre(self._planar(x))
            if self.cond is not None:
                x = x + self.cond(self._planar(g))
            for i in range(self.num_upsamples):
                x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE))
                x = x + self.noise_convs[i](har)
                x = mean_of_blocks(self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels], x)
            x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as upstream
            return torch.tanh(x).squeeze(2).float()


def planar_decoder(dec: NSFHiFiGAN, dtype: torch.dtype) -> PlanarDecoder | None:
    """``dec``'s planar copy in ``dtype`` (None where :meth:`PlanarDecoder.of` gives none), kept on ``dec`` and made
    again whenever its parameters have changed since (other tensors, or written in place: a loaded checkpoint, a
    training step). The copy is not a submodule of ``dec``: no state-dict entries, no ``.to()``/``.train()`` visits."""
    params = list(dec.parameters())
    key = (dtype, tuple(id(q) for q in params), tuple(q._version for q in params))
    cached = dec.__dict__.get("_planar")
    if cached is None or cached[0] != key:
        cached = (key, PlanarDecoder.of(dec, dtype))
        dec.__dict__["_planar"] = cached
    return cached[1]

"""Depthwise-separable convolutions and weight-norm helpers (upstream: ``modules/DSConv.py``).

Weight norm uses ``torch.nn.utils.parametrizations.weight_norm``; its state-dict names
(``parametrizations.weight.original0/1``) are mapped to and from the legacy ``weight_g``/``weight_v``
names of so-vits-svc checkpoints by :mod:`svc_pl.compat`.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


class DepthwiseSeparableConv1d(nn.Module):
    """A per-channel (depthwise) conv followed by a 1x1 (pointwise) conv.

    Upstream name: ``Depthwise_Separable_Conv1D``; same sub-module names, so same state-dict keys.
    Shapes: (B, C_in, T) -> (B, C_out, T') as ``nn.Conv1d`` with the same arguments.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        self.depth_conv = nn.Conv1d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                    dilation=dilation, groups=in_channels, bias=bias, padding_mode=padding_mode)
        self.point_conv = nn.Conv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.point_conv(self.depth_conv(x))

    def weight_norm(self) -> None:
        _weight_norm(self.depth_conv)
        _weight_norm(self.point_conv)

    def remove_weight_norm(self) -> None:
        for conv in (self.depth_conv, self.point_conv):
            if parametrize.is_parametrized(conv, "weight"):
                parametrize.remove_parametrizations(conv, "weight")


class DepthwiseSeparableConvTranspose1d(DepthwiseSeparableConv1d):
    """A depthwise transposed conv followed by a 1x1 conv (upstream ``Depthwise_Separable_TransposeConv1D``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, bias: bool = True, dilation: int = 1, padding_mode: str = "zeros"):
        nn.Module.__init__(self)
        self.depth_conv = nn.ConvTranspose1d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                             output_padding=output_padding, groups=in_channels, bias=bias,
                                             dilation=dilation, padding_mode=padding_mode)
        self.point_conv = nn.Conv1d(in_channels, out_channels, 1, bias=bias)


def weight_norm_modules(module: nn.Module, name: str = "weight", dim: int = 0) -> nn.Module:
    """Weight-normalise ``module`` (both convs of a depthwise-separable one). Returns the module."""
    if isinstance(module, DepthwiseSeparableConv1d):
        module.weight_norm()
        return module
    return _weight_norm(module, name, dim)


def remove_weight_norm_modules(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold weight norm back into a plain weight (for inference). A no-op where there is none."""
    if isinstance(module, DepthwiseSeparableConv1d):
        module.remove_weight_norm()
    elif parametrize.is_parametrized(module, name):
        parametrize.remove_parametrizations(module, name)
    return module


def remove_all_weight_norm(root: nn.Module) -> int:
    """Fold every weight-norm parametrization below ``root``; returns how many were folded."""
    count = 0
    for module in list(root.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight")
            count += 1
    return count


def make_conv1d(depthwise: bool, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d`` or :class:`DepthwiseSeparableConv1d` with the same arguments
    (upstream switches a module-level global, ``set_Conv1dModel``, instead)."""
    return DepthwiseSeparableConv1d(*args, **kwargs) if depthwise else nn.Conv1d(*args, **kwargs)

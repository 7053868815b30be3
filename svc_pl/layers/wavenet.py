"""Non-causal WaveNet stack with optional global conditioning (upstream: ``modules.WN``)."""

from __future__ import annotations

import torch
from torch import nn

from svc_pl.layers.commons import fused_add_tanh_sigmoid_multiply
from svc_pl.layers.conv import make_conv1d, remove_weight_norm_modules, weight_norm_modules


class WN(nn.Module):
    """Gated dilated convolutions with residual and skip outputs.

    Args:
        hidden_channels: channels C of input and output.
        kernel_size: odd kernel size.
        dilation_rate: dilation of layer i is ``dilation_rate ** i``.
        n_layers: layers.
        gin_channels: speaker-embedding channels (0: unconditioned).
        p_dropout: dropout on the gated activations.
        depthwise: depthwise-separable dilated convs (upstream ``use_depthwise_conv``).
    """

    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int = 0,
                 p_dropout: float = 0.0, depthwise: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            self.cond_layer = weight_norm_modules(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = int((kernel_size * dilation - dilation) / 2)
            in_layer = make_conv1d(depthwise, hidden_channels, 2 * hidden_channels, kernel_size, dilation=dilation,
                                   padding=padding)
            self.in_layers.append(weight_norm_modules(in_layer))
            res_skip_channels = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm_modules(nn.Conv1d(hidden_channels, res_skip_channels, 1)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T), mask (B, 1, T), g (B, gin, 1) or None -> (B, C, T) sum of skip outputs."""
        output = torch.zeros_like(x)
        if g is not None:
            g = self.cond_layer(g)
        c = self.hidden_channels
        for i in range(self.n_layers):
            x_in = self.in_layers[i](x)
            g_l = g[:, i * 2 * c:(i + 1) * 2 * c] if g is not None else torch.zeros_like(x_in)
            acts = self.drop(fused_add_tanh_sigmoid_multiply(x_in, g_l, c))
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :c]) * x_mask
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return output * x_mask

    def remove_weight_norm(self) -> None:
        if self.gin_channels:
            remove_weight_norm_modules(self.cond_layer)
        for layer in (*self.in_layers, *self.res_skip_layers):
            remove_weight_norm_modules(layer)

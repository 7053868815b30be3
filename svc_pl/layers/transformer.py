"""Transformer stacks: the relative-position ``Encoder`` of the prior encoder and the ``CausalTransformer`` of the
F0 decoder and transformer flows (upstream ``attentions.Encoder``/``FFT``). Both take and return (B, C, T) with a
(B, 1, T) mask."""

from __future__ import annotations

import torch
from torch import nn

from svc_pl.layers.attention import FFN, MultiHeadAttention
from svc_pl.layers.commons import fused_add_tanh_sigmoid_multiply, subsequent_mask
from svc_pl.layers.conv import weight_norm_modules
from svc_pl.layers.norm import ChannelLayerNorm


class Encoder(nn.Module):
    """Self-attention with relative positions (+-``window_size``), post-norm, conv FFN. Upstream ``attentions.Encoder``."""

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int = 1,
                 p_dropout: float = 0.0, window_size: int = 4):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(
                MultiHeadAttention(hidden_channels, hidden_channels, n_heads, p_dropout=p_dropout, window_size=window_size)
            )
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout=p_dropout))
            self.norm_layers_2.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = norm1(x + self.drop(attn(x, x, attn_mask)))
            x = norm2(x + self.drop(ffn(x, x_mask)))
        return x * x_mask


class CausalTransformer(nn.Module):
    """Causal self-attention transformer (no relative positions; upstream's "FFT" block) used by the F0 decoder
    and, with ``gin_channels`` > 0 (upstream ``isflow=True``), as the speaker-conditioned net of transformer flows.

    forward(x (B, hidden, T), mask (B, 1, T), g (B, gin, 1) or None) -> (B, hidden, T).
    """

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int = 1,
                 kernel_size: int = 1, p_dropout: float = 0.0, proximal_bias: bool = False,
                 proximal_init: bool = True, gin_channels: int = 0):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        if gin_channels:
            self.cond_pre = nn.Conv1d(hidden_channels, 2 * hidden_channels, 1)
            self.cond_layer = weight_norm_modules(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        self.drop = nn.Dropout(p_dropout)
        self.self_attn_layers = nn.ModuleList()
        self.norm_layers_0 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        for _ in range(n_layers):
            self.self_attn_layers.append(MultiHeadAttention(hidden_channels, hidden_channels, n_heads, p_dropout=p_dropout,
                                                            proximal_bias=proximal_bias, proximal_init=proximal_init))
            self.norm_layers_0.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(
                FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout=p_dropout, causal=True)
            )
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T), mask (B, 1, T), optional speaker g (B, gin, 1) when built with ``gin_channels``."""
        if g is not None:
            g = self.cond_layer(g)
        self_attn_mask = subsequent_mask(x_mask.size(2)).to(device=x.device, dtype=x.dtype)
        x = x * x_mask
        for i in range(self.n_layers):
            if g is not None:
                x = self.cond_pre(x)
                offset = i * 2 * self.hidden_channels
                x = fused_add_tanh_sigmoid_multiply(x, g[:, offset:offset + 2 * self.hidden_channels], self.hidden_channels)
            x = self.norm_layers_0[i](x + self.drop(self.self_attn_layers[i](x, x, self_attn_mask)))
            x = self.norm_layers_1[i](x + self.drop(self.ffn_layers[i](x, x_mask)))
        return x * x_mask

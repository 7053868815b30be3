"""Multi-head attention with relative-position windows, and the conv feed-forward block
(upstream: ``modules/attentions.py::MultiHeadAttention`` and ``FFN``)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over (B, C, T) sequences.

    Args:
        channels: input channels C (split over ``n_heads``).
        out_channels: output channels.
        n_heads: heads.
        p_dropout: dropout on the attention weights.
        window_size: if set, learned relative-position embeddings for keys and values within
            +-window_size frames (self-attention only).
        heads_share: one set of relative embeddings for all heads.
        block_length: if set, attention is limited to a band of +-block_length frames.
        proximal_bias: add -log(1 + |i - j|) to the scores (self-attention only).
        proximal_init: start the key projection equal to the query projection.
    """

    def __init__(self, channels: int, out_channels: int, n_heads: int, p_dropout: float = 0.0,
                 window_size: int | None = None, heads_share: bool = True, block_length: int | None = None,
                 proximal_bias: bool = False, proximal_init: bool = False):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.channels = channels
        self.out_channels = out_channels
        self.n_heads = n_heads
        self.window_size = window_size
        self.block_length = block_length
        self.proximal_bias = proximal_bias
        self.k_channels = channels // n_heads
        self.attn: torch.Tensor | None = None  # last attention weights, for inspection

        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            n_heads_rel = 1 if heads_share else n_heads
            rel_stddev = self.k_channels**-0.5
            self.emb_rel_k = nn.Parameter(torch.randn(n_heads_rel, window_size * 2 + 1, self.k_channels) * rel_stddev)
            self.emb_rel_v = nn.Parameter(torch.randn(n_heads_rel, window_size * 2 + 1, self.k_channels) * rel_stddev)
        nn.init.xavier_uniform_(self.conv_q.weight)
        nn.init.xavier_uniform_(self.conv_k.weight)
        nn.init.xavier_uniform_(self.conv_v.weight)
        if proximal_init:
            with torch.no_grad():
                self.conv_k.weight.copy_(self.conv_q.weight)
                self.conv_k.bias.copy_(self.conv_q.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``x`` (B, C, T_t) to ``c`` (B, C, T_s); mask (B or 1, 1, T_t, T_s). Returns (B, C_out, T_t)."""
        q, k, v = self.conv_q(x), self.conv_k(c), self.conv_v(c)
        out, self.attn = self.attention(q, k, v, mask=attn_mask)
        return self.conv_o(out)

    def attention(self, query, key, value, mask=None):
        b, d, t_s = key.size()
        t_t = query.size(2)
        # [b, d, t] -> [b, heads, t, d_k]
        query = query.view(b, self.n_heads, self.k_channels, t_t).transpose(2, 3)
        key = key.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        value = value.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        query = query / math.sqrt(self.k_channels)

        scores = torch.matmul(query, key.transpose(-2, -1))
        if self.window_size is not None:
            if t_s != t_t:
                raise ValueError("relative attention is only available for self-attention")
            rel_k = self._get_relative_embeddings(self.emb_rel_k, t_s)
            rel_logits = torch.matmul(query, rel_k.unsqueeze(0).transpose(-2, -1))
            scores = scores + self._relative_position_to_absolute_position(rel_logits)
        if self.proximal_bias:
            if t_s != t_t:
                raise ValueError("proximal bias is only available for self-attention")
            scores = scores + self._attention_bias_proximal(t_s).to(device=scores.device, dtype=scores.dtype)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e4)
            if self.block_length is not None:
                if t_s != t_t:
                    raise ValueError("local attention is only available for self-attention")
                block_mask = torch.ones_like(scores).triu(-self.block_length).tril(self.block_length)
                scores = scores.masked_fill(block_mask == 0, -1e4)
        p_attn = self.drop(F.softmax(scores, dim=-1))  # [b, h, t_t, t_s]
        output = torch.matmul(p_attn, value)
        if self.window_size is not None:
            relative_weights = self._absolute_position_to_relative_position(p_attn)
            rel_v = self._get_relative_embeddings(self.emb_rel_v, t_s)
            output = output + torch.matmul(relative_weights, rel_v.unsqueeze(0))
        output = output.transpose(2, 3).contiguous().view(b, d, t_t)
        return output, p_attn

    def _get_relative_embeddings(self, relative_embeddings: torch.Tensor, length: int) -> torch.Tensor:
        """(H, 2W+1, D) table -> (H, 2L-1, D) embeddings for offsets -(L-1)..(L-1), zero outside the window."""
        pad_length = max(length - (self.window_size + 1), 0)
        slice_start = max((self.window_size + 1) - length, 0)
        slice_end = slice_start + 2 * length - 1
        if pad_length > 0:
            relative_embeddings = F.pad(relative_embeddings, [0, 0, pad_length, pad_length])
        return relative_embeddings[:, slice_start:slice_end]

    @staticmethod
    def _relative_position_to_absolute_position(x: torch.Tensor) -> torch.Tensor:
        """(B, H, L, 2L-1) relative logits -> (B, H, L, L) absolute, by the pad-and-reshape trick."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, [0, 1])
        x_flat = F.pad(x.view(batch, heads, length * 2 * length), [0, length - 1])
        return x_flat.view(batch, heads, length + 1, 2 * length - 1)[:, :, :length, length - 1:]

    @staticmethod
    def _absolute_position_to_relative_position(x: torch.Tensor) -> torch.Tensor:
        """(B, H, L, L) -> (B, H, L, 2L-1), the inverse skew."""
        batch, heads, length, _ = x.size()
        x = F.pad(x, [0, length - 1])
        x_flat = F.pad(x.view(batch, heads, length**2 + length * (length - 1)), [length, 0])
        return x_flat.view(batch, heads, length, 2 * length)[:, :, :, 1:]

    @staticmethod
    def _attention_bias_proximal(length: int) -> torch.Tensor:
        """(1, 1, L, L) bias -log(1 + |i - j|) that favours nearby positions."""
        r = torch.arange(length, dtype=torch.float32)
        diff = r.unsqueeze(0) - r.unsqueeze(1)
        return (-torch.log1p(diff.abs())).unsqueeze(0).unsqueeze(0)


class FFN(nn.Module):
    """Two convolutions with an activation between, masked (upstream ``FFN``).

    ``causal`` pads only on the left; ``activation="gelu"`` uses the sigmoid approximation x*sigmoid(1.702x).
    Shapes: (B, C_in, T), mask (B, 1, T) -> (B, C_out, T).
    """

    def __init__(self, in_channels: int, out_channels: int, filter_channels: int, kernel_size: int,
                 p_dropout: float = 0.0, activation: Literal["relu", "gelu"] | None = None, causal: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.activation = activation
        self.causal = causal
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1:
            return x
        if self.causal:
            return F.pad(x, [self.kernel_size - 1, 0])
        return F.pad(x, [(self.kernel_size - 1) // 2, self.kernel_size // 2])

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = self.conv_1(self._pad(x * x_mask))
        x = x * torch.sigmoid(1.702 * x) if self.activation == "gelu" else torch.relu(x)
        x = self.conv_2(self._pad(self.drop(x) * x_mask))
        return x * x_mask

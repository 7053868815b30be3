"""Normalising flow: affine coupling layers over a WaveNet or a transformer, with channel flips
(upstream: ``modules.ResidualCouplingLayer``/``TransformerCouplingLayer``/``Flip`` and
``models.ResidualCouplingBlock``/``TransformerCouplingBlock``).

Every layer maps (B, C, T) -> (B, C, T) under a (B, 1, T) mask, conditioned on a speaker
embedding g (B, gin, 1 or T). ``forward(..., reverse=False)`` returns (y, logdet (B,)); with
``reverse=True`` it returns x only.
"""

from __future__ import annotations

import torch
from torch import nn

from svc_pl.layers.transformer import CausalTransformer
from svc_pl.layers.wavenet import WN


class Flip(nn.Module):
    """Reverse the channel order (a volume-preserving permutation)."""

    def forward(self, x: torch.Tensor, *args, reverse: bool = False, **kwargs):
        x = torch.flip(x, [1])
        if reverse:
            return x
        return x, torch.zeros(x.size(0), dtype=x.dtype, device=x.device)


class _CouplingLayer(nn.Module):
    """Half the channels predict a shift (and log-scale unless ``mean_only``) for the other half."""

    def __init__(self, channels: int, hidden_channels: int, net: nn.Module, mean_only: bool):
        if channels % 2:
            raise ValueError(f"coupling channels must be even, got {channels}")
        super().__init__()
        self.half_channels = channels // 2
        self.mean_only = mean_only
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = net
        self.post = nn.Conv1d(hidden_channels, self.half_channels * (2 - mean_only), 1)
        self.post.weight.data.zero_()
        self.post.bias.data.zero_()

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False):
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        stats = self.post(h) * x_mask
        if self.mean_only:
            m, logs = stats, None
        else:
            m, logs = torch.split(stats, [self.half_channels] * 2, 1)
        if not reverse:
            x1 = m + x1 * (torch.exp(logs) * x_mask if logs is not None else x_mask)
            logdet = torch.sum(logs, [1, 2]) if logs is not None else torch.zeros(x.size(0), dtype=x.dtype, device=x.device)
            return torch.cat([x0, x1], 1), logdet
        x1 = (x1 - m) * (torch.exp(-logs) * x_mask if logs is not None else x_mask)
        return torch.cat([x0, x1], 1)


class ResidualCouplingLayer(_CouplingLayer):
    """Coupling over a :class:`WN`; pass ``shared_net`` to use one WN for all layers of a block."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 p_dropout: float = 0.0, gin_channels: int = 0, mean_only: bool = False, depthwise: bool = False,
                 shared_net: WN | None = None):
        net = shared_net or WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels,
                               p_dropout=p_dropout, depthwise=depthwise)
        super().__init__(channels, hidden_channels, net, mean_only)


class TransformerCouplingLayer(_CouplingLayer):
    """Coupling over a speaker-conditioned causal transformer (:class:`CausalTransformer` with ``gin_channels``)."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, n_layers: int, n_heads: int,
                 p_dropout: float = 0.0, filter_channels: int = 0, mean_only: bool = False, gin_channels: int = 0,
                 shared_net: CausalTransformer | None = None):
        net = shared_net or CausalTransformer(hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                                              p_dropout, gin_channels=gin_channels)
        super().__init__(channels, hidden_channels, net, mean_only)


class _CouplingBlock(nn.Module):
    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False):
        """Forward: x -> z_p (logdets dropped, as upstream). Reverse: z_p -> x."""
        if not reverse:
            for flow in self.flows:
                x, _ = flow(x, x_mask, g=g, reverse=False)
        else:
            for flow in reversed(self.flows):
                x = flow(x, x_mask, g=g, reverse=True)
        return x


class ResidualCouplingBlock(_CouplingBlock):
    """``n_flows`` mean-only WaveNet coupling layers, each followed by a :class:`Flip`.

    With ``share_parameter`` one WN (``self.wn``) serves every layer (upstream ``flow_share_parameter``).
    """

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 n_flows: int = 4, gin_channels: int = 0, share_parameter: bool = False, depthwise: bool = False):
        super().__init__()
        self.wn = (WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels, depthwise=depthwise)
                   if share_parameter else None)
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(ResidualCouplingLayer(channels, hidden_channels, kernel_size, dilation_rate, n_layers,
                                                    gin_channels=gin_channels, mean_only=True, depthwise=depthwise,
                                                    shared_net=self.wn))
            self.flows.append(Flip())


class TransformerCouplingBlock(_CouplingBlock):
    """``n_flows`` mean-only transformer coupling layers with flips (upstream ``use_transformer_flow``)."""

    def __init__(self, channels: int, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int, p_dropout: float, n_flows: int = 4, gin_channels: int = 0,
                 share_parameter: bool = False):
        super().__init__()
        self.wn = (CausalTransformer(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout,
                                     gin_channels=gin_channels) if share_parameter else None)
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(TransformerCouplingLayer(channels, hidden_channels, kernel_size, n_layers, n_heads, p_dropout,
                                                       filter_channels, mean_only=True, gin_channels=gin_channels,
                                                       shared_net=self.wn))
            self.flows.append(Flip())

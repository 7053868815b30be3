"""The content-unit side of live conversion, and the sliding buffer both sides of it keep their values in.

:class:`LiveUnits` turns the stream's 16 kHz audio into mixed content units per model frame for
:class:`~svc_pl.infer.stream.StreamConverter`: models trained on windowed units get
:class:`~svc_pl.data.unit_window.StreamingUnits` (the units offline conversion gives; frames past the newest final
chunk get the pending chunk's provisional units), other models one encoder call per block on a left context window
(so-vits-svc models were not trained for that: their units differ from the offline ones at the newest frames). Unit
matching (``match_units``) and cluster / retrieval mixing run on new frames only; final frames are cached.
:class:`Track` is the growing array with an absolute start index that both keep their values in.
"""

from __future__ import annotations

import numpy as np
import torch

from svc_pl.data.unit_window import HOP16, StreamingUnits, UnitWindow
from svc_pl.infer.converter import Converter, ConvertOptions


class Track:
    """A growing array along its last axis with an absolute start index; reads outside are zeros or held."""

    def __init__(self, shape: tuple[int, ...] = (), dtype=np.float32):
        self.data = np.zeros(shape + (0,), dtype)
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self.data.shape[-1]

    def append(self, x: np.ndarray) -> None:
        self.data = np.concatenate([self.data, np.asarray(x, self.data.dtype)], axis=-1)

    def put(self, a: int, x: np.ndarray) -> None:
        """Write ``x`` from index ``a`` (``start <= a <= end``), growing the array as needed."""
        n = x.shape[-1]
        if a + n > self.end:
            pad = np.zeros(self.data.shape[:-1] + (a + n - self.end,), self.data.dtype)
            self.data = np.concatenate([self.data, pad], axis=-1)
        self.data[..., a - self.start:a + n - self.start] = x

    def get(self, a: int, b: int, hold: bool = False) -> np.ndarray:
        """Indices ``[a, b)``; before ``start`` zeros, after ``end`` zeros or (``hold``) the last value."""
        out = np.zeros(self.data.shape[:-1] + (max(0, b - a),), self.data.dtype)
        lo, hi = max(a, self.start), min(b, self.end)
        if hi > lo:
            out[..., lo - a:hi - a] = self.data[..., lo - self.start:hi - self.start]
        if hold and b > self.end and self.data.shape[-1]:
            out[..., max(0, self.end - a):] = self.data[..., -1:]
        return out

    def trim(self, before: int) -> None:
        if before > self.start:
            cut = min(before, self.end) - self.start
            self.data = self.data[..., cut:]
            self.start += cut


class LiveUnits:
    """Content units of a live stream per model frame.

    Args:
        converter: the stream's :class:`Converter` (its encoder, unit matcher, cluster model and feature index).
        window: the model's unit window (units as trained), or None (a left context window of ``context16`` 16 kHz
            samples encoded per block).
        sampling_rate, hop: the model's rate and frame hop.
        context16: the left context window, 16 kHz samples.
        device: where the encoder runs.
    """

    def __init__(self, converter: Converter, window: UnitWindow | None, *, sampling_rate: int, hop: int,
                 context16: int, device: torch.device):
        self.converter, self.window = converter, window
        self.sr, self.hop, self.ctx16, self.device = sampling_rate, hop, context16, device
        self.units_per_frame = hop * 16000 / (sampling_rate * HOP16)  # unit frames (20 ms) per model frame
        self._encoder = converter.encoder.encoder if window is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._units = StreamingUnits(self._encoder, self.window) if self.window is not None else None
        dim = int(self.converter.encoder.dim)
        self._y16 = Track()
        self._u16 = Track((dim,))  # windowed units, 20 ms frames
        self._c = Track((dim,))  # final mixed units per model frame
        self._provisional: tuple | None = None  # ((u16 end, pending samples), the next chunk's provisional units)
        self._pending16: list[np.ndarray] = []
        self._observed16 = 0  # 16 kHz unit frames [0, _observed16) are in the input's unit statistics

    def push(self, y16: np.ndarray) -> None:
        """The next 16 kHz input samples."""
        if self._units is not None:
            self._pending16.append(y16)
        self._y16.append(y16)

    def skip(self) -> None:
        """A dropped block: its audio is passed by without running the encoder (placeholder units)."""
        if self._units is not None:
            self._u16.append(self._units.push(np.concatenate(self._pending16), encode=False).numpy())
            self._observed16 = max(self._observed16, self._u16.end)  # placeholders, not the input's units
            self._pending16.clear()

    def trim(self, keep: int) -> None:
        """Drop what frames before model sample ``keep`` need no more."""
        self._y16.trim(int(keep * 16000 / self.sr) - self.ctx16)
        self._c.trim(keep // self.hop)
        self._u16.trim(int(keep // self.hop * self.units_per_frame) - 2)

    def frames(self, a: int, b: int, opts: ConvertOptions) -> np.ndarray:
        """Mixed content units (D, b - a) of model frames ``[a, b)``; final frames are cached."""
        conv, r = self.converter, self.units_per_frame
        if self._units is None:  # a left-context window per block, encoded whole
            e16 = self._y16.end
            w0 = max(0, e16 - self.ctx16)
            x = torch.from_numpy(self._y16.get(w0, e16)).unsqueeze(0).to(self.device)
            with torch.inference_mode(), conv._autocast(opts):
                u = conv.encoder(x).float()[0].cpu().numpy()  # (D, frames from w0)
            self._observe(u, w0 // 320, opts)
            t16 = np.arange(a, b) * self.hop * 16000 / self.sr
            j = np.clip(np.floor((t16 - w0) / 320).astype(int), 0, u.shape[-1] - 1)
            return self._mix(u[:, j], opts)
        if self._pending16:
            self._u16.append(self._units.push(np.concatenate(self._pending16)).numpy())
            self._pending16.clear()
            self._observe(self._u16.data, self._u16.start, opts)
        first = max(a, self._c.end)
        parts = [self._c.get(a, first)]
        if first < b:
            j = np.floor(np.arange(first, b) * r + 1e-9).astype(int)
            mixed = self._mix(self._u16_frames(j), opts)
            final = int(np.sum(j < self._u16.end))
            if final:
                self._c.put(first, mixed[:, :final])
            parts.append(mixed)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _u16_frames(self, j: np.ndarray) -> np.ndarray:
        """Windowed units (D, len(j)) at unit frames ``j``; past the newest final chunk the next chunk's provisional
        units (:meth:`StreamingUnits.provisional`), their last frame held beyond it."""
        t = self._u16
        if t.data.shape[-1]:
            out = t.data[:, np.clip(j - t.start, 0, t.data.shape[-1] - 1)]
        else:
            out = np.zeros((t.data.shape[0], len(j)), np.float32)
        late = j >= t.end
        if late.any():
            key = (t.end, self._units.pending_samples)
            if self._provisional is None or self._provisional[0] != key:
                self._provisional = (key, self._units.provisional().numpy())
            p = self._provisional[1]
            out[:, late] = p[:, np.clip(j[late] - t.end, 0, p.shape[-1] - 1)]
        return out

    def _observe(self, u: np.ndarray, start: int, opts: ConvertOptions) -> None:
        """Add the unit frames of ``u`` (D, n; 16 kHz unit frame ``start`` first) not yet seen to the input's
        statistics (``match_units``)."""
        if opts.match_units <= 0:
            return
        new = u[:, max(0, self._observed16 - start):]
        if new.shape[-1]:
            self.converter.unit_matcher.observe(torch.from_numpy(np.ascontiguousarray(new)))
            self._observed16 = start + u.shape[-1]

    def _mix(self, c: np.ndarray, opts: ConvertOptions) -> np.ndarray:
        """Unit matching and cluster / retrieval mixing of units (D, T) for the current speaker."""
        conv = self.converter
        if opts.match_units > 0:
            c = conv.unit_matcher.apply(torch.from_numpy(c).float().unsqueeze(0), conv.speakers.target(opts),
                                        opts.match_units)[0].numpy()
        if (conv.cluster is None or opts.cluster_ratio <= 0) and (conv.index is None or opts.retrieval_ratio <= 0):
            return c.astype(np.float32)
        return conv._mix_units(torch.from_numpy(c).float().unsqueeze(0), opts)[0].numpy().astype(np.float32)

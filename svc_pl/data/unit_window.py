"""Content units a live stream can reproduce: each chunk of units encoded from a fixed window of past audio.

so-vits-svc encodes a whole clip at once (Whisper pads every input to 30 s), so a unit depends on audio up
to 30 s in its future. A stream cannot wait for that, and encoding only the recent context gives other
units (cosine about 0.7-0.8 on the newest frames). So svc_pl can *train* on the units a stream sees:

* units are computed ``chunk_frames`` at a time (20 ms frames at 16 kHz);
* the units of chunk ``k`` (frames ``[k*C, (k+1)*C)``) come from one encoder call on exactly
  ``window_frames`` frames of audio that end ``lookahead_frames`` after the chunk, zeros before the start
  and after the end of the recording, with no 30 s padding;
* the chunk's units are the frames of that call's output just before the look-ahead.

Preprocessing, offline conversion and :class:`StreamingUnits` all go through :meth:`UnitWindow.encode_windows`,
so a stream gives the same units as a file (to float rounding) when its blocks are whole chunks.
A dataset records its window in ``dataset.json`` (``unit_window``) and a model keeps it in its checkpoint,
so conversion uses the window the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HOP16 = 320  # 16 kHz samples per unit frame (20 ms)


@dataclass(frozen=True)
class UnitWindow:
    """How windowed units are made, in 20 ms unit frames.

    Attributes:
        window_frames: audio frames each encoder call sees (50 = 1 s).
        chunk_frames: units produced per call (4 = 80 ms; a stream's block is a whole number of chunks).
        lookahead_frames: audio after the chunk that its call sees (2 = 40 ms of added latency).
    """

    window_frames: int = 50
    chunk_frames: int = 4
    lookahead_frames: int = 2

    def __post_init__(self) -> None:
        if self.chunk_frames < 1 or self.lookahead_frames < 0:
            raise ValueError(f"invalid unit window {self}: chunk_frames >= 1 and lookahead_frames >= 0 needed")
        if self.window_frames < self.chunk_frames + self.lookahead_frames:
            raise ValueError(f"invalid unit window {self}: window_frames must cover chunk + look-ahead")

    @property
    def window_seconds(self) -> float:
        return self.window_frames * HOP16 / 16000

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_frames * HOP16 / 16000

    @property
    def lookahead_seconds(self) -> float:
        return self.lookahead_frames * HOP16 / 16000

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> UnitWindow | None:
        """``None``/``{}`` (whole-clip units, as so-vits-svc) -> ``None``."""
        if not d:
            return None
        return cls(int(d["window_frames"]), int(d["chunk_frames"]), int(d["lookahead_frames"]))

    @property
    def spec(self) -> str:
        """``"W,C,L"``: the window as ``--unit-window`` takes it (:meth:`parse` reads it back)."""
        return f"{self.window_frames},{self.chunk_frames},{self.lookahead_frames}"

    @classmethod
    def parse(cls, spec: str) -> UnitWindow | None:
        """``"off"`` -> None; ``"on"`` -> defaults; ``"W,C,L"`` frames -> that window."""
        spec = spec.strip().lower()
        if spec in ("off", "none", "0", ""):
            return None
        if spec in ("on", "default", "stream"):
            return cls()
        try:
            w, c, la = (int(x) for x in spec.split(","))
        except ValueError:
            raise ValueError(f"unit window {spec!r}: expected off, on or WINDOW,CHUNK,LOOKAHEAD frames "
                             "(e.g. 50,4,2)") from None
        return cls(w, c, la)

    # ------------------------------------------------------------------------------------------- encoding
    def encode_windows(self, encoder: nn.Module, windows: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """(K, window_frames * 320) audio windows -> (K, D, chunk_frames) units of their chunks."""
        out = []
        end = self.window_frames - self.lookahead_frames
        for i in range(0, windows.shape[0], batch):
            u = encode_unpadded(encoder, windows[i:i + batch], self.window_frames)
            out.append(u[..., end - self.chunk_frames:end])
        return torch.cat(out, dim=0)

    def windows(self, wav16k: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(T,) 16 kHz audio -> (K, window samples) windows of its K chunks and its T // 320 frames."""
        n = wav16k.shape[-1] // HOP16
        k = max(1, -(-n // self.chunk_frames))
        left = (self.window_frames - self.chunk_frames - self.lookahead_frames) * HOP16
        need = (k - 1) * self.chunk_frames * HOP16 + self.window_frames * HOP16
        padded = F.pad(wav16k, (left, max(0, need - left - wav16k.shape[-1])))
        return padded.unfold(-1, self.window_frames * HOP16, self.chunk_frames * HOP16)[:k], n


def encode_unpadded(encoder: nn.Module, audio: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames * 320) 16 kHz audio -> (B, D, frames) units of exactly that audio (no 30 s padding).

    Whisper encoders run on the window alone; HuBERT-family encoders give one frame fewer or as many, and
    are aligned to ``frames`` by nearest stretching.
    """
    inner = getattr(encoder, "encoder", encoder)  # a WindowedEncoder's own encoder
    if hasattr(inner, "encode_unpadded"):
        return inner.encode_unpadded(audio)
    from svc_pl.data.content import units_to_frames

    u = inner(audio)
    return u if u.shape[-1] == frames else units_to_frames(u, frames, mode="nearest")


class WindowedEncoder(nn.Module):
    """A content encoder whose units are made as a stream makes them (see the module docstring).

    Same interface as the encoder it wraps: ``forward`` (B, T) 16 kHz -> (B, dim, T // 320).
    """

    def __init__(self, encoder: nn.Module, window: UnitWindow):
        super().__init__()
        self.encoder = encoder
        self.window = window
        self.name = getattr(encoder, "name", "encoder")
        self.dim = int(encoder.dim)
        self.sample_rate = 16000
        self.hop = HOP16

    def train(self, mode: bool = True) -> WindowedEncoder:
        return super().train(False)

    def forward(self, wav16k: torch.Tensor) -> torch.Tensor:
        if wav16k.dim() != 2:
            raise ValueError(f"WindowedEncoder expects (B, T) audio at 16 kHz, got {tuple(wav16k.shape)}")
        outs = []
        for row in wav16k:
            w, n = self.window.windows(row)
            u = self.window.encode_windows(self.encoder, w)  # (K, D, C)
            outs.append(u.permute(1, 0, 2).reshape(u.shape[1], -1)[:, :n])
        return torch.stack(outs)

    def extra_repr(self) -> str:
        return f"{self.window}"


class StreamingUnits:
    """Units for audio that arrives in pieces: ``push(x16)`` returns the units of every chunk whose window
    (with its look-ahead) is now complete, as ``(D, k * chunk_frames)``; the same units as
    :class:`WindowedEncoder` gives for the whole recording. Keeps only one window of audio."""

    def __init__(self, encoder: nn.Module, window: UnitWindow):
        self.encoder = encoder
        self.window = window
        w = window
        self._buf = np.zeros((w.window_frames - w.chunk_frames - w.lookahead_frames) * HOP16, np.float32)
        self._dim = int(encoder.dim)

    @property
    def pending_samples(self) -> int:
        """16 kHz samples received but not yet covered by an emitted chunk's look-ahead."""
        w = self.window
        return len(self._buf) - (w.window_frames - w.chunk_frames) * HOP16

    def push(self, x16: np.ndarray, encode: bool = True) -> torch.Tensor:
        """Append 16 kHz audio (T,); returns the units of the chunks now complete, (D, k * chunk_frames).
        With ``encode=False`` the chunks are skipped without running the encoder (zeros are returned): a live
        stream that is behind its deadline drops their audio this way."""
        w = self.window
        self._buf = np.concatenate([self._buf, np.asarray(x16, np.float32)])
        span, step = w.window_frames * HOP16, w.chunk_frames * HOP16
        k = 0 if len(self._buf) < span else (len(self._buf) - span) // step + 1
        if k == 0:
            return torch.zeros(self._dim, 0)
        if not encode:
            self._buf = self._buf[k * step:]
            return torch.zeros(self._dim, k * w.chunk_frames)
        buf = torch.from_numpy(self._buf[: (k - 1) * step + span].copy())
        windows = buf.unfold(0, span, step)[:k]
        with torch.inference_mode():
            u = w.encode_windows(self.encoder, windows).float()
        self._buf = self._buf[k * step:]
        return u.permute(1, 0, 2).reshape(self._dim, -1)

    def provisional(self) -> torch.Tensor:
        """Units of the next chunk (the one ``push`` has not returned yet) from the audio heard so far, its
        unheard part as zeros: what the chunk's units would be if the recording ended now, (D, chunk_frames).
        A stream renders its newest frames with these until the chunk's own units arrive (much nearer them than
        the last final unit held: the prior reads them)."""
        w = self.window
        span = w.window_frames * HOP16
        x = np.zeros(span, np.float32)
        n = min(len(self._buf), span)
        x[:n] = self._buf[:n]
        with torch.inference_mode():
            return w.encode_windows(self.encoder, torch.from_numpy(x)[None]).float()[0]

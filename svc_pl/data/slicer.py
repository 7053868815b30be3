"""RMS silence slicer for long inputs (so-vits-svc ``inference/slicer.py`` semantics), pure and in memory.

Preprocessing cuts recordings into clips, and inference converts a long one piece by piece, where it is
silent: the slicer finds silences by frame RMS and
returns a contiguous list of :class:`Chunk` (sample ranges flagged silent or not). Silent chunks are
passed through (as zeros) and voiced chunks are converted. Nothing here reads or writes files.

The cut decisions are those of so-vits-svc 4.1 (itself from openvpi/audio-slicer):

* frames are ``librosa.feature.rms`` frames (centred, hop ``hop_size`` ms, window
  ``min(min_interval, 4 * hop)``); a frame is silent when its RMS is below ``threshold`` dB;
* a silent run is cut when it is leading silence longer than ``max_sil_kept``, or when it is at least
  ``min_interval`` long and the clip since the previous cut is at least ``min_length`` long;
* how much of a cut silence is removed depends on its length: up to ``max_sil_kept`` frames it is
  cut at its quietest frame (nothing removed); longer, the part from the quietest frame of its first
  ``max_sil_kept`` frames to the quietest frame of its last ``max_sil_kept`` frames is removed
  (upstream has a separate rule for "up to twice ``max_sil_kept``" that works out the same, see
  :meth:`Slicer._cut`); leading silence is removed up to the quietest frame of its kept tail;
* trailing silence at least ``min_interval`` long is removed from its quietest frame within the
  first ``max_sil_kept`` to the end.

Two deliberate differences from upstream, which only matter for inputs upstream mishandles:
an input no longer than ``min_length`` is returned whole (upstream compares its *sample* count with
``min_length`` in *frames*, so it almost never triggers), and for ``(C, T)`` input the chunks span
``T`` samples (upstream uses ``len(waveform)``, i.e. ``C``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

LOG = logging.getLogger(__name__)


class Chunk(NamedTuple):
    """A half-open sample range ``[start, end)`` of the input.

    Attributes:
        start: first sample.
        end: one past the last sample.
        silent: True for removed silence (to be passed through), False for audio to convert.
    """

    start: int
    end: int
    silent: bool

    @property
    def length(self) -> int:
        """Number of samples."""
        return self.end - self.start


class Slicer:
    """Split a waveform at silences.

    Args:
        sr: sample rate of the waveforms to slice.
        threshold: RMS level in dB (re full scale) below which a frame is silent.
        min_length: shortest voiced clip in ms before a middle silence may end it.
        min_interval: shortest silence in ms that may be cut.
        hop_size: RMS frame hop in ms.
        max_sil_kept: most silence in ms kept next to a voiced clip.

    Raises:
        ValueError: unless ``min_length >= min_interval >= hop_size`` and ``max_sil_kept >= hop_size``,
            or if the hop is shorter than one sample.
    """

    def __init__(self, sr: int, threshold: float = -40.0, min_length: int = 5000, min_interval: int = 300,
                 hop_size: int = 20, max_sil_kept: int = 5000):
        if not min_length >= min_interval >= hop_size:
            raise ValueError(
                "The following condition must be satisfied: min_length >= min_interval >= hop_size")
        if not max_sil_kept >= hop_size:
            raise ValueError("The following condition must be satisfied: max_sil_kept >= hop_size")
        hop = round(sr * hop_size / 1000)
        if hop < 1:
            raise ValueError(f"hop_size={hop_size} ms is shorter than one sample at sr={sr}")
        interval_samples = sr * min_interval / 1000
        self.sr = sr
        self.threshold = 10.0 ** (threshold / 20.0)  # linear amplitude
        self.hop_size = hop  # samples
        self.win_size = min(round(interval_samples), 4 * hop)  # samples
        # Lengths below are in frames (hops), rounded like upstream (Python's round-half-even).
        self.min_length = round(sr * min_length / 1000 / hop)
        self.min_interval = round(interval_samples / hop)
        self.max_sil_kept = round(sr * max_sil_kept / 1000 / hop)
        self.min_length_samples = round(sr * min_length / 1000)

    def slice(self, waveform: np.ndarray) -> list[Chunk]:
        """Find the silences of a waveform.

        Args:
            waveform: samples, shape ``(T,)`` or ``(C, T)`` (channels are averaged for detection).

        Returns:
            Chunks covering ``[0, T)`` in order without gaps or overlap (``chunks[i].end ==
            chunks[i + 1].start``); empty chunks are left out, so ``T == 0`` gives ``[]``. Two voiced
            chunks may be adjacent: a short silence is cut at a single frame boundary.
        """
        y = np.asarray(waveform)
        if y.ndim == 2:
            samples = y.mean(axis=0)
        elif y.ndim == 1:
            samples = y
        else:
            raise ValueError(f"expected a waveform of shape (T,) or (C, T), got {y.shape}")
        n = samples.shape[0]
        if n == 0:
            return []
        if n <= self.min_length_samples:
            return [Chunk(0, n, False)]
        rms = self._frame_rms(samples)
        return self._chunks(self._silences(rms), n)

    def _frame_rms(self, samples: np.ndarray) -> np.ndarray:
        """(T,) -> (1 + T // hop,) centred frame RMS.

        The same framing and arithmetic as ``librosa.feature.rms(y, frame_length=win, hop_length=hop)``
        (zero padding of win // 2 on both sides, float32 power), so the values are bit-identical to
        upstream's (a test checks it), without importing librosa (~2 s) at inference.
        """
        pad, win, hop = self.win_size // 2, self.win_size, self.hop_size
        n = samples.shape[0]
        n_frames = 1 + n // hop
        out = np.empty(n_frames, dtype=np.float32)
        # block by block, each block's samples zero-padded only where it passes an end: the squared
        # frames of a whole file would be win/hop times its size (0.4 GB for 10 minutes). Each frame's
        # sum runs in the same order as over the whole array, so the values are unchanged.
        block = 2048
        for i in range(0, n_frames, block):
            j = min(n_frames, i + block)
            lo, hi = i * hop - pad, (j - 1) * hop - pad + win
            seg = samples[max(lo, 0):min(hi, n)]
            if lo < 0 or hi > n:
                seg = np.pad(seg, (max(0, -lo), max(0, hi - n)), mode="constant")
            frames = np.lib.stride_tricks.sliding_window_view(seg, win)[::hop].T  # (win, j - i)
            out[i:j] = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=0))
        return out

    def _silences(self, rms: np.ndarray) -> list[tuple[int, int]]:
        """(F,) frame RMS -> silent frame ranges ``(first, last)`` to remove, in order."""
        keep = self.max_sil_kept
        tags: list[tuple[int, int]] = []
        run_start: int | None = None  # first frame of the silent run being scanned
        clip_start = 0  # frame where the current voiced clip began (end of the previous cut)
        for i, quiet in enumerate(rms < self.threshold):
            if quiet:
                if run_start is None:
                    run_start = i
                continue
            if run_start is None:
                continue
            # Frame i is loud and ends the silent run [run_start, i).
            leading = run_start == 0 and i > keep
            middle = i - run_start >= self.min_interval and i - clip_start >= self.min_length
            if leading or middle:
                tag = self._cut(rms, run_start, i)
                tags.append(tag)
                clip_start = tag[1]
            run_start = None
        total = rms.shape[0]
        if run_start is not None and total - run_start >= self.min_interval:
            pos = _argmin(rms, run_start, min(total, run_start + keep))
            tags.append((pos, total + 1))  # past the end: the rest is silence
        return tags

    def _cut(self, rms: np.ndarray, start: int, stop: int) -> tuple[int, int]:
        """Frames to remove from the silent run ``[start, stop)``; keeps at most ``max_sil_kept`` per side."""
        keep = self.max_sil_kept
        span = stop - start
        if span <= keep:  # short: one cut at the quietest frame
            pos = _argmin(rms, start, stop)
            return (0, pos) if start == 0 else (pos, pos)
        right = _argmin(rms, stop - keep, stop)
        if start == 0:  # leading silence: drop everything before the kept tail
            return (0, right)
        left = _argmin(rms, start, start + keep)
        if span <= 2 * keep:  # medium: the kept margins overlap; widen around the quietest shared frame
            # Upstream's rule, kept as the spec. Note that it always equals (left, right): ``mid`` is
            # the first minimum of a range that starts where ``right``'s does and ends where ``left``'s
            # does, so it can never lie before ``left`` or after ``right``.
            mid = _argmin(rms, stop - keep, start + keep)
            return (min(left, mid), max(right, mid))
        return (left, right)  # long

    def _chunks(self, tags: list[tuple[int, int]], n: int) -> list[Chunk]:
        """Silent frame ranges -> contiguous sample chunks over ``[0, n)``."""
        chunks: list[Chunk] = []
        cursor = 0
        for first, last in tags:
            begin = min(n, first * self.hop_size)
            end = min(n, last * self.hop_size)
            chunks.append(Chunk(cursor, begin, False))
            chunks.append(Chunk(begin, end, True))
            cursor = end
        chunks.append(Chunk(cursor, n, False))
        return [c for c in chunks if c.end > c.start]


def _argmin(values: np.ndarray, lo: int, hi: int) -> int:
    """Index of the first minimum of ``values[lo : hi + 1]`` (``hi`` inclusive), as an absolute index."""
    return lo + int(np.argmin(values[lo:hi + 1]))


"""Reading, checking, resampling, normalising and writing audio files.

Used by preprocessing and by the inference CLI; everything past loading works on in-memory arrays.
Shapes use T = samples, C = channels. Arrays are float32 in [-1, 1] (float files may exceed it).

Reading goes through soundfile (libsndfile), so every container/codec it knows works: WAV (any bit
depth, int or float), FLAC, OGG/Vorbis, AIFF, ... ``torchaudio.load`` is not used because recent
torchaudio needs torchcodec for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from svc_pl.errors import BadAudioError, UserFacingError
from svc_pl.io import atomic_open, fsync_dir  # noqa: F401  (fsync_dir: where callers have long found it)

LOG = logging.getLogger(__name__)

# Output container chosen from the file extension. libsndfile's default subtype is used unless the
# caller asks for another one (WAV/FLAC -> PCM_16, OGG -> VORBIS).
FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}  # what svc_pl writes: extension -> format
# what svc_pl reads as audio (libsndfile's formats; mp3 with libsndfile >= 1.1)
AUDIO_EXTENSIONS = frozenset(FORMATS) | {".oga", ".aiff", ".aif", ".mp3", ".opus", ".w64", ".caf"}

# Resampler: soxr (libsoxr) at quality "HQ". It is a hard dependency of librosa, so always present;
# it is a polyphase band-limited resampler with ~-144 dB stop band, passband flat to ~0.95 Nyquist
# and no audible ringing, and it is much faster than a long windowed-sinc convolution in torchaudio.
# "HQ" is also what ``librosa.resample`` uses by default, i.e. what so-vits-svc's resample.py applied
# to the training data, so data prepared here matches upstream's numerically.
_SOXR_QUALITY = "HQ"


class UnsupportedFormatError(UserFacingError, ValueError):
    """An output path whose extension names no audio format we can write."""


def load_audio(path: str | os.PathLike, target_sr: int | None = None,
               mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file, down-mix it and resample it once.

    Args:
        path: any file soundfile can read (WAV/FLAC/OGG/AIFF..., any rate, channel count, bit depth).
        target_sr: output sample rate; ``None`` keeps the file's rate.
        mono: average the channels into one.

    Returns:
        ``(y, sr)``: float32 samples, shape ``(T,)`` if ``mono`` else ``(C, T)``, and their rate.

    Raises:
        BadAudioError: the file is missing, unreadable/corrupt, holds no samples, or holds NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        reason = "file does not exist" if not path.exists() else "is not a regular file"
        raise BadAudioError(str(path), reason)
    if path.stat().st_size == 0:
        raise BadAudioError(str(path), "is empty (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise BadAudioError(str(path), f"cannot be read as audio ({err}): is it a supported format "
                                       f"(wav, flac, ogg, ...) and not truncated?") from err
    if data.shape[0] == 0:
        raise BadAudioError(str(path), "is empty (0 samples)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BadAudioError(str(path), f"contains {bad} NaN/inf sample(s): re-export the file")
    if mono:
        y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # mono files: no copy
    else:
        y = np.ascontiguousarray(data.T)
    if target_sr is not None and target_sr != sr:
        y = resample(y, sr, target_sr)
        sr = target_sr
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (see ``_SOXR_QUALITY`` for why).

    Args:
        y: samples, shape ``(T,)`` or ``(C, T)``.
        orig_sr: rate of ``y``.
        target_sr: wanted rate.

    Returns:
        float32 samples, shape ``(T',)`` or ``(C, T')`` with ``T' ~= T * target_sr / orig_sr``;
        ``y`` itself when the rates are equal.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return y
    import soxr  # librosa's own dependency; imported here so `import svc_pl.data.audio` stays cheap

    x = np.asarray(y, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, orig_sr, target_sr, quality=_SOXR_QUALITY).astype(np.float32, copy=False)
    if x.ndim == 2:  # soxr takes (T, C)
        out = soxr.resample(np.ascontiguousarray(x.T), orig_sr, target_sr, quality=_SOXR_QUALITY)
        return np.ascontiguousarray(out.T, dtype=np.float32)
    raise ValueError(f"expected samples of shape (T,) or (C, T), got {x.shape}")


def check_audio(y: np.ndarray, sr: int, path: str | os.PathLike, min_seconds: float = 0.0,
                silence_db: float = -60.0) -> None:
    """Reject audio that loads fine but cannot be used.

    Args:
        y: samples, shape ``(T,)`` or ``(C, T)``.
        sr: sample rate of ``y``.
        path: the file ``y`` came from, named in the error.
        min_seconds: shortest acceptable duration.
        silence_db: a peak below this level (dBFS) counts as all silent.

    Raises:
        BadAudioError: empty, too short, or all silent.
    """
    n = y.shape[-1]
    if n == 0:
        raise BadAudioError(str(path), "is empty (0 samples)")
    seconds = n / sr
    if seconds < min_seconds:
        raise BadAudioError(str(path), f"is too short ({seconds:.3f} s < {min_seconds:g} s)")
    peak = float(np.max(np.abs(y)))
    if peak < 10.0 ** (silence_db / 20.0):
        level = "-inf" if peak == 0.0 else f"{20.0 * np.log10(peak):.1f}"
        raise BadAudioError(str(path), f"is all silent (peak {level} dBFS < {silence_db:g} dBFS)")


def normalize_loudness(y: np.ndarray, target_db: float = -23.0, peak_limit: float = 0.95) -> np.ndarray:
    """Scale to a target RMS level, but never let the peak exceed ``peak_limit``.

    so-vits-svc's preprocessing only peak-normalises, so quiet and dense recordings end up at very
    different loudness. Here the gain first brings the RMS to ``target_db`` dBFS, then is reduced if
    that would push the peak above ``peak_limit`` (0.95 leaves headroom for resampling overshoot and
    int16 export, instead of clipping). Digital silence is returned unchanged.

    Args:
        y: samples, shape ``(T,)`` or ``(C, T)``.
        target_db: wanted RMS level in dBFS (over all channels).
        peak_limit: largest allowed absolute sample value after scaling, in (0, 1].

    Returns:
        float32 array of the shape of ``y``.
    """
    if not 0.0 < peak_limit <= 1.0:
        raise ValueError(f"peak_limit must be in (0, 1], got {peak_limit}")
    x = np.asarray(y, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    peak = float(np.max(np.abs(x)))
    if rms == 0.0 or peak == 0.0:
        return x.copy()
    gain = min(10.0 ** (target_db / 20.0) / rms, peak_limit / peak)
    return (x * np.float32(gain)).astype(np.float32, copy=False)


def save_audio(path: str | os.PathLike, y: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    """Write audio atomically: the file at ``path`` is either the old one or complete, never partial.

    The data go to a hidden temporary file in the same directory, are fsync'ed, then renamed over
    ``path`` with ``os.replace`` (atomic on POSIX and Windows). On any error the temporary is removed.

    Args:
        path: output file; its extension (.wav, .flac, .ogg) chooses the format.
        y: samples, shape ``(T,)`` or ``(C, T)``; values outside [-1, 1] are clipped (with a warning)
            for integer subtypes.
        sr: sample rate.
        subtype: soundfile subtype (e.g. "PCM_24", "FLOAT"); default: the format's default.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        UnsupportedFormatError: unknown extension or a subtype the format cannot hold.
        FileNotFoundError: the output directory does not exist.
        ValueError: ``y`` has a bad shape or non-finite samples.
    """
    x = np.asarray(y, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"{path}: expected non-empty samples of shape (T,) or (C, T), got {x.shape}")
    with AudioWriter(path, sr, channels=1 if x.ndim == 1 else x.shape[0], subtype=subtype) as writer:
        writer.write(x)
    return Path(path)


class AudioWriter:
    """Writes an audio file block by block, atomically: until the ``with`` block ends without error
    the data go to a hidden temporary file beside ``path``; then it is fsync'ed and renamed over
    ``path``. On any error (or an empty file) the temporary is removed and ``path`` is untouched.

    Each block is checked (finite, shape ``(T,)`` or ``(C, T)``) and, for integer subtypes, clipped to
    full scale with one warning per file. So a long conversion can be written as it comes out,
    without ever holding the whole output.

        with AudioWriter("out.flac", 44100) as w:
            for block in converter.iter_convert(audio, sr, opts):
                w.write(block)
    """

    def __init__(self, path: str | os.PathLike, sr: int, channels: int = 1, subtype: str | None = None):
        self.path = Path(path)
        self.fmt = FORMATS.get(self.path.suffix.lower())
        if self.fmt is None:
            raise UnsupportedFormatError(f"{self.path}: cannot write audio with extension {self.path.suffix!r}; "
                                         f"use one of {', '.join(sorted(FORMATS))}")
        if subtype is not None and not sf.check_format(self.fmt, subtype):
            raise UnsupportedFormatError(f"{self.path}: format {self.fmt} cannot hold subtype {subtype!r}; "
                                         f"choose one of {', '.join(sf.available_subtypes(self.fmt))}")
        self.parent = self.path.parent if str(self.path.parent) else Path(".")
        if not self.parent.is_dir():
            raise FileNotFoundError(f"{self.path}: output directory {self.parent} does not exist")
        self.sr, self.channels = int(sr), int(channels)
        self.subtype = subtype or sf.default_subtype(self.fmt)
        self.frames = 0
        self._peak = 0.0
        self._tmp: Path | None = None
        self._file = None
        self._sf = None

    def __enter__(self) -> AudioWriter:
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(atomic_open(self.path, "wb"))
        try:
            self._sf = sf.SoundFile(self._file, "w", self.sr, self.channels, self.subtype, format=self.fmt)
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def write(self, y: np.ndarray) -> None:
        """Append samples, ``(T,)`` for one channel or ``(C, T)``."""
        x = np.asarray(y, dtype=np.float32)
        if x.ndim == 1 and self.channels != 1 or x.ndim == 2 and x.shape[0] != self.channels or x.ndim > 2:
            raise ValueError(f"{self.path}: expected blocks of {self.channels} channel(s), got shape {x.shape}")
        if x.shape[-1] == 0:
            return
        if not np.isfinite(x).all():
            raise ValueError(f"{self.path}: refusing to write NaN/inf samples")
        if self.subtype not in ("FLOAT", "DOUBLE", "VORBIS", "OPUS"):
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                if self._peak <= 1.0:
                    LOG.warning("%s: peak %.3f exceeds full scale; clipping for %s", self.path, peak, self.subtype)
                x = np.clip(x, -1.0, 1.0)
            self._peak = max(self._peak, peak)
        self._sf.write(x if x.ndim == 1 else np.ascontiguousarray(x.T))
        self.frames += x.shape[-1]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._sf.close()  # completes the container (headers, last pages)
            if exc_type is None and self.frames == 0:
                raise ValueError(f"{self.path}: no samples were written")
        except BaseException as err:
            if exc_type is None:
                exc_type, exc, tb = type(err), err, err.__traceback__
            if not self._stack.__exit__(exc_type, exc, tb):
                raise
            return
        self._stack.__exit__(exc_type, exc, tb)  # renames the file into place, or removes it on an error


def frame_volume(y: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """RMS per hop-sized frame, centred like so-vits-svc's volume extractor. (T,) -> (n_frames,)."""
    padded = np.pad(y, (hop // 2, (hop + 1) // 2), mode="reflect" if len(y) > hop else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, hop)[::hop][:n_frames]
    vol = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    return np.pad(vol, (0, n_frames - len(vol)))

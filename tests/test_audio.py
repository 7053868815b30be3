"""Audio I/O: real files of every supported kind load as mono at the target rate; bad files fail clearly."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from svc_pl.data import audio
from svc_pl.data.audio import (
    UnsupportedFormatError,
    check_audio,
    load_audio,
    normalize_loudness,
    resample,
    save_audio,
)
from svc_pl.errors import BadAudioError, UserFacingError
from tests.speech import synth_speech


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize(("ext", "subtype", "file_sr", "target_sr"), [
    ("wav", "PCM_16", 22050, 44100),
    ("wav", "PCM_24", 48000, 44100),
    ("wav", "FLOAT", 48000, 16000),
    ("flac", "PCM_16", 22050, 16000),
    ("flac", "PCM_24", 48000, 44100),
    ("ogg", "VORBIS", 48000, 44100),
    ("wav", "PCM_16", 44100, 44100),  # no resampling
])
def test_load_resamples_once_and_keeps_content(tmp_path, ext, subtype, file_sr, target_sr):
    seconds = 1.5
    y = tone(440, file_sr, seconds)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, y, file_sr, subtype=subtype)
    out, sr = load_audio(path, target_sr)
    assert sr == target_sr and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - seconds * target_sr) <= 1
    assert abs(peak_hz(out, sr) - 440) < 1.0
    # Same waveform, not just the same pitch: compare with the ideal tone away from the edges.
    ref = tone(440, target_sr, len(out) / target_sr)[: len(out)]
    mid = slice(len(out) // 10, -len(out) // 10)
    tol = 0.02 if ext == "ogg" else 1e-3
    assert np.max(np.abs(out[mid] - ref[mid])) < tol


def test_stereo_is_mixed_to_mono_or_kept(tmp_path):
    sr = 48000
    left, right = tone(440, sr, 1.0, 0.6), tone(880, sr, 1.0, 0.2)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_24")
    mono, out_sr = load_audio(path, 22050)
    assert mono.shape == (22050,) and out_sr == 22050
    spec = np.abs(np.fft.rfft(mono)) * 2 / len(mono)  # amplitudes (1 s: 1 Hz bins)
    assert spec[440] == pytest.approx(0.3, abs=0.01) and spec[880] == pytest.approx(0.1, abs=0.01)
    both, out_sr = load_audio(path, None, mono=False)
    assert both.shape == (2, sr) and out_sr == sr
    np.testing.assert_allclose(both[0], left, atol=1e-6)
    both22, _ = load_audio(path, 22050, mono=False)
    assert both22.shape == (2, 22050)


def test_load_real_speech(tmp_path):
    path = synth_speech(tmp_path / "s.wav", "Singing voice conversion.")
    y, sr = load_audio(path, 44100)
    native, native_sr = sf.read(path, dtype="float32")
    assert native_sr == 22050 and sr == 44100
    assert abs(len(y) - 2 * len(native)) <= 1
    check_audio(y, sr, path, min_seconds=0.5)
    # Energy is preserved by band-limited resampling of speech that lives well below 11 kHz.
    energy = np.sum(native.astype(np.float64) ** 2)
    assert np.sum(y.astype(np.float64) ** 2) / 2 == pytest.approx(energy, rel=0.02)


def _expect_bad(path, match):
    with pytest.raises(BadAudioError, match=match) as info:
        load_audio(path, 16000)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert isinstance(info.value, UserFacingError)


def test_bad_files_name_the_file_and_reason(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _expect_bad(corrupt, "cannot be read as audio .*supported format")
    empty_file = tmp_path / "zero_bytes.wav"
    empty_file.write_bytes(b"")
    _expect_bad(empty_file, "empty")
    no_samples = tmp_path / "header_only.wav"
    sf.write(no_samples, np.zeros(0, np.float32), 16000)
    _expect_bad(no_samples, r"empty \(0 samples\)")
    nan = tmp_path / "nan.wav"
    y = tone(440, 16000, 0.5)
    y[100] = np.nan
    y[200] = np.inf
    sf.write(nan, y, 16000, subtype="FLOAT")
    _expect_bad(nan, "2 NaN/inf")
    _expect_bad(tmp_path / "missing.wav", "does not exist")
    _expect_bad(tmp_path, "not a regular file")


def test_check_audio():
    sr = 16000
    check_audio(tone(440, sr, 1.0), sr, "ok.wav", min_seconds=1.0)
    with pytest.raises(BadAudioError, match=r"quiet.wav: is all silent \(peak -inf dBFS"):
        check_audio(np.zeros(sr, np.float32), sr, "quiet.wav")
    with pytest.raises(BadAudioError, match=r"all silent \(peak -66.0 dBFS < -60 dBFS\)"):
        check_audio(tone(440, sr, 1.0, amp=10 ** (-66 / 20)), sr, "quiet.wav")
    check_audio(tone(440, sr, 1.0, amp=10 ** (-66 / 20)), sr, "quiet.wav", silence_db=-70)
    with pytest.raises(BadAudioError, match=r"short.wav: is too short \(0.500 s < 2 s\)"):
        check_audio(tone(440, sr, 0.5), sr, "short.wav", min_seconds=2)
    with pytest.raises(BadAudioError, match="empty"):
        check_audio(np.zeros(0, np.float32), sr, "e.wav")


def test_resample():
    y = tone(1000, 48000, 0.5)
    assert resample(y, 48000, 48000) is y
    out = resample(y, 48000, 16000)
    assert out.dtype == np.float32 and len(out) == 8000 and abs(peak_hz(out, 16000) - 1000) < 2
    # A tone above the new Nyquist is removed, not aliased.
    assert np.abs(resample(tone(10000, 48000, 0.5), 48000, 16000))[500:-500].max() < 1e-3
    stereo = resample(np.stack([y, -y]), 48000, 16000)
    assert stereo.shape == (2, 8000)
    np.testing.assert_allclose(stereo[0], out, atol=1e-6)
    with pytest.raises(ValueError):
        resample(y, 0, 16000)


def test_normalize_loudness():
    rms_db = lambda x: 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    quiet = tone(440, 16000, 1.0, amp=0.01)
    out = normalize_loudness(quiet, target_db=-23)
    assert out.dtype == np.float32 and rms_db(out) == pytest.approx(-23, abs=0.01)
    # A loud target on a peaky signal is limited by the 0.95 peak ceiling instead of clipping.
    clicks = np.zeros(16000, np.float32)
    clicks[::4000] = 0.1
    out = normalize_loudness(clicks, target_db=-10)
    assert np.abs(out).max() == pytest.approx(0.95, rel=1e-5) and rms_db(out) < -10
    assert not normalize_loudness(np.zeros(100, np.float32)).any()
    stereo = normalize_loudness(np.stack([quiet, quiet]), target_db=-20)
    assert stereo.shape == (2, 16000) and rms_db(stereo) == pytest.approx(-20, abs=0.01)


@pytest.mark.parametrize(("ext", "fmt", "subtype"), [
    ("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("WAV", "WAV", "PCM_16"),
])
def test_save_writes_format_atomically(tmp_path, ext, fmt, subtype):
    y = tone(440, 44100, 0.5)
    path = tmp_path / f"out.{ext}"
    path.write_bytes(b"old content")
    assert save_audio(path, y, 44100) == path
    assert os.listdir(tmp_path) == [path.name]  # replaced in place, no temporary left
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.frames) == (fmt, subtype, 44100, len(y))
    back, _ = load_audio(path)
    assert np.max(np.abs(back - y)) < (0.02 if ext == "ogg" else 1e-4)


def test_save_options(tmp_path):
    y = tone(440, 16000, 0.25)
    save_audio(tmp_path / "f.wav", np.stack([y, -y]), 16000, subtype="FLOAT")
    info = sf.info(tmp_path / "f.wav")
    assert (info.channels, info.subtype) == (2, "FLOAT")
    save_audio(tmp_path / "clip.wav", 2 * y, 16000)  # clipped for PCM_16, with a warning
    assert np.abs(sf.read(tmp_path / "clip.wav")[0]).max() == pytest.approx(1.0, abs=1e-3)


def test_failed_saves_leave_nothing(tmp_path, monkeypatch):
    y = tone(440, 16000, 0.25)
    with pytest.raises(UnsupportedFormatError, match=r"'\.mp4'.*\.flac, \.ogg, \.wav"):
        save_audio(tmp_path / "x.mp4", y, 16000)
    with pytest.raises(ValueError, match="subtype"):
        save_audio(tmp_path / "x.ogg", y, 16000, subtype="PCM_16")
    with pytest.raises(FileNotFoundError, match="missing"):
        save_audio(tmp_path / "missing" / "x.wav", y, 16000)
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "x.wav", np.full(10, np.nan, np.float32), 16000)
    assert os.listdir(tmp_path) == []

    # A failure half-way through writing keeps the old file and removes the partial temporary.
    keep = tmp_path / "keep.wav"
    save_audio(keep, y, 16000)
    before = keep.read_bytes()

    real_write = audio.sf.SoundFile.write

    def broken_write(self, data):
        real_write(self, data[: len(data) // 2])  # some bytes reach the temporary file, then:
        raise OSError("disk full")

    monkeypatch.setattr(audio.sf.SoundFile, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_audio(keep, -y, 16000)
    assert keep.read_bytes() == before and os.listdir(tmp_path) == ["keep.wav"]


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
def test_audio_writer_streams_blocks_atomically(tmp_path, ext):
    y = tone(330, 16000, 1.0)
    whole, blocks = tmp_path / f"whole{ext}", tmp_path / f"blocks{ext}"
    save_audio(whole, y, 16000)
    with audio.AudioWriter(blocks, 16000) as writer:
        for i in range(0, len(y), 1234):
            writer.write(y[i:i + 1234])
            assert not blocks.exists()  # nothing at the final path until the end
    a, _ = sf.read(whole, dtype="float32")
    b, _ = sf.read(blocks, dtype="float32")
    assert len(a) == len(b) == len(y)
    if ext != ".ogg":  # lossless: the same samples
        assert np.array_equal(a, b)
    # an error in the middle of a conversion: no output, no temporary
    target = tmp_path / f"failed{ext}"
    with pytest.raises(RuntimeError, match="model exploded"):
        with audio.AudioWriter(target, 16000) as writer:
            writer.write(y[:4000])
            raise RuntimeError("model exploded")
    assert not target.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    with pytest.raises(ValueError, match="channel"):
        with audio.AudioWriter(tmp_path / f"stereo{ext}", 16000, channels=2) as writer:
            writer.write(y)
    assert sorted(os.listdir(tmp_path)) == sorted([whole.name, blocks.name])

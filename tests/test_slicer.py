"""The silence slicer: parity with the seed's algorithm on real speech, and the chunk contract."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf

from svc_pl.data.slicer import Chunk, Slicer
from tests.speech import speech_with_pause, synth_speech

PHRASES = [
    "Hello there my friend.",
    "Music is the language of the soul.",
    "We sing together tonight.",
    "Another verse begins softly.",
    "The final chorus rises high.",
]
# Digital silence before each phrase, and after the last one (s). espeak-ng adds ~0.39 s of its own
# silence after every phrase, so the real pauses are ~0.4 s longer than these (0.4 s, 0.55 s, ...).
GAPS = [0.8, 0.0, 0.15, 0.6, 1.5, 3.0]


# --- independent reference: a direct transcription of the seed's Slicer (the spec) -------------------


def reference_slice(waveform, sr, threshold=-40.0, min_length=5000, min_interval=300, hop_size=20,
                    max_sil_kept=5000):
    """The seed's loop, line for line; returns ([(silent, begin, end)] without empty ones, cases hit)."""
    cases = set()
    min_interval = sr * min_interval / 1000
    threshold = 10 ** (threshold / 20.0)
    hop = round(sr * hop_size / 1000)
    win = min(round(min_interval), 4 * hop)
    min_length = round(sr * min_length / 1000 / hop)
    min_interval = round(min_interval / hop)
    max_sil_kept = round(sr * max_sil_kept / 1000 / hop)
    samples = librosa.to_mono(waveform) if waveform.ndim > 1 else waveform
    n = samples.shape[0]
    if n <= min_length:
        return [(False, 0, n)], cases
    rms_list = librosa.feature.rms(y=samples, frame_length=win, hop_length=hop).squeeze(0)
    sil_tags = []
    silence_start = None
    clip_start = 0
    for i, rms in enumerate(rms_list):
        if rms < threshold:
            if silence_start is None:
                silence_start = i
            continue
        if silence_start is None:
            continue
        is_leading_silence = silence_start == 0 and i > max_sil_kept
        need_slice_middle = i - silence_start >= min_interval and i - clip_start >= min_length
        if not is_leading_silence and not need_slice_middle:
            silence_start = None
            continue
        if silence_start == 0:
            cases.add("leading")
        if i - silence_start <= max_sil_kept:
            cases.add("short")
            pos = rms_list[silence_start: i + 1].argmin() + silence_start
            if silence_start == 0:
                sil_tags.append((0, pos))
            else:
                sil_tags.append((pos, pos))
            clip_start = pos
        elif i - silence_start <= max_sil_kept * 2:
            cases.add("medium")
            pos = rms_list[i - max_sil_kept: silence_start + max_sil_kept + 1].argmin()
            pos += i - max_sil_kept
            pos_l = rms_list[silence_start: silence_start + max_sil_kept + 1].argmin() + silence_start
            pos_r = rms_list[i - max_sil_kept: i + 1].argmin() + i - max_sil_kept
            if silence_start == 0:
                sil_tags.append((0, pos_r))
                clip_start = pos_r
            else:
                sil_tags.append((min(pos_l, pos), max(pos_r, pos)))
                clip_start = max(pos_r, pos)
        else:
            cases.add("long")
            pos_l = rms_list[silence_start: silence_start + max_sil_kept + 1].argmin() + silence_start
            pos_r = rms_list[i - max_sil_kept: i + 1].argmin() + i - max_sil_kept
            if silence_start == 0:
                sil_tags.append((0, pos_r))
            else:
                sil_tags.append((pos_l, pos_r))
            clip_start = pos_r
        silence_start = None
    total_frames = rms_list.shape[0]
    if silence_start is not None and total_frames - silence_start >= min_interval:
        cases.add("trailing")
        silence_end = min(total_frames, silence_start + max_sil_kept)
        pos = rms_list[silence_start: silence_end + 1].argmin() + silence_start
        sil_tags.append((pos, total_frames + 1))
    if not sil_tags:
        return [(False, 0, n)], cases
    chunks = []
    if sil_tags[0][0]:
        chunks.append((False, 0, min(n, sil_tags[0][0] * hop)))
    for i in range(len(sil_tags)):
        if i:
            chunks.append((False, sil_tags[i - 1][1] * hop, min(n, sil_tags[i][0] * hop)))
        chunks.append((True, sil_tags[i][0] * hop, min(n, sil_tags[i][1] * hop)))
    if sil_tags[-1][1] * hop < n:
        chunks.append((False, sil_tags[-1][1] * hop, n))
    return [c for c in chunks if c[1] != c[2]], cases


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_phrase(tmp_path_factory):
    """Five espeak-ng phrases with pauses of 0.4-3.4 s, leading and trailing silence.

    Returns (y (T,) float32, sr, pauses): pauses are the quiet [start, end) sample ranges between the
    last and first sample above -40 dBFS of neighbouring phrases (and the leading/trailing ones).
    """
    d = tmp_path_factory.mktemp("speech")
    parts, loud = [], []
    sr = None
    offset = 0
    for i, text in enumerate(PHRASES):
        y, sr = sf.read(synth_speech(d / f"p{i}.wav", text), dtype="float32")
        gap = np.zeros(int(GAPS[i] * sr), dtype=np.float32)
        parts += [gap, y]
        idx = np.flatnonzero(np.abs(y) > 0.01)
        offset += len(gap)
        loud.append((offset + idx[0], offset + idx[-1] + 1))
        offset += len(y)
    parts.append(np.zeros(int(GAPS[-1] * sr), dtype=np.float32))
    y = np.concatenate(parts)
    edges = [0] + [b for a, b in loud for b in (a, b)] + [len(y)]
    pauses = [(edges[k], edges[k + 1]) for k in range(0, len(edges), 2)]
    return y, sr, pauses


SETTINGS = [
    {},  # upstream defaults
    {"min_length": 1000},
    {"min_length": 1000, "max_sil_kept": 300},
    {"min_length": 1000, "max_sil_kept": 500},
    {"min_length": 1500, "min_interval": 500, "hop_size": 10, "max_sil_kept": 1000},
    {"threshold": -30.0, "min_length": 2000, "min_interval": 400, "max_sil_kept": 700},
]


def _as_tuples(chunks):
    return [(c.silent, c.start, c.end) for c in chunks]


def _assert_contiguous(chunks, n):
    assert chunks[0].start == 0 and chunks[-1].end == n
    for a, b in zip(chunks[:-1], chunks[1:], strict=True):
        assert a.end == b.start
    assert all(c.end > c.start for c in chunks)
    assert all(isinstance(c, Chunk) and isinstance(c.start, int) and isinstance(c.end, int) for c in chunks)


# --- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"min_length": 200, "min_interval": 300},
    {"min_interval": 10, "hop_size": 20},
    {"max_sil_kept": 10, "hop_size": 20},
])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError, match="must be satisfied"):
        Slicer(44100, **kwargs)


def test_frame_conversions_follow_upstream():
    s = Slicer(44100)
    assert (s.hop_size, s.win_size, s.min_length, s.min_interval, s.max_sil_kept) == (882, 3528, 250, 15, 250)
    s = Slicer(22050, min_interval=30, hop_size=10)
    assert (s.hop_size, s.win_size) == (220, 662)  # window limited by min_interval


def test_matches_reference_on_multi_phrase_speech(multi_phrase):
    y, sr, _ = multi_phrase
    seen = set()
    for kwargs in SETTINGS:
        expected, cases = reference_slice(y, sr, **kwargs)
        chunks = Slicer(sr, **kwargs).slice(y)
        assert _as_tuples(chunks) == expected, kwargs
        _assert_contiguous(chunks, len(y))
        seen |= cases
    # The settings exercise every branch of the algorithm.
    assert seen == {"leading", "short", "medium", "long", "trailing"}


def test_matches_reference_at_44k_and_on_stereo(tmp_path):
    path, _, _ = speech_with_pause(tmp_path / "two.wav", pause_s=1.2, voice="en+f3")
    y22, sr22 = sf.read(path, dtype="float32")
    y = librosa.resample(y22, orig_sr=sr22, target_sr=44100)
    y = np.concatenate([np.zeros(20000, np.float32), y, np.zeros(30000, np.float32)])
    stereo = np.stack([y, 0.5 * y])
    for kwargs in ({}, {"min_length": 1000, "max_sil_kept": 400}):
        expected, _ = reference_slice(y, 44100, **kwargs)
        assert _as_tuples(Slicer(44100, **kwargs).slice(y)) == expected
        # (C, T): detection on the channel mean, chunks over T samples (upstream would use C here).
        expected_stereo, _ = reference_slice(stereo.mean(axis=0), 44100, **kwargs)
        chunks = Slicer(44100, **kwargs).slice(stereo)
        assert _as_tuples(chunks) == expected_stereo
        _assert_contiguous(chunks, stereo.shape[1])


def test_silent_chunks_lie_in_the_pauses(multi_phrase):
    y, sr, pauses = multi_phrase
    chunks = Slicer(sr, min_length=1000, max_sil_kept=500).slice(y)
    silent = [c for c in chunks if c.silent]
    slack = 4 * round(sr * 0.02)  # one RMS window: frames are centred on their sample
    for c in silent:
        assert any(a - slack <= c.start and c.end <= b + slack for a, b in pauses), c
        assert np.abs(y[c.start:c.end]).max() < 0.05
    # Every pause (all are longer than min_interval and follow >= 1 s of speech) holds a cut: a silent
    # chunk, or for a pause <= max_sil_kept a boundary between two voiced chunks at its quietest frame.
    boundaries = [c.start for c in chunks[1:]]
    for a, b in pauses:
        assert any(a - slack <= x <= b + slack for x in boundaries), (a, b)
    assert len(chunks) >= 2 * len(PHRASES) - 1
    # Leading and trailing silence are removed.
    assert chunks[0].silent and chunks[-1].silent


def test_two_phrases_cut_in_the_pause(tmp_path):
    path, pause_start, pause_end = speech_with_pause(tmp_path / "x.wav", pause_s=1.0)
    y, sr = sf.read(path, dtype="float32")
    # espeak-ng adds ~0.39 s of silence at the end of the first phrase, so the pause begins earlier.
    lo, hi = pause_start - int(0.45 * sr), pause_end + 4 * 441
    # Defaults keep up to 5 s of silence: the ~1.4 s pause becomes one cut between two voiced chunks.
    chunks = Slicer(sr, min_length=1000).slice(y)
    assert _as_tuples(chunks) == reference_slice(y, sr, -40, 1000)[0]
    voiced = [c for c in chunks if not c.silent]
    assert len(voiced) == 2 and lo <= voiced[0].end == voiced[1].start <= hi
    # Keeping at most 0.3 s per side turns the middle of the pause into a silent chunk.
    chunks = Slicer(sr, min_length=1000, max_sil_kept=300).slice(y)
    silent = [c for c in chunks if c.silent and c.end < len(y)]
    assert len(silent) == 1 and lo <= silent[0].start < silent[0].end <= hi
    assert silent[0].length >= int(0.6 * sr)


def test_short_input_is_one_voiced_chunk(tmp_path):
    y, sr = sf.read(synth_speech(tmp_path / "s.wav", "Hello."), dtype="float32")
    y = np.concatenate([y, np.zeros(sr // 2, np.float32)])  # trailing silence that could be cut
    assert len(y) <= 5 * sr
    assert Slicer(sr).slice(y) == [Chunk(0, len(y), False)]
    # "Short" means at most min_length ms; one sample more and the trailing silence is cut.
    # (Upstream compares the sample count with min_length in frames, so it would cut both.)
    slicer = Slicer(sr, min_length=1000)
    voiced = y[: slicer.min_length_samples - sr // 2]
    exact = np.concatenate([voiced, np.zeros(slicer.min_length_samples - len(voiced), np.float32)])
    assert len(exact) == slicer.min_length_samples
    assert slicer.slice(exact) == [Chunk(0, len(exact), False)]
    longer = np.concatenate([exact, np.zeros(1, np.float32)])
    assert [c.silent for c in slicer.slice(longer)] == [False, True]


def test_edge_inputs():
    sr = 16000
    assert Slicer(sr).slice(np.zeros(0, np.float32)) == []
    silence = np.zeros(8 * sr, np.float32)
    assert Slicer(sr).slice(silence) == [Chunk(0, len(silence), True)]
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8 * sr) / sr).astype(np.float32)
    assert Slicer(sr).slice(tone) == [Chunk(0, len(tone), False)]
    with pytest.raises(ValueError, match="shape"):
        Slicer(sr).slice(np.zeros((1, 2, 3), np.float32))


def test_frame_rms_is_librosas(multi_phrase):
    y, sr, _ = multi_phrase
    for kwargs in SETTINGS:
        s = Slicer(sr, **kwargs)
        expected = librosa.feature.rms(y=y, frame_length=s.win_size, hop_length=s.hop_size)[0]
        np.testing.assert_array_equal(s._frame_rms(y), expected)
        np.testing.assert_array_equal(s._frame_rms(y.astype(np.float64)),
                                      librosa.feature.rms(y=y.astype(np.float64), frame_length=s.win_size,
                                                          hop_length=s.hop_size)[0])


@pytest.mark.parametrize("kwargs", [
    # frames: min_interval 3, max_sil_kept 10, min_length 20
    {"min_length": 200, "min_interval": 30, "hop_size": 10, "max_sil_kept": 100},
    # frames: min_interval 3, max_sil_kept 20, min_length 10 (short leading silences can be cut)
    {"min_length": 100, "min_interval": 30, "hop_size": 10, "max_sil_kept": 200},
])
def test_matches_reference_at_exact_length_boundaries(kwargs):
    """Random layouts of clips and pauses whose lengths straddle every threshold, frame by frame.

    Real speech rarely lands a pause on an exact frame count, so this pins the ``<=``/``>`` edges of
    each rule. Pauses hold faint noise whose level changes every hop (below the threshold), so the
    quietest frame, where cuts go, moves around.
    """
    sr, hop = 8000, 80
    rng = np.random.default_rng(0)

    def loud(frames):
        return rng.uniform(-0.5, 0.5, frames * hop).astype(np.float32)

    def quiet(frames):
        n = frames * hop + int(rng.integers(0, hop))  # not always a whole number of hops
        level = np.repeat(10.0 ** rng.uniform(-4.0, -2.3, frames + 1), hop)[:n]
        return (level * rng.uniform(-1, 1, level.size)).astype(np.float32)

    slicer = Slicer(sr, **kwargs)
    keep = slicer.max_sil_kept
    for trial in range(400):
        pauses = rng.integers(0, 2 * keep + 7, 4)
        clips = rng.integers(3, 26, 3)
        y = np.concatenate([quiet(pauses[0]), loud(clips[0]), quiet(pauses[1]), loud(clips[1]),
                            quiet(pauses[2]), loud(clips[2]), quiet(pauses[3])])
        expected, _ = reference_slice(y, sr, **kwargs)
        assert _as_tuples(slicer.slice(y)) == expected, (trial, pauses, clips)

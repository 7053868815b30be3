"""F0 for live conversion: pm on the frame grid whatever the segment length (a stream tracks F0 per block, a file
in one go), and the pesto tracker."""

from __future__ import annotations

import numpy as np
import pytest

from svc_pl.data.pitch import get_f0_extractor

SR, HOP = 16000, 320


def _glide(seconds: float, f_start: float = 150.0, f_end: float = 400.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = f_start * (f_end / f_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f) / SR
    return (0.4 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))).astype(np.float32)


def _cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = (a > 0) & (b > 0)
    assert both.mean() > 0.8
    return np.abs(1200 * np.log2(a[both] / b[both]))


def test_pm_frames_sit_on_the_grid_for_every_segment_length():
    """Praat centres its frames in the sound: for some lengths they fall half a frame off ``j * hop``. Segments of a
    glide that end at different frames (as a stream's blocks do) must agree with each other frame for frame."""
    ex = get_f0_extractor("pm", SR, HOP)
    y = _glide(2.0)
    whole = ex.compute(y).raw
    for frames in range(40, 56):  # lengths where Praat's grid is on ours and where it is half a frame off
        part = ex.compute(y[: frames * HOP]).raw
        inner = slice(4, frames - 4)  # away from the segment's edges (Praat's 60 ms window)
        assert np.median(_cents(part[inner], whole[inner])) < 1.0, frames


def test_pesto_follows_a_sung_glide_and_leaves_silence_unvoiced():
    pytest.importorskip("pesto")
    ex = get_f0_extractor("pesto", SR, HOP, device="cpu")
    y = np.concatenate([_glide(1.5), np.zeros(SR // 2, np.float32)])
    track = ex.compute(y)
    assert len(track.f0) == len(y) // HOP
    t = np.arange(len(track.f0)) * HOP / SR
    truth = 150.0 * (400.0 / 150.0) ** (t / 1.5)
    voiced = slice(5, int(1.5 * SR / HOP) - 5)
    assert np.median(_cents(track.raw[voiced], truth[voiced])) < 20
    assert np.mean(track.voiced[int(1.6 * SR / HOP):]) < 0.1
    # the same rates as a 44.1 kHz model: one value per model frame
    ex44 = get_f0_extractor("pesto", 44100, 512, device="cpu")
    assert len(ex44.compute(np.zeros(44100, np.float32)).f0) == 44100 // 512

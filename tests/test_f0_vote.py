"""svc_pl.data.f0_vote and ``--f0 vote``: one tracker's octave error is outvoted by the two that agree."""

import numpy as np
import pytest

from svc_pl.data.f0_vote import vote
from svc_pl.data.pitch import get_f0_extractor

SR = 16000


def test_an_octave_error_of_one_tracker_is_outvoted():
    true = np.full(100, 90.0)
    octave_up = true.copy()
    octave_up[20:60] *= 2  # FCPE's error on a low male voice
    other = true * 2 ** (10 / 1200)  # a second tracker, 10 cents off
    third = true * 2 ** (-8 / 1200)
    out = vote([octave_up, other, third])
    assert np.all(np.abs(1200 * np.log2(out / true)) < 20)
    np.testing.assert_array_equal(out[:20], true[:20])  # the first track's value wherever it is in the pair


def test_voicing_needs_two_and_disagreement_follows_the_previous_frame():
    a = np.array([100.0, 100, 100, 0, 0, 200, 100])
    b = np.array([100.0, 0, 201, 0, 150, 300, 0])
    c = np.array([0.0, 0, 0, 0, 0, 0, 0])
    out = vote([a, b, c])
    assert out[0] == 100 and out[1] == 0 and out[3] == 0 and out[4] == 0 and out[6] == 0
    assert out[2] == 100  # 100 vs 201 disagree: nearer the previous frame's 100
    assert out[5] == 200  # a new voiced run with no agreement: the first track
    with pytest.raises(ValueError, match="two"):
        vote([a])


def test_vote_extractor_reads_a_low_voice_and_a_high_note():
    """A 90 Hz buzz (low male voice, FCPE's weak range) and a 1175 Hz tone (above FCPE's ceiling) are both read."""
    t = np.arange(SR) / SR
    ex = get_f0_extractor("vote", SR, 160, f0_max=2000)
    for hz in (90.0, 440.0, 1175.0):
        y = sum(0.3 / k * np.sin(2 * np.pi * hz * k * t) for k in range(1, 12) if hz * k < SR / 2).astype(np.float32)
        raw = ex.compute(y).raw[10:-10]
        assert np.mean(raw > 0) > 0.9, hz
        assert np.median(np.abs(1200 * np.log2(raw[raw > 0] / hz))) < 20, hz

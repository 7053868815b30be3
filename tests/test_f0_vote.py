"""svc_pl.data.f0_vote and ``--f0 vote``: one tracker's octave error is outvoted by the two that agree."""

from types import SimpleNamespace

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


def _buzz(hz, seconds=1.0):
    t = np.arange(int(SR * seconds)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * hz * k * t) for k in range(1, 12) if hz * k < SR / 2).astype(np.float32)


def test_crepe_reads_only_the_frames_asked_for_and_reads_them_as_a_full_run():
    crepe = get_f0_extractor("crepe", SR, 160, crepe_model="tiny")
    # a glide, so that every frame's pitch differs and a wrong frame mapping would show
    y = (0.5 * np.sin(2 * np.pi * np.cumsum(np.linspace(150, 300, SR)) / SR)).astype(np.float32)
    full = crepe.compute(y).raw
    mask = np.zeros(len(full), bool)
    mask[30:45] = True
    mask[70:72] = True
    part = crepe.compute(y, frames=mask).raw
    read, total = crepe.last_frames_read
    assert read < total / 2  # the network skipped most of the clip
    np.testing.assert_allclose(part[mask], full[mask], rtol=1e-4)
    assert np.all(part[:20] == 0) and np.all(part[90:] == 0)  # frames not asked for and not near: no pitch
    with pytest.raises(ValueError, match="frames mask"):
        crepe.compute(y, frames=mask[:-1])


def test_vote_runs_crepe_only_where_fcpe_and_praat_leave_it_open():
    ex = get_f0_extractor("vote", SR, 160)
    fcpe, crepe, pm = ex.members
    steady = _buzz(220.0)
    out = ex.compute(steady).raw
    read, total = crepe.last_frames_read
    assert read < 0.3 * total  # FCPE and Praat agree on a steady buzz but for its edges
    full = vote([m.compute(steady).raw for m in ex.members])  # CREPE read everywhere: the same track
    np.testing.assert_allclose(out, np.where(full >= 50, full, 0), rtol=1e-6)

    class OctaveDownPraat:  # Praat settling on F0/2 over frames 40-59, as it does on some sung notes
        def compute(self, audio, n_frames=None, frames=None):
            track = pm.compute(audio, n_frames)
            raw = track.raw.copy()
            raw[40:60] /= 2
            return SimpleNamespace(raw=raw)

    ex.members = [fcpe, crepe, OctaveDownPraat()]
    out = ex.compute(steady).raw
    assert crepe.last_frames_read[0] >= read + 20  # CREPE was asked about the open frames
    assert np.all(np.abs(1200 * np.log2(out[40:60] / 220.0)) < 20)  # and outvoted Praat there

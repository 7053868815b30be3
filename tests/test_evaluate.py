"""svc-pl evaluate: F0 agreement figures on tones and real speech, JSON and PNG output."""

import json

import librosa
import numpy as np
import pytest
import soundfile as sf

from svc_pl.cli import main as cli_main
from svc_pl.evaluate import evaluate_f0
from tests.speech import synth_speech

SR = 44100


def _tone(hz, seconds=3.0):
    t = np.arange(int(SR * seconds)) / SR
    y = 0.3 * np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(2 * np.pi * 2 * hz * t)
    y[int(1.2 * SR):int(1.6 * SR)] = 0
    return (y + 0.003 * np.random.default_rng(1).standard_normal(len(y))).astype(np.float32)


@pytest.mark.parametrize("method", ["fcpe", "pm"])
def test_octave_transposition_is_near_zero_error(method):
    res = evaluate_f0(_tone(220), _tone(440), SR, SR, transpose=12, method=method)
    assert res.n_voiced_frames > 100
    assert abs(res.f0_median_cents) < 5 and res.f0_rms_cents < 20 and res.vuv_agreement > 0.9


def test_detuned_copy_gives_its_detuning_back():
    res = evaluate_f0(_tone(220), _tone(220 * 2 ** (30 / 1200)), SR, SR, transpose=0, method="fcpe")
    assert abs(res.f0_median_cents - 30) < 2 and abs(res.f0_mean_cents - 30) < 2
    assert res.f0_gross_error_rate == 0.0


def test_real_speech_pitch_shift(tmp_path):
    path = synth_speech(tmp_path / "s.wav", "The quick brown fox jumps over the lazy dog.")
    y, sr = sf.read(path, dtype="float32")
    shifted = librosa.effects.pitch_shift(y, sr=sr, n_steps=3)
    res = evaluate_f0(y, shifted, sr, sr, transpose=3, method="fcpe")
    assert abs(res.f0_median_cents) < 30 and abs(res.f0_mean_cents) < 30 and res.vuv_agreement > 0.8
    wrong = evaluate_f0(y, shifted, sr, sr, transpose=0, method="fcpe")
    assert abs(wrong.f0_median_cents - 300) < 40


def test_cli_writes_json_and_png(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", _tone(220), SR)
    sf.write(tmp_path / "b.flac", _tone(440), SR)
    code = cli_main(["evaluate", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), "--transpose", "12", "--json",
                     str(tmp_path / "r.json"), "--plot", str(tmp_path / "f0.png"), "--no-transcribe"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("f0_median_cents", "f0_rms_cents", "f0_mean_cents", "vuv_agreement", "f0_gross_error_rate",
                "n_voiced_frames", "method", "transpose"):
        assert key in report
    assert abs(report["f0_median_cents"]) < 5
    assert report["check_method"] == "pm" and report["reference_agreement"] > 0.9
    assert cli_main(["evaluate", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), "--transpose", "12", "--json",
                     str(tmp_path / "r1.json"), "--no-transcribe", "--no-f0-check"]) == 0
    unchecked = json.loads((tmp_path / "r1.json").read_text())
    assert unchecked["check_method"] is None and unchecked["reference_agreement"] is None
    assert (tmp_path / "f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "f0_median_cents" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["source", "converted", "reference"])
def test_missing_file_is_named(tmp_path, capsys, which):
    sf.write(tmp_path / "a.wav", _tone(220), SR)
    files = {"source": tmp_path / "a.wav", "converted": tmp_path / "a.wav", "reference": tmp_path / "a.wav"}
    files[which] = tmp_path / f"missing_{which}.wav"
    argv = ["evaluate", str(files["source"]), str(files["converted"]), "--f0", "pm"]
    if which == "reference":
        argv += ["--target-reference", str(files["reference"])]
    assert cli_main(argv) != 0
    assert f"missing_{which}.wav" in capsys.readouterr().err


def test_rmvpe_without_weights_says_so(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", _tone(220, seconds=0.5), SR)
    assert cli_main(["evaluate", str(tmp_path / "a.wav"), str(tmp_path / "a.wav"), "--f0", "rmvpe"]) != 0
    assert "rmvpe" in capsys.readouterr().err.lower()


def test_silence_gives_nan_figures_not_a_crash():
    quiet = np.zeros(SR, dtype=np.float32)
    res = evaluate_f0(quiet, _tone(220, seconds=1.0), SR, SR, method="pm")
    assert res.n_voiced_frames == 0 and np.isnan(res.f0_median_cents) and res.vuv_agreement < 0.5


def test_speaker_similarity_prefers_the_same_voice(tmp_path):
    a = synth_speech(tmp_path / "a1.wav", "The quick brown fox jumps over the lazy dog.", voice="en+f3", pitch=70)
    b = synth_speech(tmp_path / "a2.wav", "Singing voice conversion keeps the melody.", voice="en+f3", pitch=70)
    c = synth_speech(tmp_path / "b1.wav", "Singing voice conversion keeps the melody.", voice="en+m3", pitch=20)
    code = cli_main(["evaluate", str(c), str(b), "--target-reference", str(a), "--json", str(tmp_path / "r.json"),
                     "--f0", "pm", "--no-transcribe"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["similarity_to_target"] > report["similarity_to_source"]


def test_speaker_similarity_without_the_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    import svc_pl.evaluate

    def no_f0_work(*a, **k):
        raise AssertionError("the missing extra must be reported before the F0 work")

    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    monkeypatch.setattr(svc_pl.evaluate, "evaluate_f0", no_f0_work)
    sf.write(tmp_path / "a.wav", _tone(220), SR)
    assert cli_main(["evaluate", str(tmp_path / "a.wav"), str(tmp_path / "a.wav"), "--target-reference",
                     str(tmp_path / "a.wav"), "--f0", "pm"]) != 0
    assert 'pip install "svc_pl[speaker]"' in capsys.readouterr().err


def test_a_target_above_fcpes_range_is_read_by_the_check_tracker():
    """FCPE cannot read a 1175 Hz voice (unvoiced or a subharmonic); a source at 440 Hz sung 17 semitones up lands
    there, and the conversion that hits it must not count as wrong."""
    target_hz = 440 * 2 ** (17 / 12)
    res = evaluate_f0(_tone(440), _tone(target_hz), SR, SR, transpose=17, method="fcpe")
    assert res.check_method == "pm" and res.n_voiced_frames > 100
    assert res.f0_gross_error_rate == 0.0 and res.f0_median_cents < 5
    alone = evaluate_f0(_tone(440), _tone(target_hz), SR, SR, transpose=17, method="fcpe", check_method=None)
    assert alone.n_voiced_frames < 10 or alone.f0_gross_error_rate > 0.5  # what the check is for


def test_source_frames_the_trackers_disagree_on_are_not_judged(monkeypatch):
    """A primary tracker that reads part of the source an octave up (FCPE does on low male voices) must not turn a
    right conversion into gross errors: those frames are left out and their share reported."""
    import svc_pl.data.pitch as pitch

    real = pitch.get_f0_extractor
    calls = []

    class OctaveUpOnSource:
        name = "fcpe"

        def __init__(self, inner):
            self.inner = inner

        def compute(self, audio, n_frames=None):
            track = self.inner.compute(audio, n_frames)
            calls.append(1)
            if len(calls) == 1:  # the first signal read is the source
                track.raw[30:90] = np.where(track.raw[30:90] > 0, track.raw[30:90] * 2, 0)
            return track

    def patched(method, *a, **k):
        ex = real(method, *a, **k)
        return OctaveUpOnSource(ex) if method == "fcpe" else ex

    monkeypatch.setattr(pitch, "get_f0_extractor", patched)
    checked = evaluate_f0(_tone(220), _tone(440), SR, SR, transpose=12, method="fcpe")
    assert checked.f0_gross_error_rate == 0.0 and 0.5 < checked.reference_agreement < 0.9
    calls.clear()
    unchecked = evaluate_f0(_tone(220), _tone(440), SR, SR, transpose=12, method="fcpe", check_method=None)
    assert unchecked.f0_gross_error_rate > 0.15 and np.isnan(unchecked.reference_agreement)

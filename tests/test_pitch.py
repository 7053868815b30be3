"""F0 extraction: accuracy on tones, voicing and cross-method agreement on real (espeak-ng) speech, RMVPE loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.data.pitch import METHODS, PitchTrack, f0_to_coarse, get_f0_extractor, interpolate_unvoiced
from svc_pl.data.rmvpe import RMVPE, RMVPEWeightsError
from svc_pl.errors import CheckpointMismatchError, UserFacingError
from tests.speech import speech_with_pause

SR, HOP = 44100, 512
FAST = ("pm", "dio", "harvest", "crepe", "fcpe")  # crepe as "tiny" here; "full" is in a slow test


@pytest.fixture(scope="module")
def extractors() -> dict:
    return {m: get_f0_extractor(m, SR, HOP, device="cpu", crepe_model="tiny") for m in FAST}


def harmonic_tone(f0: np.ndarray, seed: int = 0) -> np.ndarray:
    """Five-harmonic tone following ``f0`` (Hz per sample), plus -60 dB noise (Harvest finds no F0 in a pure sine)."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
    return (y + 1e-3 * np.random.default_rng(seed).standard_normal(len(y))).astype(np.float32)


def tone_cases() -> dict[str, np.ndarray]:
    n = int(1.2 * SR)
    return {
        "220Hz": np.full(n, 220.0),
        "440Hz": np.full(n, 440.0),
        "glide": 200.0 * 2 ** (np.arange(n) / n),  # one octave up, 200 -> 400 Hz
    }


def check_track(track: PitchTrack, n: int) -> None:
    for a in (track.f0, track.voiced, track.raw):
        assert a.shape == (n,) and a.dtype == np.float32
    assert set(np.unique(track.voiced)) <= {0.0, 1.0}
    assert np.array_equal(track.voiced > 0, track.raw > 0)
    assert np.all((track.raw == 0) | ((track.raw >= 50) & (track.raw <= 1100)))


@pytest.mark.parametrize("case", ["220Hz", "440Hz", "glide"])
@pytest.mark.parametrize("method", FAST)
def test_tone_accuracy(extractors, method, case):
    truth = tone_cases()[case]
    track = extractors[method].compute(harmonic_tone(truth))
    n = len(truth) // HOP
    check_track(track, n)
    voiced = track.voiced > 0
    assert voiced.mean() > 0.8
    expected = truth[np.arange(n) * HOP]  # frame j sits at j * hop samples
    err = np.abs(track.raw[voiced] / expected[voiced] - 1)
    assert np.median(err) < 0.01, f"{method} {case}: median error {np.median(err):.2%}"


@pytest.mark.slow
def test_crepe_full_tone():
    truth = np.full(int(0.5 * SR), 330.0)
    track = get_f0_extractor("crepe", SR, HOP, device="cpu", crepe_model="full").compute(harmonic_tone(truth))
    check_track(track, len(truth) // HOP)
    assert abs(np.median(track.raw[track.voiced > 0]) / 330.0 - 1) < 0.01


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[np.ndarray, int, int]:
    """espeak-ng speech at 44.1 kHz with 1 s of silence; returns (audio, first, last) pause frame (margins trimmed)."""
    import librosa

    path, start, end = speech_with_pause(tmp_path_factory.mktemp("speech") / "speech.wav")
    y, sr = sf.read(path, dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=SR).astype(np.float32)
    return y, start * SR // sr // HOP + 3, end * SR // sr // HOP - 3


@pytest.fixture(scope="module")
def speech_tracks(extractors, speech) -> dict[str, PitchTrack]:
    return {m: e.compute(speech[0]) for m, e in extractors.items()}


@pytest.mark.parametrize("method", FAST)
def test_speech_voicing(speech, speech_tracks, method):
    y, lo, hi = speech
    track = speech_tracks[method]
    check_track(track, len(y) // HOP)
    outside = np.r_[track.voiced[:lo], track.voiced[hi:]]
    assert outside.mean() > 0.3, "speech should be largely voiced"
    assert not track.voiced[lo:hi].any(), "the silent pause must be unvoiced"
    # the pause is bridged by interpolation, never left at 0 Hz
    assert np.all(track.f0[lo:hi] >= 50) and np.all(track.f0 > 0)
    assert 70 < np.median(track.raw[track.voiced > 0]) < 200  # espeak-ng's default male voice


def test_speech_methods_agree(speech_tracks):
    for i, a in enumerate(FAST):
        for b in FAST[i + 1:]:
            ta, tb = speech_tracks[a], speech_tracks[b]
            both = (ta.voiced > 0) & (tb.voiced > 0)
            assert both.sum() > 100
            cents = 1200 * np.abs(np.log2(ta.raw[both] / tb.raw[both]))
            assert np.median(cents) < 50, f"{a} vs {b}: median {np.median(cents):.1f} cents apart"


@pytest.mark.parametrize("method", FAST)
def test_silence_and_lengths(extractors, method):
    e = extractors[method]
    silent = e.compute(np.zeros(SR // 2, np.float32))
    check_track(silent, SR // 2 // HOP)
    assert not silent.voiced.any() and not silent.f0.any()
    y = harmonic_tone(np.full(SR // 2, 300.0))
    for n in (len(y) // HOP - 2, len(y) // HOP + 3):
        check_track(e.compute(y, n_frames=n), n)
    check_track(e.compute(y[: HOP - 1]), 0)


def test_fcpe_keeps_stdout_clean(extractors, capsys):
    loud = 1.2 * np.sign(np.sin(2 * np.pi * 200 * np.arange(SR // 2) / SR)).astype(np.float32)  # past full scale
    track = extractors["fcpe"].compute(loud)
    assert capsys.readouterr().out == ""
    assert abs(np.median(track.raw[track.voiced > 0]) / 200 - 1) < 0.01


def test_interpolate_unvoiced():
    f0, voiced = interpolate_unvoiced(np.array([0, 0, 100, 0, 0, 0, 200, 0], np.float32))
    np.testing.assert_allclose(f0, [100, 100, 100, 125, 150, 175, 200, 200])
    np.testing.assert_array_equal(voiced, [0, 0, 1, 0, 0, 0, 1, 0])
    assert f0.dtype == voiced.dtype == np.float32
    f0, voiced = interpolate_unvoiced(np.array([0, 0, 150, 0], np.float32))  # one voiced frame fills everything
    np.testing.assert_allclose(f0, 150)
    f0, voiced = interpolate_unvoiced(np.zeros(5))
    assert f0.shape == voiced.shape == (5,) and not f0.any() and not voiced.any()
    f0, voiced = interpolate_unvoiced(np.zeros(0))
    assert f0.shape == voiced.shape == (0,)


def test_f0_to_coarse_numpy_and_torch():
    hz = np.array([0.0, 30.0, 50.0, 440.0, 1100.0], np.float32)
    coarse = f0_to_coarse(hz)
    assert isinstance(coarse, np.ndarray) and coarse[0] == coarse[1] == coarse[2] == 1 and coarse[-1] == 255
    assert 1 < coarse[3] < 255
    np.testing.assert_array_equal(f0_to_coarse(torch.from_numpy(hz)).numpy(), coarse)


def test_bad_inputs(extractors):
    with pytest.raises(ValueError, match="pm, dio, harvest, crepe, fcpe, rmvpe"):
        get_f0_extractor("yin")
    with pytest.raises(ValueError, match="mono"):
        extractors["pm"].compute(np.zeros((2, SR), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        extractors["dio"].compute(np.full(SR, np.nan, np.float32))
    assert set(FAST) < set(METHODS)


# --- RMVPE ---------------------------------------------------------------------------------------------------

# Every key and shape of upstream's E2E0(4, 1, (2, 2)) (modules/F0Predictor/rmvpe/model.py), which rmvpe.pt
# holds: dumped from upstream's own module, including the 60 tensors of the timbre filter ("unet.tf.*")
# that upstream builds but never runs.
UPSTREAM_STATE = json.loads((Path(__file__).parent / "data" / "rmvpe_upstream_state_dict.json").read_text())
CENTS_OF_BIN0 = 1997.3794084376191  # upstream constants.py CONST: cents of bin 0 relative to 10 Hz, 20 cents a bin


def upstream_layout_state() -> dict[str, torch.Tensor]:
    """A random-weight state_dict in upstream's layout, built from the key list alone (not from our module)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in UPSTREAM_STATE.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
            state[key] = torch.ones(shape)
        elif key.endswith("running_mean") or key.endswith("bias") or "bias_" in key:
            state[key] = torch.zeros(shape)
        else:
            fan_in = max(1, int(np.prod(shape[1:])))
            state[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
    return state


def test_rmvpe_key_layout():
    assert len(UPSTREAM_STATE) == 801
    ours = {k: list(v.shape) for k, v in RMVPE().state_dict().items()}
    expected = {k: v for k, v in UPSTREAM_STATE.items() if not k.startswith("unet.tf.")}
    assert ours.keys() == expected.keys(), sorted(set(ours) ^ set(expected))[:10]
    assert ours == expected


def test_rmvpe_decode_on_a_synthetic_salience_map():
    """Upstream's to_local_average_cents: the salience-weighted mean of the cents of the 9 bins around the peak,
    f0 = 10 * 2^(cents / 1200); 0 where the peak is not above the threshold."""
    s = torch.zeros(1, 6, 360)
    s[0, 0, 100] = 0.9  # a lone peak: exactly bin 100's pitch
    s[0, 1, [49, 50, 51]] = torch.tensor([0.2, 0.8, 0.4])  # skewed towards bin 51
    s[0, 1, 58] = 0.7  # 8 bins from the peak: outside the +-4 window, ignored
    s[0, 2, [0, 1, 2, 5]] = torch.tensor([0.3, 0.6, 0.1, 0.5])  # peak at the low edge: window 0..5
    s[0, 3, [355, 359]] = torch.tensor([0.5, 0.6])  # peak at the top bin: window 355..359
    s[0, 4, 200] = 0.04  # below the 0.05 threshold: unvoiced
    s[0, 5, 10] = 0.051  # just above it
    f0 = RMVPE().decode(s, threshold=0.05)[0].double().numpy()

    def hz(bin_: float) -> float:
        return 10 * 2 ** ((CENTS_OF_BIN0 + 20 * bin_) / 1200)

    expected = [hz(100), hz((49 * 0.2 + 50 * 0.8 + 51 * 0.4) / 1.4), hz((0 * 0.3 + 1 * 0.6 + 2 * 0.1 + 5 * 0.5) / 1.5),
                hz((355 * 0.5 + 359 * 0.6) / 1.1), 0.0, hz(10)]
    np.testing.assert_allclose(f0, expected, rtol=1e-5)
    assert 100.64 < hz(100) < 100.65  # 10 Hz * 2^(3997.38 / 1200), by hand


@pytest.mark.parametrize("wrapped", [True, False], ids=["so-vits-svc", "bare-state-dict"])
def test_rmvpe_loads_and_runs(tmp_path, monkeypatch, wrapped):
    state = upstream_layout_state()
    path = tmp_path / "rmvpe.pt"
    torch.save({"model": state} if wrapped else state, path)
    e = get_f0_extractor("rmvpe", SR, HOP, device="cpu", model_path=str(path))
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    y = harmonic_tone(np.full(SR // 2, 220.0))
    for _ in range(2):
        check_track(e.compute(y), len(y) // HOP)
    assert not loads, "the model must be loaded once, at construction"
    check_track(e.compute(y, n_frames=len(y) // HOP + 2), len(y) // HOP + 2)


def test_rmvpe_bad_weights(tmp_path):
    for path in (None, tmp_path / "nowhere" / "rmvpe.pt"):
        with pytest.raises(RMVPEWeightsError, match="rmvpe.zip") as info:
            get_f0_extractor("rmvpe", model_path=None if path is None else str(path))
        assert "model_path" in str(info.value) and isinstance(info.value, UserFacingError)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RMVPEWeightsError, match="junk.pt"):
        get_f0_extractor("rmvpe", model_path=str(junk))
    state = upstream_layout_state()
    state["fc.1.weight"] = torch.zeros(10, 512)
    del state["cnn.bias"]
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": state}, wrong)
    with pytest.raises(CheckpointMismatchError, match="fc.1.weight") as info:
        get_f0_extractor("rmvpe", model_path=str(wrong))
    assert "cnn.bias" in str(info.value) and "rmvpe.zip" in str(info.value)

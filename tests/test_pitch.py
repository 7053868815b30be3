"""F0 extraction: accuracy on tones, voicing and cross-method agreement on real (espeak-ng) speech, RMVPE loading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.data.pitch import METHODS, PitchTrack, f0_to_coarse, get_f0_extractor, interpolate_unvoiced
from svc_pl.data.rmvpe import RMVPE, ResConvBlock, RMVPEWeightsError
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

# Keys and shapes of upstream's E2E0(4, 1, (2, 2)) (modules/F0Predictor/rmvpe), which rmvpe.pt holds.
UPSTREAM_KEYS = {
    "unet.encoder.bn.weight": (1,),
    "unet.encoder.layers.0.conv.0.conv.0.weight": (16, 1, 3, 3),
    "unet.encoder.layers.0.conv.0.conv.1.running_var": (16,),
    "unet.encoder.layers.0.conv.0.shortcut.weight": (16, 1, 1, 1),
    "unet.encoder.layers.4.conv.3.conv.4.bias": (256,),
    "unet.intermediate.layers.0.conv.0.shortcut.weight": (512, 256, 1, 1),
    "unet.intermediate.layers.3.conv.3.conv.3.weight": (512, 512, 3, 3),
    "unet.decoder.layers.0.conv1.0.weight": (512, 256, 3, 3),
    "unet.decoder.layers.0.conv2.0.shortcut.bias": (256,),
    "unet.decoder.layers.4.conv1.1.num_batches_tracked": (),
    "unet.decoder.layers.4.conv2.3.conv.0.weight": (16, 16, 3, 3),
    "cnn.weight": (3, 16, 3, 3),
    "fc.0.gru.weight_ih_l0": (768, 384),
    "fc.0.gru.weight_hh_l0_reverse": (768, 256),
    "fc.1.weight": (360, 512),
}
N_UPSTREAM_KEYS = 801  # 741 + 60 of the timbre filter upstream builds but never runs


def upstream_layout_state() -> dict[str, torch.Tensor]:
    """Random-weight RMVPE state_dict as upstream saves it, including its unused timbre-filter tensors."""
    torch.manual_seed(0)
    state = RMVPE().state_dict()
    for i, channels in enumerate((16, 32, 64, 128, 256)):
        for k, v in ResConvBlock(channels, channels).state_dict().items():
            state[f"unet.tf.layers.{i}.{k}"] = v
    return state


def test_rmvpe_key_layout():
    state = upstream_layout_state()
    assert len(state) == N_UPSTREAM_KEYS
    for key, shape in UPSTREAM_KEYS.items():
        assert tuple(state[key].shape) == shape, key


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

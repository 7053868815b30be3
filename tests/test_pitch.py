"""F0 extractors on synthetic tones and real espeak-ng speech."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.data.pitch import METHODS, get_f0_extractor, interpolate_unvoiced
from svc_pl.errors import UserFacingError
from tests.speech import speech_with_pause

SR, HOP = 44100, 512
FAST = ["pm", "dio", "harvest", "crepe", "fcpe"]


def _tone(hz, seconds=1.5, gap=(0.6, 0.9)):
    t = np.arange(int(SR * seconds)) / SR
    y = 0.3 * np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(2 * np.pi * 2 * hz * t)
    y[int(gap[0] * SR):int(gap[1] * SR)] = 0
    # a little noise, as any recording has (WORLD's harvest rejects mathematically clean tones as unvoiced)
    y += 0.003 * np.random.default_rng(0).standard_normal(len(y))
    return y.astype(np.float32)


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("hz", [220.0, 440.0])
def test_tone_within_one_percent(method, hz):
    y = _tone(hz)
    track = get_f0_extractor(method, SR, HOP).compute(y)
    n = len(y) // HOP
    assert track.f0.shape == track.voiced.shape == track.raw.shape == (n,)
    voiced = track.raw[track.voiced > 0]
    assert len(voiced) > n * 0.5
    assert abs(np.median(voiced) / hz - 1) < 0.01, np.median(voiced)
    gap = slice(int(0.65 * SR / HOP), int(0.85 * SR / HOP))
    assert track.voiced[gap].mean() < 0.5  # the silent gap is unvoiced
    assert np.all(track.f0 > 0)  # interpolated across the gap


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path, a, b = speech_with_pause(tmp_path_factory.mktemp("sp") / "s.wav", pause_s=1.0)
    y, sr = sf.read(path, dtype="float32")
    return librosa.resample(y, orig_sr=sr, target_sr=SR), a * SR // sr, b * SR // sr


def test_speech_methods_find_voicing_and_agree(speech):
    y, a, b = speech
    # crepe's tiny net here: the full one is covered by the tone tests and costs a minute on speech
    tracks = {m: get_f0_extractor(m, SR, HOP, crepe_model="tiny").compute(y) for m in FAST}
    pause = slice(a // HOP + 20, b // HOP - 5)
    for m, tr in tracks.items():
        assert tr.voiced[: a // HOP].mean() > 0.3, m
        assert tr.voiced[pause].max() == 0, m
    ref = tracks["harvest"]
    for m, tr in tracks.items():
        both = (tr.voiced > 0) & (ref.voiced > 0)
        cents = 1200 * np.abs(np.log2(tr.raw[both] / ref.raw[both]))
        assert both.sum() > 50 and np.median(cents) < 100, (m, np.median(cents))


def test_interpolation_edges_and_silence():
    f0, v = interpolate_unvoiced(np.array([0, 0, 100, 0, 200, 0], dtype=np.float32))
    assert f0.tolist() == [100, 100, 100, 150, 200, 200] and v.tolist() == [0, 0, 1, 0, 1, 0]
    track = get_f0_extractor("pm", SR, HOP).compute(np.zeros(SR, np.float32))
    assert track.voiced.sum() == 0 and np.all(track.f0 == 0)
    with pytest.raises(ValueError, match="pm"):
        get_f0_extractor("yin")
    assert set(METHODS) == {"pm", "dio", "harvest", "crepe", "fcpe", "rmvpe"}


def test_rmvpe_with_random_weights_and_bad_path(tmp_path):
    from svc_pl.data.rmvpe import RMVPE

    torch.manual_seed(0)
    torch.save({"model": RMVPE().state_dict()}, tmp_path / "rmvpe.pt")
    track = get_f0_extractor("rmvpe", SR, HOP, model_path=str(tmp_path / "rmvpe.pt")).compute(_tone(220.0))
    assert track.f0.shape == (len(_tone(220.0)) // HOP,)
    assert np.all((track.raw == 0) | ((track.raw >= 50) & (track.raw <= 1100)))
    with pytest.raises(UserFacingError, match="rmvpe"):
        get_f0_extractor("rmvpe", SR, HOP, model_path=str(tmp_path / "missing.pt")).compute(_tone(220.0))

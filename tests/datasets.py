"""Small preprocessed datasets for tests, built from real espeak-ng speech.

The units are a fixed random projection of the log-mel (a stand-in for a content encoder, which
cannot be downloaded here); F0 comes from parselmouth; everything else is the real on-disk format.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import parselmouth
import soundfile as sf
import torch

from svc_pl.data.layout import DatasetInfo, save_bundle, write_filelist
from tests.speech import synth_speech

PHRASES = ["The quick brown fox jumps over the lazy dog.", "Singing voice conversion keeps the melody.",
           "She sells sea shells by the sea shore.", "A journey of a thousand miles begins with one step."]


def _f0_pm(y: np.ndarray, sr: int, hop: int, n: int) -> np.ndarray:
    pitch = parselmouth.Sound(y, sr).to_pitch_ac(time_step=hop / sr, voicing_threshold=0.6, pitch_floor=50,
                                                 pitch_ceiling=1100)
    f0 = pitch.selected_array["frequency"]
    pad = (n - len(f0) + 1) // 2
    f0 = np.pad(f0, [[max(pad, 0), max(n - len(f0) - pad, 0)]])[:n]
    return f0.astype(np.float32)


def make_dataset(root: Path, sr: int = 16000, hop: int = 320, unit_dim: int = 32, voices=("en", "en+f3"),
                 clips_per_voice: int = 3, n_fft: int = 1024, phrases: list[str] | None = None) -> Path:
    root = Path(root)
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((unit_dim, 80)).astype(np.float32) / 9
    speakers, train, val = {}, [], []
    for s, voice in enumerate(voices):
        name = f"spk{s}"
        speakers[name] = s
        for i in range(clips_per_voice):
            texts = phrases or PHRASES
            wav = synth_speech(root / "raw" / name / f"{i}.wav", texts[i % len(texts)], voice=voice,
                               pitch=40 + 20 * s)
            y, file_sr = sf.read(wav, dtype="float32")
            y = librosa.resample(y, orig_sr=file_sr, target_sr=sr).astype(np.float32)
            y = 0.9 * y / max(1e-3, np.abs(y).max())
            n = len(y) // hop
            y = y[: n * hop]
            mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop,
                                                                     n_mels=80, center=True))[:, :n]
            units = proj @ ((mel + 40) / 40)
            raw = _f0_pm(y, sr, hop, n)
            voiced = (raw > 0).astype(np.float32)
            f0 = raw.copy()
            if voiced.any():
                idx = np.nonzero(voiced)[0]
                f0 = np.interp(np.arange(n), idx, raw[idx]).astype(np.float32)
            volume = np.sqrt(np.mean(librosa.util.frame(np.pad(y, (hop // 2, hop)), frame_length=hop,
                                                        hop_length=hop)[:, :n] ** 2, axis=0)).astype(np.float32)
            rel = f"{name}/{i}.pt"
            save_bundle(root / "data" / rel, {
                "audio": torch.from_numpy(np.round(y * 32767).astype(np.int16)),
                "units": torch.from_numpy(units.astype(np.float16)), "f0": torch.from_numpy(f0),
                "voiced": torch.from_numpy(voiced), "volume": torch.from_numpy(volume)})
            (val if i == clips_per_voice - 1 else train).append(rel)
    DatasetInfo(speakers=speakers, sampling_rate=sr, hop_length=hop, filter_length=n_fft, win_length=n_fft,
                content_encoder="random-test", unit_dim=unit_dim, f0_method="pm").save(root / "data")
    write_filelist(root / "data" / "train.txt", train)
    write_filelist(root / "data" / "val.txt", val)
    return root / "data"

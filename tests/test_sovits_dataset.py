"""Reading a so-vits-svc 4.1 preprocessed dataset in place."""

import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.data.datamodule import SVCDataModule
from svc_pl.data.dataset import collate
from svc_pl.data.sovits_dataset import load_npy_safe
from svc_pl.errors import UserFacingError

HOP = 512


def _make_sovits_tree(root, fixture_dir, n=3, interpolate="nearest"):
    """so-vits-svc 4.1 preprocessed clips whose every feature says which frame it belongs to: F0 = 100 +
    frame, voiced in runs of 3 frames, volume = frame / 1000, audio a ramp over the clip (sample j holds
    j / 2^20 plus a 330 Hz sine, so no two frames look alike), units (1, 48, frames // 2 + 3) with unit u
    holding u + channel / 100, as so-vits-svc stores them before stretching to the frame rate."""
    cfg = json.loads((fixture_dir / "config.json").read_text())
    cfg["data"]["training_files"] = "filelists/train.txt"
    cfg["data"]["validation_files"] = "filelists/val.txt"
    cfg["data"]["unit_interpolate_mode"] = interpolate
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "config.json").write_text(json.dumps(cfg))
    lines = []
    for spk in ("speaker0", "speaker1"):
        d = root / "dataset" / "44k" / spk
        d.mkdir(parents=True)
        for i in range(n):
            frames = 60 + 10 * i
            wav = d / f"{i}.wav"
            sf.write(wav, _audio(frames), 44100, subtype="FLOAT")
            f0 = 100.0 + np.arange(frames, dtype=np.float32)
            uv = ((np.arange(frames) // 3) % 2).astype(np.float32)
            np.save(f"{wav}.f0.npy", np.asanyarray((f0, uv), dtype=object))
            n_units = frames // 2 + 3
            units = np.arange(n_units, dtype=np.float32)[None, :] + np.arange(48, dtype=np.float32)[:, None] / 100
            torch.save(torch.from_numpy(units[None]), f"{wav}.soft.pt")
            np.save(f"{wav}.vol.npy", np.arange(frames, dtype=np.float32) / 1000)
            lines.append(f"./dataset/44k/{spk}/{i}.wav")
    (root / "filelists").mkdir()
    (root / "filelists" / "train.txt").write_text("\n".join(lines[:-1]) + "\n")
    (root / "filelists" / "val.txt").write_text(lines[-1] + "\n")
    return root


def _audio(frames: int) -> np.ndarray:
    j = np.arange(frames * HOP)
    return (j / 2**20 + 0.1 * np.sin(2 * np.pi * 330 * j / 44100)).astype(np.float32)


@pytest.mark.parametrize("interpolate", ["nearest", "left"])
def test_reads_sovits_layout(tmp_path, fixture_dir, interpolate):
    root = _make_sovits_tree(tmp_path / "sovits", fixture_dir, interpolate=interpolate)
    dm = SVCDataModule(str(root), batch_size=2, num_workers=0, max_frames=50)
    assert dm.dataset_info["unit_dim"] == 48 and dm.dataset_info["n_speakers"] == 2
    dm.setup("fit")
    starts = set()
    for index in range(len(dm.train_set)):
        frames = 60 + 10 * (index % 3)
        n_units = frames // 2 + 3
        for epoch in range(3):
            item = dm.train_set[(index, epoch)]
            assert item["units"].shape == (48, 50) and item["spec"].shape == (1025, 50)
            assert item["audio"].shape == (50 * HOP,)
            start = int(item["f0"][0]) - 100  # the crop's first frame, read off the F0 ramp
            starts.add(start)
            assert 0 <= start <= frames - 50
            rows = np.arange(start, start + 50)
            np.testing.assert_array_equal(item["f0"].numpy(), 100.0 + rows)
            np.testing.assert_array_equal(item["voiced"].numpy(), (rows // 3) % 2)
            np.testing.assert_allclose(item["volume"].numpy(), rows / 1000, rtol=0, atol=1e-7)
            np.testing.assert_array_equal(item["audio"].numpy(), _audio(frames)[start * HOP:(start + 50) * HOP])
            # units stretched from frames // 2 + 3 to frames: frame f takes unit floor(f * n_units / frames)
            unit = item["units"][0].numpy()
            np.testing.assert_array_equal(unit, np.floor(rows * n_units / frames))
            np.testing.assert_allclose(item["units"][:, 0].numpy(), unit[0] + np.arange(48) / 100, atol=1e-6)
            spec = dm.train_set.spectrogram(item["audio"].unsqueeze(0))[0]
            assert torch.allclose(item["spec"], spec)  # the crop's own audio, not the clip's start
    assert len(starts) > 3  # crops move with the epoch and the clip
    batch = collate([dm.train_set[i] for i in range(2)])
    assert batch.units.shape[0] == 2 and set(batch.speaker.tolist()) <= {0, 1}


def test_malicious_npy_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "x.wav.f0.npy"
    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_npy_safe(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_sovits_features_name_the_file(tmp_path, fixture_dir):
    root = _make_sovits_tree(tmp_path / "sovits", fixture_dir, n=2)
    for p in root.rglob("0.wav.soft.pt"):
        p.unlink()
    dm = SVCDataModule(str(root), batch_size=1, num_workers=0)
    dm.setup("fit")
    with pytest.raises(UserFacingError, match="0.wav"):
        for i in range(len(dm.train_set)):
            dm.train_set[i]


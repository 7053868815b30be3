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


def _make_sovits_tree(root, fixture_dir, n=3):
    cfg = json.loads((fixture_dir / "config.json").read_text())
    cfg["data"]["training_files"] = "filelists/train.txt"
    cfg["data"]["validation_files"] = "filelists/val.txt"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "config.json").write_text(json.dumps(cfg))
    lines = []
    rng = np.random.default_rng(0)
    for spk in ("speaker0", "speaker1"):
        d = root / "dataset" / "44k" / spk
        d.mkdir(parents=True)
        for i in range(n):
            frames = 60 + 10 * i
            wav = d / f"{i}.wav"
            sf.write(wav, (0.3 * np.sin(np.arange(frames * 512) * 2 * np.pi * 220 / 44100)).astype(np.float32), 44100)
            f0 = np.full(frames, 220.0, dtype=np.float32)
            uv = np.ones(frames, dtype=np.float32)
            np.save(f"{wav}.f0.npy", np.asanyarray((f0, uv), dtype=object))
            torch.save(torch.from_numpy(rng.standard_normal((1, 48, frames // 2 + 3)).astype(np.float32)),
                       f"{wav}.soft.pt")
            np.save(f"{wav}.vol.npy", np.full(frames, 0.1, dtype=np.float32))
            lines.append(f"./dataset/44k/{spk}/{i}.wav")
    (root / "filelists").mkdir()
    (root / "filelists" / "train.txt").write_text("\n".join(lines[:-1]) + "\n")
    (root / "filelists" / "val.txt").write_text(lines[-1] + "\n")
    return root


def test_reads_sovits_layout(tmp_path, fixture_dir):
    root = _make_sovits_tree(tmp_path / "sovits", fixture_dir)
    dm = SVCDataModule(str(root), batch_size=2, num_workers=0, max_frames=50)
    assert dm.dataset_info["unit_dim"] == 48 and dm.dataset_info["n_speakers"] == 2
    dm.setup("fit")
    item = dm.train_set[0]
    assert item["units"].shape == (48, 50) and item["spec"].shape == (1025, 50) and item["audio"].shape == (50 * 512,)
    batch = collate([dm.train_set[i] for i in range(2)])
    assert batch.units.shape[0] == 2 and set(batch.speaker.tolist()) <= {0, 1}
    assert torch.allclose(item["volume"], torch.full((50,), 0.1))


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

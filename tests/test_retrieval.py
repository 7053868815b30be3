"""Cluster model and feature index: fit, save, load, mix; so-vits-svc k-means files; the train-index CLI."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from svc_pl.cli import main
from svc_pl.data.layout import DatasetInfo, save_bundle, write_filelist
from svc_pl.errors import UserFacingError
from svc_pl.infer.cluster import ClusterModel
from svc_pl.infer.retrieval import FeatureIndex, collect_units

DIM, CENTRES, FRAMES, HOP = 16, 5, 60, 64


def _make_dataset(root: Path, speakers=("alto", "tenor"), clips: int = 3) -> Path:
    """A preprocessed dataset whose units sit around CENTRES well-separated points per speaker."""
    rng = np.random.default_rng(0)
    train, val = [], []
    for s, name in enumerate(speakers):
        centres = rng.standard_normal((CENTRES, DIM)) * 4 + 10 * s
        for i in range(clips + 1):
            units = centres[rng.integers(0, CENTRES, FRAMES)] + 0.05 * rng.standard_normal((FRAMES, DIM))
            rel = f"{name}/{i}.pt"
            save_bundle(root / rel, {"audio": torch.zeros(FRAMES * HOP, dtype=torch.int16),
                                     "units": torch.from_numpy(units.T.astype(np.float16)),
                                     "f0": torch.full((FRAMES,), 220.0), "voiced": torch.ones(FRAMES)})
            (val if i == clips else train).append(rel)
    DatasetInfo(speakers={n: i for i, n in enumerate(speakers)}, sampling_rate=16000, hop_length=HOP,
                unit_dim=DIM).save(root)
    write_filelist(root / "train.txt", train)
    write_filelist(root / "val.txt", val)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("retrieval") / "data")


@pytest.fixture(scope="module")
def units(dataset) -> dict[str, np.ndarray]:
    return collect_units(dataset)


def test_collect_units(dataset, units):
    assert sorted(units) == ["alto", "tenor"]
    assert all(u.shape == (3 * FRAMES, DIM) and u.dtype == np.float32 for u in units.values())
    assert collect_units(dataset, split="all")["alto"].shape[0] == 4 * FRAMES
    assert collect_units(dataset, max_frames_per_speaker=50)["tenor"].shape == (50, DIM)


def test_cluster_model_roundtrip_and_mix(tmp_path, units):
    model = ClusterModel.fit(units, n_clusters=CENTRES, seed=0)
    model.save(tmp_path / "kmeans.pt")
    raw = torch.load(tmp_path / "kmeans.pt", weights_only=True)  # plain tensors, no extra globals needed
    assert set(raw["centers"]) == {"alto", "tenor"}
    loaded = ClusterModel.load(tmp_path / "kmeans.pt")
    centres = loaded.centers["alto"]
    assert centres.shape == (CENTRES, DIM)

    x = torch.from_numpy(units["alto"][:40].T.copy())  # (D, T)
    assert torch.equal(loaded.mix(x, "alto", 0.0), x)
    snapped = loaded.mix(x, "alto", 1.0)
    assert snapped.shape == x.shape
    expected = centres[torch.cdist(x.T, centres).argmin(dim=1)].T
    assert torch.equal(snapped, expected)  # exactly the nearest centres
    assert torch.allclose(loaded.mix(x, "alto", 0.25), 0.25 * expected + 0.75 * x, atol=1e-5)
    batched = torch.stack([x, x.flip(-1)])  # (B, D, T)
    assert torch.equal(loaded.mix(batched, "alto", 1.0)[1], expected.flip(-1))
    # the k-means found the planted clusters: every frame is within the noise of its centre
    assert (snapped - x).abs().max() < 0.5


def test_cluster_count_capped_at_frames():
    model = ClusterModel.fit({"a": np.random.default_rng(1).standard_normal((7, DIM)).astype(np.float32)},
                             n_clusters=10000, seed=0)
    assert model.centers["a"].shape == (7, DIM)


def _sovits_kmeans(units: dict[str, np.ndarray]) -> dict:
    from sklearn.cluster import MiniBatchKMeans

    out = {}
    for spk, frames in units.items():
        km = MiniBatchKMeans(CENTRES, n_init=1, random_state=0).fit(frames)
        out[spk] = {"n_features_in_": km.n_features_in_, "_n_threads": km._n_threads,
                    "cluster_centers_": km.cluster_centers_}
    return out


def test_loads_sovits_kmeans_file(tmp_path, units):
    ckpt = _sovits_kmeans(units)
    path = tmp_path / "kmeans_10000.pt"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # numpy arrays need the allow-list ClusterModel.load uses
    model = ClusterModel.load(path)
    assert model.speakers == ["alto", "tenor"]
    np.testing.assert_array_equal(model.centers["tenor"].numpy(), ckpt["tenor"]["cluster_centers_"])

    # the same file as written under numpy 1.x, which names numpy.core.multiarray
    old = tmp_path / "kmeans_numpy1.pt"
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info.filename, data)
    old.write_bytes(buf.getvalue())
    centres = ClusterModel.load(old).centers["alto"].numpy()
    np.testing.assert_array_equal(centres, ckpt["alto"]["cluster_centers_"])


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_kmeans_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "kmeans_10000.pt"
    torch.save({"spk": {"n_features_in_": DIM, "_n_threads": 1, "cluster_centers_": _Evil(marker)}}, path)
    assert not marker.exists()
    with pytest.raises(UserFacingError, match="refused to load") as err:
        ClusterModel.load(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_bad_cluster_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserFacingError, match="junk.pt: unreadable"):
        ClusterModel.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserFacingError, match="not a cluster model"):
        ClusterModel.load(tmp_path / "other.pt")
    with pytest.raises(UserFacingError, match="not found"):
        ClusterModel.load(tmp_path / "missing.pt")


def test_feature_index_roundtrip_and_mix(tmp_path, units):
    index = FeatureIndex.build(units, seed=0)
    index.save(tmp_path / "feature_index")
    manifest = json.loads((tmp_path / "feature_index" / "manifest.json").read_text())
    assert set(manifest["speakers"]) == {"alto", "tenor"}
    loaded = FeatureIndex.load(tmp_path / "feature_index")
    assert "IVF" in type(loaded.indexes["alto"]).__name__  # 180 frames -> IVF lists, as upstream sizes them
    np.testing.assert_array_equal(loaded.vectors["alto"], units["alto"])  # reconstructed in id order

    x = torch.from_numpy(units["alto"][:50].T.copy())  # training vectors, (D, T)
    assert torch.equal(loaded.mix(x, "alto", 0.0), x)
    retrieved = loaded.mix(x, "alto", 1.0)
    assert retrieved.shape == x.shape
    assert torch.allclose(retrieved, x, atol=1e-3)  # each vector finds itself at distance 0

    # an unseen frame is pulled onto the speaker's data: closer to its cluster than before
    noisy = x[:, :1] + 0.3 * torch.randn(DIM, 1, generator=torch.Generator().manual_seed(0))
    pulled = loaded.mix(noisy, "alto", 1.0)
    assert (pulled - x[:, :1]).norm() < (noisy - x[:, :1]).norm()
    half = loaded.mix(noisy, "alto", 0.5)
    assert torch.allclose(half, 0.5 * pulled + 0.5 * noisy, atol=1e-5)
    assert loaded.mix(torch.stack([x, x]), "alto", 1.0).shape == (2, DIM, 50)

    # against a brute-force numpy search: each frame's 8 nearest stored vectors, weighted by 1/s^2 where s is
    # the squared L2 distance (so-vits-svc infer_tool: weight = np.square(1 / score), normalised per frame)
    queries = units["alto"][::7] + 0.3 * np.random.default_rng(1).standard_normal((26, DIM)).astype(np.float32)
    q = torch.from_numpy(queries.T.copy())
    expected = _brute_force_retrieval(queries, units["alto"], k=8)
    exact = FeatureIndex.build(units, seed=0, nprobe=1 << 10)  # every IVF list searched: exact neighbours
    np.testing.assert_allclose(exact.mix(q, "alto", 1.0).numpy().T, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(loaded.mix(q, "alto", 0.3).numpy().T, 0.3 * expected + 0.7 * queries, rtol=0,
                               atol=1e-5)  # nprobe 1 finds the same neighbours here: clusters are far apart
    np.testing.assert_allclose(exact.mix(q, "alto", 1.0, k=3).numpy().T,
                               _brute_force_retrieval(queries, units["alto"], k=3), rtol=0, atol=1e-5)


def _brute_force_retrieval(queries: np.ndarray, stored: np.ndarray, k: int) -> np.ndarray:
    """(N, D) queries, (M, D) stored -> (N, D): sum of the k nearest, weighted by (1 / squared distance)^2."""
    d2 = ((queries[:, None, :].astype(np.float64) - stored[None, :, :]) ** 2).sum(-1)  # (N, M)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    weight = 1.0 / np.square(np.take_along_axis(d2, nearest, axis=1))
    weight /= weight.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weight, stored[nearest].astype(np.float64))


def test_small_speaker_gets_flat_index(tmp_path):
    frames = np.random.default_rng(2).standard_normal((20, DIM)).astype(np.float32)
    FeatureIndex.build({"tiny": frames}).save(tmp_path / "fi")
    loaded = FeatureIndex.load(tmp_path / "fi")
    assert type(loaded.indexes["tiny"]).__name__ == "IndexFlatL2"
    out = loaded.mix(torch.from_numpy(frames[:3].T.copy()), "tiny", 1.0, k=50)  # k capped at 20 vectors
    assert torch.allclose(out, torch.from_numpy(frames[:3].T.copy()), atol=1e-4)


def test_bad_index_folders(tmp_path):
    with pytest.raises(UserFacingError, match="no manifest.json"):
        FeatureIndex.load(tmp_path)
    (tmp_path / "feature_and_index.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(UserFacingError, match="pickle"):
        FeatureIndex.load(tmp_path / "feature_and_index.pkl")


def test_unknown_speaker_and_wrong_units(units):
    model = ClusterModel.fit(units, n_clusters=CENTRES, seed=0)
    index = FeatureIndex.build(units)
    x = torch.zeros(DIM, 4)
    for obj in (model, index):
        for ratio in (0.0, 0.5):
            with pytest.raises(UserFacingError, match=r"'bass'.*'alto', 'tenor'"):
                obj.mix(x, "bass", ratio)
        with pytest.raises(UserFacingError, match="built for 16-dim units"):
            obj.mix(torch.zeros(DIM + 1, 4), "alto", 1.0)
        with pytest.raises(UserFacingError, match="outside 0..1"):
            obj.mix(x, "alto", 1.5)


def test_cli_train_index(tmp_path, dataset, capsys):
    out = tmp_path / "out"
    args = ["train-index", str(dataset), "-o", str(out), "--n-clusters", str(CENTRES), "--seed", "1"]
    assert main(args) == 0
    assert ClusterModel.load(out / "kmeans.pt").speakers == ["alto", "tenor"]
    assert FeatureIndex.load(out / "feature_index").speakers == ["alto", "tenor"]

    only = tmp_path / "only"
    assert main(["train-index", str(dataset), "-o", str(only), "--kind", "kmeans", "--n-clusters", "3"]) == 0
    assert (only / "kmeans.pt").is_file() and not (only / "feature_index").exists()

    capsys.readouterr()
    assert main(["train-index", str(tmp_path), "--kind", "index"]) == 2
    err = capsys.readouterr().err
    assert "dataset.json not found" in err and "svc-pl preprocess" in err

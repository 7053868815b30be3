"""Pull content units toward a target speaker's training units (so-vits-svc 4.1's cluster model and
``--feature_retrieval``), and build both from a preprocessed dataset.

* :class:`ClusterModel`: per-speaker k-means centres; ``mix`` replaces every frame by its nearest
  centre, blended with the original. Reads so-vits-svc's ``kmeans_10000.pt`` too, without
  unpickling anything but numpy arrays.
* :class:`FeatureIndex`: per-speaker faiss index of training unit vectors; ``mix`` blends every frame
  with the inverse-distance-weighted average of its nearest training vectors.

Both leave the units unchanged at ``ratio=0``. Nothing here is ever pickled: the cluster model is a
``weights_only`` torch file, the index a folder of faiss files plus ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)

KMEANS_FORMAT = "svc_pl.kmeans"
INDEX_FORMAT = "svc_pl.feature_index"
FORMAT_VERSION = 1
INDEX_MANIFEST = "manifest.json"
REBUILD_HINT = "build one with `svc-pl train-index DATASET_DIR`"


def collect_units(dataset_dir: str | os.PathLike, split: str = "train",
                  max_frames_per_speaker: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Content-unit frames of a preprocessed dataset, grouped by speaker.

    Args:
        dataset_dir: folder with ``dataset.json`` and ``<split>.txt`` (``svc-pl preprocess`` output).
        split: ``"train"``, ``"val"`` or ``"all"`` (both lists).
        max_frames_per_speaker: keep at most this many frames per speaker, drawn at random with ``seed``.

    Returns:
        speaker name -> (N, D) float32 array of unit frames.
    """
    from svc_pl.data.layout import DatasetInfo, load_bundle, read_filelist

    root = Path(dataset_dir)
    info = DatasetInfo.load(root)
    if info.format != "svc_pl":
        raise UserFacingError(f"{root / 'dataset.json'}: format {info.format!r} is not supported here; "
                              "run `svc-pl preprocess` to build an svc_pl dataset")
    names = ["train", "val"] if split == "all" else [split]
    items = list(dict.fromkeys(i for name in names for i in read_filelist(root / f"{name}.txt")))
    if not items:
        raise UserFacingError(f"{root}: {' + '.join(f'{n}.txt' for n in names)} list no clips")
    id_to_name = {v: k for k, v in info.speakers.items()}
    chunks: dict[str, list[np.ndarray]] = {}
    for item in items:
        bundle = load_bundle(root / item)
        if "speaker_id" in bundle:
            speaker = id_to_name.get(int(bundle["speaker_id"]))
        else:
            speaker = Path(item).parts[0]
        if speaker not in info.speakers:
            raise UserFacingError(f"{root / item}: its speaker is not in {root / 'dataset.json'} "
                                  f"(known: {', '.join(info.speakers)}); re-run `svc-pl preprocess`")
        units = bundle["units"]
        if units.dim() != 2:
            raise UserFacingError(f"{root / item}: units have shape {tuple(units.shape)}, expected (D, N); "
                                  "re-run `svc-pl preprocess`")
        chunks.setdefault(speaker, []).append(units.to(torch.float16).T.numpy())
    rng = np.random.default_rng(seed)
    out = {}
    for speaker, parts in chunks.items():
        frames = np.concatenate(parts, axis=0)
        if max_frames_per_speaker and len(frames) > max_frames_per_speaker:
            keep = np.sort(rng.choice(len(frames), size=max_frames_per_speaker, replace=False))
            frames = frames[keep]
        frames = frames.astype(np.float32)
        if not np.isfinite(frames).all():
            raise UserFacingError(f"{root}: speaker {speaker!r} has non-finite content units; "
                                  "re-run `svc-pl preprocess` for that speaker")
        out[speaker] = frames
    return out


def _mix(units: torch.Tensor, ratio: float, target: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``ratio * target() + (1 - ratio) * units`` in float32, back in ``units``' dtype; ``target()`` (the same
    shape as ``units``) is computed only when ``ratio > 0``."""
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise UserFacingError(f"mix ratio {ratio} is outside 0..1 (0 keeps the units, 1 replaces them)")
    if ratio == 0.0:
        return units
    replacement = target()
    if ratio == 1.0:
        return replacement
    return (ratio * replacement.float() + (1.0 - ratio) * units.float()).to(units.dtype)


def _unknown_speaker(source: str, what: str, speaker, known) -> UserFacingError:
    names = ", ".join(map(repr, known))
    return UserFacingError(f"{source}: no {what} for speaker {speaker!r}; it knows {names}. Pick one of "
                           "these, or rebuild it with `svc-pl train-index` over a dataset with that speaker")


def _as_frames(units: torch.Tensor, dim: int, source: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(D, T) or (B, D, T) -> (B*T, D) float32 frames, plus the shape to restore."""
    if units.dim() not in (2, 3) or units.shape[-2] != dim:
        raise UserFacingError(f"{source}: built for {dim}-dim units but got units of shape "
                              f"{tuple(units.shape)} (expected (D, T) or (B, D, T)); use a cluster model or "
                              "index built from the same content encoder as the voice model")
    batched = units if units.dim() == 3 else units.unsqueeze(0)
    return batched.transpose(1, 2).reshape(-1, dim).float(), tuple(batched.shape)


def _from_frames(frames: torch.Tensor, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    b, d, t = shape
    out = frames.reshape(b, t, d).transpose(1, 2).to(like.dtype)
    return out if like.dim() == 3 else out[0]


def _file_stem(i: int, speaker: str) -> str:
    return f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', speaker)[:64]}"


class FeatureIndex:
    """Per-speaker faiss indexes of training unit vectors, for feature retrieval.

    Args:
        indexes: speaker name -> faiss index (IVF-Flat or Flat, L2).
        vectors: speaker name -> (N, D) float32 vectors in index order; reconstructed from the
            index when omitted.
        source: where the index came from (used in error messages).
    """

    def __init__(self, indexes: dict, vectors: dict[str, np.ndarray] | None = None,
                 source: str = "feature index"):
        if not indexes:
            raise UserFacingError(f"{source}: holds no speakers; {REBUILD_HINT}")
        self.indexes = dict(indexes)
        self.vectors = {s: vectors[s] if vectors and s in vectors else _reconstruct_all(ix)
                        for s, ix in self.indexes.items()}
        dims = {ix.d for ix in self.indexes.values()}
        if len(dims) != 1:
            raise UserFacingError(f"{source}: speakers have different unit sizes {sorted(dims)}; "
                                  f"{REBUILD_HINT}")
        self.dim = dims.pop()
        self.source = source

    @property
    def speakers(self) -> list[str]:
        return list(self.indexes)

    @classmethod
    def build(cls, units_by_speaker: dict[str, np.ndarray], max_vectors: int = 200_000,
              reduce_to: int = 10000, nprobe: int = 1, seed: int = 1234) -> FeatureIndex:
        """Index every speaker's frames as so-vits-svc's ``train_index`` does.

        Args:
            units_by_speaker: speaker -> (N, D) unit frames (see :func:`collect_units`).
            max_vectors: above this many frames a speaker's frames are first reduced to ``reduce_to``
                k-means centres.
            nprobe: IVF lists searched per query (so-vits-svc uses 1).

        The IVF list count is ``min(16 * sqrt(N), N // 39)``; below 2 lists a flat (exact) index is used.
        """
        import faiss

        indexes, vectors = {}, {}
        for i, (speaker, frames) in enumerate(units_by_speaker.items(), 1):
            frames = np.ascontiguousarray(frames, dtype=np.float32)
            if frames.ndim != 2 or len(frames) == 0:
                raise UserFacingError(f"speaker {speaker!r}: no unit frames to index (shape {frames.shape})")
            if len(frames) > max_vectors:
                from sklearn.cluster import MiniBatchKMeans

                LOG.info("feature index: %s has %d frames, reducing to %d k-means centres", speaker,
                         len(frames), reduce_to)
                frames = MiniBatchKMeans(n_clusters=reduce_to, init="random", n_init="auto", batch_size=4096,
                                         compute_labels=False, random_state=seed).fit(frames).cluster_centers_
                frames = np.ascontiguousarray(frames, dtype=np.float32)
            n, dim = frames.shape
            n_list = min(int(16 * math.sqrt(n)), n // 39)
            if n_list >= 2:
                index = faiss.index_factory(dim, f"IVF{n_list},Flat")
                ivf = faiss.extract_index_ivf(index)
                ivf.nprobe = max(1, int(nprobe))
                ivf.cp.seed = seed
                index.train(frames)
            else:
                index = faiss.IndexFlatL2(dim)
            for start in range(0, n, 8192):
                index.add(frames[start:start + 8192])
            LOG.info("feature index %d/%d: %s, %d vectors, %s", i, len(units_by_speaker), speaker, n,
                     f"IVF{n_list},Flat" if n_list >= 2 else "Flat")
            indexes[speaker], vectors[speaker] = index, frames
        return cls(indexes, vectors, source="built feature index")

    def save(self, directory: str | os.PathLike) -> None:
        """Write one ``.index`` file per speaker (faiss's own format) plus ``manifest.json``."""
        import faiss

        from svc_pl.io import atomic_path, write_json_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = {}
        for i, (speaker, index) in enumerate(self.indexes.items()):
            name = f"{_file_stem(i, speaker)}.index"
            with atomic_path(directory / name) as tmp:
                faiss.write_index(index, str(tmp))
            entries[speaker] = {"file": name, "vectors": int(index.ntotal), "dim": int(index.d)}
        write_json_atomic(directory / INDEX_MANIFEST, {"format": INDEX_FORMAT, "version": FORMAT_VERSION,
                                                       "dim": self.dim, "speakers": entries})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FeatureIndex:
        """Read a folder written by :meth:`save`."""
        import faiss

        directory = Path(directory)
        manifest_path = directory / INDEX_MANIFEST
        if directory.is_file() and directory.suffix == ".pkl":
            raise UserFacingError(f"{directory}: so-vits-svc's feature_and_index.pkl is a pickle, which "
                                  f"svc_pl does not load because it can run code; {REBUILD_HINT}")
        if not manifest_path.is_file():
            raise UserFacingError(f"{directory}: not a feature index folder (no {INDEX_MANIFEST}); "
                                  f"{REBUILD_HINT}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserFacingError(f"{manifest_path}: unreadable ({err}); {REBUILD_HINT}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
            raise UserFacingError(f"{manifest_path}: not an svc_pl feature index manifest; {REBUILD_HINT}")
        if int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise UserFacingError(f"{manifest_path}: written by a newer svc_pl; upgrade svc_pl")
        indexes = {}
        for speaker, entry in manifest.get("speakers", {}).items():
            path = directory / Path(str(entry.get("file", ""))).name  # never outside the folder
            if not path.is_file():
                raise UserFacingError(f"{path}: listed in {manifest_path} for speaker {speaker!r} but "
                                      f"missing; {REBUILD_HINT}")
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as err:
                raise UserFacingError(f"{path}: unreadable faiss index ({str(err).splitlines()[0]}); "
                                      f"{REBUILD_HINT}") from None
            if index.d != entry.get("dim", index.d) or index.ntotal != entry.get("vectors", index.ntotal):
                raise UserFacingError(f"{path}: holds {index.ntotal} vectors of size {index.d} but "
                                      f"{manifest_path} says {entry.get('vectors')} of size "
                                      f"{entry.get('dim')}; {REBUILD_HINT}")
            indexes[speaker] = index
        return cls(indexes, source=str(directory))

    def retrieve(self, units: torch.Tensor, speaker: str, k: int = 8) -> torch.Tensor:
        """Inverse-distance-weighted average of every frame's ``k`` nearest training vectors.

        Weights are ``1 / d^2`` with ``d`` faiss's squared L2 distance, normalised per frame, as in
        so-vits-svc. Frames without any neighbour (an empty IVF list) are returned unchanged.

        Args:
            units: (D, T) or (B, D, T) content units.
            speaker: speaker name.
            k: neighbours per frame (capped at the number of indexed vectors).

        Returns:
            Same shape and dtype as ``units``, on the same device.
        """
        if speaker not in self.indexes:
            raise _unknown_speaker(self.source, "feature index", speaker, self.speakers)
        index, stored = self.indexes[speaker], self.vectors[speaker]
        frames, shape = _as_frames(units, self.dim, self.source)
        query = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        k = max(1, min(int(k), int(index.ntotal)))
        dist, ids = index.search(query, k)  # (N, k) squared L2, (N, k) ids (-1 = no neighbour)
        valid = ids >= 0
        weight = np.where(valid, 1.0 / np.square(np.maximum(dist.astype(np.float64), 1e-12)), 0.0)
        total = weight.sum(axis=1, keepdims=True)
        found = total[:, 0] > 0
        weight = weight / np.where(total > 0, total, 1.0)
        retrieved = np.einsum("nk,nkd->nd", weight, stored[np.where(valid, ids, 0)].astype(np.float64))
        retrieved = np.where(found[:, None], retrieved, query).astype(np.float32)
        return _from_frames(torch.from_numpy(retrieved).to(units.device), shape, units)

    def mix(self, units: torch.Tensor, speaker: str, ratio: float, k: int = 8) -> torch.Tensor:
        """``ratio * retrieved + (1 - ratio) * units`` per frame (so-vits-svc ``--feature_retrieval``).

        Args:
            units: (D, T) or (B, D, T) content units.
            speaker: speaker name.
            ratio: 0 returns ``units`` unchanged, 1 returns the retrieved features.
            k: neighbours per frame.

        Returns:
            Same shape and dtype as ``units``, on the same device.
        """
        if speaker not in self.indexes:  # an error at any ratio, 0 included
            raise _unknown_speaker(self.source, "feature index", speaker, self.speakers)
        return _mix(units, ratio, lambda: self.retrieve(units, speaker, k=k))


def _reconstruct_all(index) -> np.ndarray:
    """All vectors of a Flat or IVF-Flat index, in id order."""
    import faiss

    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index: Flat indexes reconstruct directly
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()
    return np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)

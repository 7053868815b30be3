"""Per-speaker k-means cluster centres over content units (so-vits-svc's ``--cluster_infer_ratio``).

Saved as a plain dict of tensors (``torch.load(weights_only=True)``); so-vits-svc's ``kmeans_10000.pt``
loads too, with only numpy's array-rebuilding functions allowed in its pickle.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from svc_pl.errors import UserFacingError
from svc_pl.infer.retrieval import (
    FORMAT_VERSION,
    KMEANS_FORMAT,
    REBUILD_HINT,
    _as_frames,
    _from_frames,
    _mix,
    _unknown_speaker,
)
from svc_pl.io import numpy_safe_globals

LOG = logging.getLogger(__name__)


def _unpickling_detail(err: Exception) -> str:
    """The specific reason in torch's long weights-only error, without its generic advice."""
    generic = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(generic)]
    text = " ".join(specific).replace("WeightsUnpickler error: ", "")
    return (text or (lines[0] if lines else type(err).__name__)).rstrip(".")


class ClusterModel:
    """Per-speaker k-means centres over content units.

    Args:
        centers: speaker name -> (K, D) float32 centres.
        source: where the model came from (used in error messages).
    """

    def __init__(self, centers: dict[str, torch.Tensor], source: str = "cluster model"):
        if not centers:
            raise UserFacingError(f"{source}: holds no speakers; {REBUILD_HINT}")
        dims = {name: c.shape[-1] for name, c in centers.items()}
        if len(set(dims.values())) != 1:
            raise UserFacingError(f"{source}: speakers have different unit sizes {dims}; {REBUILD_HINT}")
        self.centers = {name: c.detach().float().cpu().contiguous() for name, c in centers.items()}
        self.dim = next(iter(dims.values()))
        self.source = source
        self._cache: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def speakers(self) -> list[str]:
        return list(self.centers)

    @classmethod
    def fit(cls, units_by_speaker: dict[str, np.ndarray], n_clusters: int = 10000, seed: int = 1234,
            batch_size: int = 4096, max_iter: int = 80) -> ClusterModel:
        """Run MiniBatchKMeans per speaker.

        Args:
            units_by_speaker: speaker -> (N, D) unit frames (see :func:`collect_units`).
            n_clusters: centres per speaker (so-vits-svc uses 10000); capped at the speaker's frame count.
        """
        from sklearn.cluster import MiniBatchKMeans

        centers = {}
        for i, (speaker, frames) in enumerate(units_by_speaker.items(), 1):
            frames = np.ascontiguousarray(frames, dtype=np.float32)
            if frames.ndim != 2 or len(frames) == 0:
                raise UserFacingError(f"speaker {speaker!r}: no unit frames to cluster (got {frames.shape})")
            k = min(int(n_clusters), len(frames))
            if k < n_clusters:
                LOG.warning("%s: only %d frames, using %d clusters instead of %d", speaker, len(frames), k,
                            n_clusters)
            LOG.info("k-means %d/%d: %s, %d frames -> %d centres", i, len(units_by_speaker), speaker,
                     len(frames), k)
            # k-means++ seeding costs O(k^2) and dominates for thousands of centres; random seeding is what
            # so-vits-svc's feature index uses for its 10k centres.
            km = MiniBatchKMeans(n_clusters=k, init="k-means++" if k <= 1000 else "random", n_init="auto",
                                 batch_size=max(batch_size, 1), max_iter=max_iter, random_state=seed)
            km.fit(frames)
            centers[speaker] = torch.from_numpy(km.cluster_centers_.astype(np.float32))
        return cls(centers, source="fitted cluster model")

    def save(self, path: str | os.PathLike) -> None:
        """Write a file ``torch.load(weights_only=True)`` reads: format tag, version, centres per speaker."""
        from svc_pl.io import save_torch_atomic

        save_torch_atomic({"format": KMEANS_FORMAT, "version": FORMAT_VERSION, "dim": self.dim,
                           "centers": dict(self.centers)}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClusterModel:
        """Read a file written by :meth:`save` or so-vits-svc's ``kmeans_10000.pt``.

        The so-vits-svc file holds numpy arrays; they are rebuilt by torch's weights-only unpickler with
        numpy's array constructors as the only allowed globals, so a tampered file cannot run code.
        """
        path = Path(path)
        if not path.is_file():
            raise UserFacingError(f"{path}: cluster model not found; {REBUILD_HINT}")
        try:
            with torch.serialization.safe_globals(numpy_safe_globals()):
                raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            detail = _unpickling_detail(err)
            if "global" not in detail.lower() and "can only build" not in detail.lower():
                raise UserFacingError(f"{path}: unreadable cluster model ({detail}); "
                                      f"{REBUILD_HINT}") from None
            raise UserFacingError(f"{path}: refused to load: it holds objects other than tensors and numpy "
                                  f"arrays, which could run code ({detail}). Use a file you trust, or "
                                  f"{REBUILD_HINT}") from None
        except Exception as err:  # truncated / not a torch file: report which one
            raise UserFacingError(f"{path}: unreadable cluster model ({type(err).__name__}: {err}); "
                                  f"{REBUILD_HINT}") from None
        source = str(path)
        if isinstance(raw, dict) and raw.get("format") == KMEANS_FORMAT:
            if int(raw.get("version", 0)) > FORMAT_VERSION:
                raise UserFacingError(f"{path}: written by a newer svc_pl (format version {raw['version']}); "
                                      "upgrade svc_pl")
            centers = raw.get("centers")
        elif isinstance(raw, dict) and raw and all(isinstance(v, dict) and "cluster_centers_" in v
                                                    for v in raw.values()):
            centers = {str(k): v["cluster_centers_"] for k, v in raw.items()}  # so-vits-svc layout
        else:
            raise UserFacingError(f"{path}: not a cluster model (expected svc_pl's kmeans.pt or "
                                  f"so-vits-svc's kmeans_10000.pt); {REBUILD_HINT}")
        if not isinstance(centers, dict):
            raise UserFacingError(f"{path}: cluster model has no 'centers'; {REBUILD_HINT}")
        tensors = {}
        for speaker, c in centers.items():
            t = torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c).float()
            if t.dim() != 2 or t.shape[0] == 0 or not torch.isfinite(t).all():
                raise UserFacingError(f"{path}: centres of speaker {speaker!r} have shape {tuple(t.shape)} "
                                      f"or non-finite values; expected (K, D); {REBUILD_HINT}")
            tensors[str(speaker)] = t
        return cls(tensors, source=source)

    def _centers_on(self, speaker: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if speaker not in self.centers:
            raise _unknown_speaker(self.source, "cluster centres", speaker, self.speakers)
        key = (speaker, device)
        if key not in self._cache:
            c = self.centers[speaker].to(device)
            self._cache[key] = (c, (c * c).sum(dim=1))
        return self._cache[key]

    def nearest(self, units: torch.Tensor, speaker: str) -> torch.Tensor:
        """The nearest centre of every frame.

        Args:
            units: (D, T) or (B, D, T) content units.
            speaker: speaker name.

        Returns:
            Same shape and dtype as ``units``, on the same device.
        """
        centers, sq_norms = self._centers_on(speaker, units.device)
        frames, shape = _as_frames(units, self.dim, self.source)
        chunk = max(1, (1 << 24) // centers.shape[0])  # keep the (chunk, K) distance matrix ~64 MB
        picked = []
        for x in frames.split(chunk):
            # ||x - c||^2 without the ||x||^2 term, which does not change the argmin
            idx = torch.addmm(sq_norms.unsqueeze(0), x, centers.T, alpha=-2.0).argmin(dim=1)
            picked.append(centers[idx])
        return _from_frames(torch.cat(picked) if picked else frames, shape, units)

    def mix(self, units: torch.Tensor, speaker: str, ratio: float) -> torch.Tensor:
        """``ratio * nearest_centre + (1 - ratio) * units`` per frame (so-vits-svc ``cluster_infer_ratio``).

        Args:
            units: (D, T) or (B, D, T) content units.
            speaker: speaker name.
            ratio: 0 returns ``units`` unchanged, 1 returns the centres.

        Returns:
            Same shape and dtype as ``units``, on the same device.
        """
        if speaker not in self.centers:  # an error at any ratio, 0 included
            raise _unknown_speaker(self.source, "cluster centres", speaker, self.speakers)
        return _mix(units, ratio, lambda: self.nearest(units, speaker))

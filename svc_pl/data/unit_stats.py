"""Per-speaker statistics of a dataset's content units: the mean and spread of each unit dimension over a
speaker's clean units.

Much of the speaker that content units still carry sits in these first two moments (a per-voice offset and scale
of each dimension), so conversion can move an input's units to the target speaker's (``--match-units``,
:mod:`svc_pl.infer.unit_match`). ``svc-pl fit`` stores them in its checkpoints (``checkpoint["unit_stats"]``);
for an older checkpoint or a so-vits-svc model, ``svc-pl infer --unit-stats DATASET_DIR`` computes them from the
preprocessed dataset the model was trained on, or reads the ``unit_stats.pt`` that ``svc-pl train-index`` writes
beside its other files.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch

from svc_pl.data.layout import DatasetInfo, load_bundle, read_filelist
from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)
FILE_NAME = "unit_stats.pt"  # what svc-pl train-index writes, and the web UI looks for beside a model
MAX_CLIPS_PER_SPEAKER = 256  # the moments settle long before; bounds the read on large datasets
STD_FLOOR = 1e-3


def unit_stats_from_frames(units: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """{"mean": (C,), "std": (C,), "frames": T} of units (C, T) (float32, the spread floored at 1e-3)."""
    units = units.float()
    return {"mean": units.mean(1), "std": units.std(1, unbiased=False).clamp_min(STD_FLOOR),
            "frames": int(units.shape[1])}


def compute_unit_stats(dataset_dir: str | Path, split: str = "train",
                       max_clips: int = MAX_CLIPS_PER_SPEAKER) -> dict[str, dict]:
    """{speaker name: {"mean", "std", "frames"}} over the clean units of a dataset made by ``svc-pl preprocess``.

    Reads at most ``max_clips`` clips per speaker, spread evenly over its list (deterministic). A clip that
    cannot be read is reported and skipped.

    Raises:
        UserFacingError: not a preprocessed svc_pl dataset, or no readable clip.
    """
    root = Path(dataset_dir)
    if not (root / "dataset.json").is_file():
        raise UserFacingError(f"{root}: not a dataset made by `svc-pl preprocess` (no dataset.json); unit "
                              "statistics are read from the preprocessed clips the model was trained on")
    info = DatasetInfo.load(root)
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for item in read_filelist(root / f"{split}.txt"):
        by_speaker[Path(item).parts[0]].append(item)
    id_to_name = {int(v): k for k, v in info.speakers.items()}
    stats = {}
    for folder, items in sorted(by_speaker.items()):
        step = max(1, len(items) / max_clips)
        chosen = [items[int(i * step)] for i in range(min(len(items), max_clips))]
        frames, name = [], folder
        for item in chosen:
            try:
                bundle = load_bundle(root / item)
            except UserFacingError as err:
                LOG.warning("unit statistics: %s (skipped)", err)
                continue
            frames.append(bundle["units"].float())
            if "speaker_id" in bundle:
                name = id_to_name.get(int(bundle["speaker_id"]), folder)
        if frames:
            stats[name] = unit_stats_from_frames(torch.cat(frames, 1))
    if not stats:
        raise UserFacingError(f"{root}: no readable clip in {split}.txt to take unit statistics from")
    return stats


def check_unit_stats(stats: object, source: str) -> dict[str, dict]:
    """Validate stats read from a checkpoint (``source`` names it in errors)."""
    if not isinstance(stats, dict) or not stats:
        raise UserFacingError(f"{source}: unit statistics are empty or not a mapping")
    dims = set()
    for name, s in stats.items():
        if not isinstance(s, dict) or not {"mean", "std"} <= set(s):
            raise UserFacingError(f"{source}: unit statistics of speaker {name!r} lack mean/std")
        mean, std = torch.as_tensor(s["mean"]).float(), torch.as_tensor(s["std"]).float()
        if mean.ndim != 1 or mean.shape != std.shape or not torch.isfinite(mean).all() or not torch.isfinite(std).all():
            raise UserFacingError(f"{source}: unit statistics of speaker {name!r} are malformed")
        dims.add(mean.numel())
    if len(dims) != 1:
        raise UserFacingError(f"{source}: unit statistics disagree on the unit dimension ({sorted(dims)})")
    return {str(k): {"mean": torch.as_tensor(v["mean"]).float(), "std": torch.as_tensor(v["std"]).float(),
                     "frames": int(v.get("frames", 0))} for k, v in stats.items()}


def save_unit_stats(stats: dict[str, dict], path: str | Path) -> Path:
    """Write ``stats`` as plain tensors (loadable with ``weights_only=True``), atomically."""
    from svc_pl.io import atomic_open

    path = Path(path)
    plain = {str(k): {"mean": v["mean"].float().contiguous(), "std": v["std"].float().contiguous(),
                      "frames": int(v.get("frames", 0))} for k, v in stats.items()}
    with atomic_open(path) as f:
        torch.save({"format": "svc_pl.unit_stats", "speakers": plain}, f)
    return path


def read_unit_stats(path: str | Path) -> dict[str, dict]:
    """Statistics from a ``unit_stats.pt`` file or computed from a preprocessed dataset folder.

    Raises:
        UserFacingError: missing, unreadable or malformed.
    """
    path = Path(path)
    if path.is_dir():
        return compute_unit_stats(path)
    if not path.is_file():
        raise UserFacingError(f"{path}: no such file or folder; pass the unit_stats.pt of `svc-pl train-index` or "
                              "the dataset made by `svc-pl preprocess`")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserFacingError(f"{path}: unreadable unit statistics ({type(err).__name__}: {err}); write them again "
                              "with `svc-pl train-index`") from None
    if not isinstance(raw, dict) or raw.get("format") != "svc_pl.unit_stats":
        raise UserFacingError(f"{path}: not a unit statistics file of `svc-pl train-index`")
    return check_unit_stats(raw.get("speakers"), str(path))

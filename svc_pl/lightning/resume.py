"""Exact resume: the random state a LightningModule saves in its checkpoints and restores from them, so that a run
resumed from a checkpoint draws the same segments, noise and augmentations as the uninterrupted run would have.
Lightning restores the weights, optimizers, schedulers and loop positions; these hooks add what it leaves out."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

KEY = "svc_pl_rng"


def save_random_state(checkpoint: dict[str, Any]) -> None:
    """Put torch's, numpy's, Python's and CUDA's random state into ``checkpoint`` (tensors and plain data only,
    so it still loads weights-only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    checkpoint[KEY] = {"torch": torch.get_rng_state(),
                       "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
                       "python": random.getstate(),
                       "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_random_state(checkpoint: dict[str, Any]) -> None:
    """Restore what :func:`save_random_state` put into ``checkpoint`` (nothing, for a checkpoint without it)."""
    rng = checkpoint.get(KEY)
    if not rng:
        return
    torch.set_rng_state(rng["torch"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])

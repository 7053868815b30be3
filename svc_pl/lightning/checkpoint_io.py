"""Checkpoint I/O that never leaves a half-written file and names the file when one cannot be read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from svc_pl.compat.checkpoint import save_torch_atomic
from svc_pl.errors import UserFacingError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temp file in the target directory, fsyncs, then renames over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_torch_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise UserFacingError(f"{path}: checkpoint not found")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=False)
        except Exception as err:  # truncated zip, bad pickle, ...: say which file, do not start over silently
            raise UserFacingError(
                f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {err}). It is truncated or corrupt; "
                "resume from another checkpoint in the same folder (--ckpt_path PATH) or delete it."
            ) from None

    def remove_checkpoint(self, path) -> None:
        if os.path.exists(path):
            os.remove(path)

"""Checkpoint I/O that survives a crash at any moment and never runs code from a checkpoint file.

Writes go to a temp file beside the target, are fsynced and renamed over it: a run killed mid-write
leaves the previous checkpoint whole, and the temp file is removed by the next run. Reads use
``torch.load(weights_only=True)`` whatever Lightning asks for.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from svc_pl.errors import UserFacingError
from svc_pl.infer.loading import read_ckpt
from svc_pl.io import remove_stale_temp_files as _remove_temp_files
from svc_pl.io import save_torch_atomic

LOG = logging.getLogger(__name__)


class CheckpointWriteError(UserFacingError):
    """A checkpoint could not be written (disk full, no permission); the previous one is intact."""

    def __init__(self, path: str | os.PathLike, err: OSError):
        self.path = str(path)
        super().__init__(f"{path}: could not write the checkpoint ({err.strerror or err}); training stopped. The "
                         f"checkpoints already in {Path(path).parent} are intact: free space there and resume "
                         "with --ckpt_path last")


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed run left in a checkpoint ``directory``; returns what was removed."""
    removed = _remove_temp_files(directory, "*.ckpt")
    if removed:
        LOG.info("removed %d temp file(s) of an interrupted checkpoint write in %s", len(removed), directory)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic ``.ckpt`` writes (temp file, fsync, rename) and ``weights_only=True`` reads with clear errors."""

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        if path.parent not in self._swept:  # once per folder and run: what a crash before this run left there
            remove_stale_temp_files(path.parent)
            self._swept.add(path.parent)
        try:
            save_torch_atomic(checkpoint, path)
        except (OSError, RuntimeError) as err:
            cause = _os_error(err)  # torch.save reports a failed write as RuntimeError("unexpected pos ...")
            if cause is None:
                raise
            raise CheckpointWriteError(path, cause) from err

    def load_checkpoint(self, path, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """The checkpoint at ``path``, read with ``weights_only=True`` (``weights_only`` is ignored: a file a user
        is handed must not run code). Raises :class:`~svc_pl.errors.UserFacingError` naming the file."""
        return read_ckpt(path, map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        if os.path.exists(path):
            os.remove(path)


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err`` (itself, or what it was raised from or while handling)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None

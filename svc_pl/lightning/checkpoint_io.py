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

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins.io import TorchCheckpointIO

from svc_pl.errors import UserFacingError
from svc_pl.io import remove_stale_temp_files as _remove_temp_files
from svc_pl.io import save_torch_atomic
from svc_pl.run_checkpoint import read_ckpt

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


class MovedRunCheckpoints(Callback):
    """A run folder moved or copied elsewhere and resumed from a checkpoint in it goes on writing ``last.ckpt``.

    ``ModelCheckpoint`` restores its record of the files it wrote (``last_model_path``, the top-k) only when the
    checkpoint's ``dirpath`` is its own. After a move they differ, the record is dropped, and because ``last.ckpt``
    exists Lightning writes ``last-v1.ckpt`` while ``last.ckpt`` stays at the old step. When the resumed file lies
    in a ``ModelCheckpoint``'s folder, the record describes that folder's files under their old name: this rewrites
    its paths to the new folder before Lightning restores it, so the run carries on as if it had not moved.
    """

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if not trainer.ckpt_path:
            return
        here = Path(trainer.ckpt_path).resolve().parent
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            old = state.get("dirpath") if isinstance(state, dict) else None
            if not old or not callback.dirpath or old == callback.dirpath or Path(callback.dirpath).resolve() != here:
                continue
            states[callback.state_key] = _moved_record(state, old, callback.dirpath)
            LOG.info("the run's checkpoints moved from %s to %s: it goes on writing there", old, callback.dirpath)


def _moved_record(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A ModelCheckpoint state with every path under ``old`` moved under ``new``."""
    def move(path):
        if isinstance(path, str) and path and Path(path).parent == Path(old):
            return os.path.join(new, Path(path).name)
        return path

    state = dict(state, dirpath=new)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = move(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    return state


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err`` (itself, or what it was raised from or while handling)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None

"""Which rank did what, in multi-process runs started as subprocesses.

:func:`probe_env` writes a ``sitecustomize.py`` that every Python process started with the returned
environment imports at start-up (Lightning's DDP launcher passes the environment on to the ranks it
spawns). It wraps ``svc_pl.infer.batch.convert_file`` and the ``training_step`` of ``SVCModule`` and
``DiffusionModule`` to append one JSON line per converted file / training batch: the process's rank, the world
size, the step and the files (and the diffusion loss, None for a skipped step).
:func:`read_probe` returns those lines. Test tooling only: the package is not changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_SITECUSTOMIZE = '''
import json, os

_DIR = os.environ.get("SVC_PL_TEST_RANK_LOG")


def _record(kind, rank, world, files, step=None, **more):
    with open(os.path.join(_DIR, f"{kind}-{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"rank": int(rank), "world": int(world), "step": step, "files": files, **more}) + "\\n")


if _DIR:
    import svc_pl.infer.batch as _batch

    _convert_file = _batch.convert_file

    def convert_file(converter, job, opts):
        import torch.distributed as dist

        on = dist.is_available() and dist.is_initialized()
        _record("convert", dist.get_rank() if on else 0, dist.get_world_size() if on else 1, [str(job.source)])
        return _convert_file(converter, job, opts)

    _batch.convert_file = convert_file

    import svc_pl.lightning.module as _module

    _training_step = _module.SVCModule.training_step

    def training_step(self, batch, batch_idx):
        _record("train", self.global_rank, self.trainer.world_size, list(batch.names), self.global_step)
        return _training_step(self, batch, batch_idx)

    _module.SVCModule.training_step = training_step

    import svc_pl.lightning.diffusion_module as _diffusion

    _diffusion_step = _diffusion.DiffusionModule.training_step

    def diffusion_step(self, batch, batch_idx):
        step = self.global_step
        loss = _diffusion_step(self, batch, batch_idx)
        _record("train", self.global_rank, self.trainer.world_size, list(batch.names), step,
                loss=None if loss is None else float(loss))
        return loss

    _diffusion.DiffusionModule.training_step = diffusion_step
'''


def probe_env(where: Path, env: dict[str, str], repo: Path) -> dict[str, str]:
    """Environment for a subprocess whose ranks record their work under ``where``."""
    where = Path(where)
    (where / "site").mkdir(parents=True, exist_ok=True)
    (where / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    (where / "log").mkdir(exist_ok=True)
    path = os.pathsep.join([str(where / "site"), str(repo)])
    return dict(env, PYTHONPATH=path, SVC_PL_TEST_RANK_LOG=str(where / "log"))


def read_probe(where: Path, kind: str) -> list[dict]:
    """The records of ``kind`` ("convert" or "train") from every process, in no particular order."""
    rows = []
    for f in sorted((Path(where) / "log").glob(f"{kind}-*.jsonl")):
        rows += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
    return rows

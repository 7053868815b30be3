"""Multi-device batch conversion: ``trainer.predict`` over input files, one converter per device,
outputs written by a prediction writer. Lightning's predict sampler gives every file to exactly one
device (no duplicates)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from svc_pl.errors import UserFacingError
from svc_pl.infer.batch import Job, convert_file
from svc_pl.lightning.ranks import close_process_group

LOG = logging.getLogger(__name__)


class JobDataset(Dataset):
    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Job:
        return self.jobs[i]


class ConvertModule(pl.LightningModule):
    """Wraps a converter factory; the converter is built on the module's device in ``setup``."""

    def __init__(self, make_converter: Callable[[torch.device], object], opts):
        super().__init__()
        self.make_converter = make_converter
        self.opts = opts
        self.converter = None
        self._anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device

    def on_predict_start(self) -> None:
        self.converter = self.make_converter(self.device)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # file jobs, not tensors: the converter moves its own tensors

    def predict_step(self, batch: list[Job], batch_idx: int) -> list[tuple[Job, str | None]]:
        results = []
        for job in batch:
            try:
                convert_file(self.converter, job, self.opts)
                results.append((job, None))
            except UserFacingError as err:
                results.append((job, str(err)))
            except Exception as err:  # one bad file never stops a batch run
                results.append((job, f"{job.source}: {type(err).__name__}: {err}"))
        return results


class ResultWriter(BasePredictionWriter):
    """Collects per-file outcomes on every rank (files are written by the step itself, atomically)."""

    def __init__(self):
        super().__init__(write_interval="batch")
        self.done: list[str] = []
        self.failed: list[str] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        for job, error in prediction:
            if error:
                self.failed.append(error)
                LOG.error("%s", error)
            else:
                self.done.append(job.target)


def predict_convert(jobs: list[Job], make_converter, opts, devices: int | str = 1, accelerator: str = "auto",
                    progress: bool = True) -> tuple[int, int]:
    """Convert ``jobs`` on ``devices``; returns (converted, failed) summed over all ranks."""
    writer = ResultWriter()
    strategy = "ddp" if (isinstance(devices, int) and devices > 1) else "auto"
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                         enable_checkpointing=False, callbacks=[writer], enable_progress_bar=progress,
                         enable_model_summary=False)
    loader = DataLoader(JobDataset(jobs), batch_size=1, collate_fn=list, shuffle=False)
    try:
        trainer.predict(ConvertModule(make_converter, opts), dataloaders=loader, return_predictions=False)
        counts = torch.tensor([len(writer.done), len(writer.failed)], dtype=torch.float64)
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
    finally:
        close_process_group()
    return int(counts[0]), int(counts[1])


"""The training progress bar: Lightning's rich bar, without the bogus epoch total of step-bounded runs.

Our runs are bounded by steps (``max_epochs=-1``, ``max_steps=N``), and Lightning's ``RichProgressBar`` (2.6)
then writes its epoch total as ``max_epochs - 1``: "Epoch 3/-2". This bar writes "Epoch 3" alone when epochs
are unbounded, and shows ``step: 120/20000`` among the metrics when ``max_steps`` bounds the run: the step
that ``max_steps`` and checkpoint names count (two per batch when a discriminator trains).

Lightning computes the description in one private method, ``_get_train_description(current_epoch)``, at each
epoch start and on a resumed run's first batch; it is overridden here (Lightning-AI/pytorch-lightning#21924
makes the same change upstream). ``tests/test_cli.py`` renders the bar, so a rename there fails that test.
Needs ``rich``; without it Lightning's tqdm bar is used, which shows the epoch alone.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


def epoch_description(current_epoch: int, max_epochs: int | None) -> str:
    """``Epoch E``, with Lightning's ``/last epoch index`` only when ``max_epochs`` bounds the run."""
    if max_epochs is None or max_epochs < 0:
        return f"Epoch {current_epoch}"
    return f"Epoch {current_epoch}/{max_epochs - 1}"


class StepProgressBar(RichProgressBar):
    """``RichProgressBar`` that writes no epoch total under ``max_epochs=-1`` and shows the step out of
    ``max_steps`` beside the logged metrics."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = epoch_description(current_epoch, self.trainer.max_epochs)
        return f"{text:{len(self.validation_description)}}"  # as wide as "Validation": no flicker

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            metrics["step"] = f"{trainer.global_step}/{trainer.max_steps}"
        return metrics

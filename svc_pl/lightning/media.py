"""Validation media for TensorBoard: generated vs ground-truth mel images, F0 plot, audio.
Called on rank zero only; does nothing for loggers other than TensorBoard."""

from __future__ import annotations

import logging
import weakref

import numpy as np
import torch

LOG = logging.getLogger(__name__)

# writer -> validation clip indexes whose ground-truth audio it holds (kept here, not on the writer; an entry
# goes with its writer)
_GROUND_TRUTH_LOGGED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _figure_mels(mel_hat: np.ndarray, mel: np.ndarray):
    """Generated over ground-truth mel images, (n_mels, T) each, on a figure of its own (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, m, title in zip(axes, (mel_hat, mel), ("generated", "ground truth")):
        im = ax.imshow(m, aspect="auto", origin="lower", interpolation="none")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def _figure_f0(f0: np.ndarray):
    """F0 (T,) in Hz, unvoiced frames (0) left out."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.5))
    ax = fig.subplots()
    f0 = np.where(f0 > 0, f0, np.nan)
    ax.plot(f0, lw=1)
    ax.set_ylabel("F0 (Hz)")
    ax.set_xlabel("frame")
    fig.tight_layout()
    return fig


def tensorboard_writer(logger):
    """The SummaryWriter behind a Lightning TensorBoardLogger, or None."""
    from pytorch_lightning.loggers import TensorBoardLogger

    loggers = logger if isinstance(logger, list | tuple) else [logger]
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            return lg.experiment
    return None


def log_validation_media(logger, step: int, index: int, audio: torch.Tensor, audio_gt: torch.Tensor,
                         mel_hat: torch.Tensor, mel: torch.Tensor, f0: torch.Tensor, sampling_rate: int) -> None:
    writer = tensorboard_writer(logger)
    if writer is None:
        return
    fig = _figure_mels(mel_hat.detach().float().cpu().numpy(), mel.detach().float().cpu().numpy())
    writer.add_figure(f"val/mel/{index}", fig, step)
    fig = _figure_f0(f0.detach().float().cpu().numpy())
    writer.add_figure(f"val/f0/{index}", fig, step)
    writer.add_audio(f"val/audio/{index}", audio.detach().float().cpu().clamp(-1, 1).unsqueeze(0), step, sampling_rate)
    logged = _GROUND_TRUTH_LOGGED.setdefault(writer, set())
    if step == 0 or index not in logged:
        writer.add_audio(f"val/audio_gt/{index}", audio_gt.detach().float().cpu().unsqueeze(0), step, sampling_rate)
        logged.add(index)

"""Training the shallow-diffusion mel model: ``svc-pl fit --config diffusion --data.dataset_dir DATA``.

It trains on the same preprocessed dataset as the synthesizer (units, F0, volume, speaker, audio); the target mel is
the NSF-HiFiGAN vocoder's log-mel, computed from the clip's audio on the fly (a dataset needs nothing new). The
recipe is so-vits-svc 4.1's ``train_diff.py``: noise-prediction MSE at a random step below ``k_step_max``, AdamW,
step decay, and pitch-shift augmentation (``use_pitch_aug``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from svc_pl import warmstart
from svc_pl.compat.export import export_diffusion
from svc_pl.compat.export import export_diffusion_checkpoint as export_checkpoint  # noqa: F401  (its old address)
from svc_pl.data.spectral import LogMelSpectrogram
from svc_pl.diffusion.gaussian import Method
from svc_pl.diffusion.model import DiffusionConfig
from svc_pl.errors import UserFacingError
from svc_pl.lightning.resume import restore_random_state, save_random_state

LOG = logging.getLogger(__name__)


class DiffusionModule(pl.LightningModule):
    """The diffusion model (:class:`~svc_pl.diffusion.model.MelDiffusion`) as a LightningModule.

    Args:
        diffusion: architecture (:class:`~svc_pl.diffusion.model.DiffusionConfig`): ``n_layers``, ``n_chans``,
            ``n_hidden``, ``timesteps``, ``k_step_max`` (0: all steps; less than ``timesteps``: a
            shallow-diffusion-only model, trained on steps below it), ``use_pitch_aug``, ``max_beta``, ``spec_min``,
            ``spec_max``. Unit size and speakers come from the data.
        dataset_info: speakers, unit dim, sample rate, hop, FFT sizes (linked from the data module).
        n_mels, mel_fmin, mel_fmax: the vocoder's mel (NSF-HiFiGAN 44.1 kHz: 128, 40, 16000).
        learning_rate, weight_decay: AdamW.
        decay_step, gamma: the learning rate is multiplied by ``gamma`` every ``decay_step`` steps.
        pitch_aug_prob: share of clips shifted when ``use_pitch_aug`` (upstream: half).
        pitch_aug_range: shifts drawn uniformly in +-this many semitones (upstream: 5).
        init_from: start from a so-vits-svc diffusion ``model_*.pt`` or an svc_pl diffusion ``.ckpt`` (a speaker
            table of another size is re-initialised).
        val_method, val_speedup: sampler for the validation mels.
        val_media_every: log mel images every this many validation runs.
        max_nonfinite_steps: consecutive non-finite losses tolerated (each skips its step) before stopping.
    """

    def __init__(self, diffusion: DiffusionConfig | None = None, dataset_info: dict[str, Any] | None = None,
                 n_mels: int = 128, mel_fmin: float = 40.0, mel_fmax: float | None = 16000.0,
                 learning_rate: float = 1e-4, weight_decay: float = 0.0, decay_step: int = 100000, gamma: float = 0.5,
                 pitch_aug_prob: float = 0.5, pitch_aug_range: float = 5.0, init_from: str | None = None,
                 val_method: Method = "dpm-solver++", val_speedup: int = 10, val_media_every: int = 1,
                 max_nonfinite_steps: int = 10):
        params = {k: v for k, v in locals().items() if k not in ("self", "diffusion", "dataset_info", "__class__")}
        super().__init__()
        arch = DiffusionConfig.from_dict(diffusion)  # a clear error names any unknown key
        info = dict(dataset_info or {})
        info.setdefault("speakers", {"speaker0": 0})
        info.setdefault("n_speakers", max(info["speakers"].values(), default=0) + 1)
        for k, v in (("unit_dim", 768), ("sampling_rate", 44100), ("hop_length", 512), ("filter_length", 2048),
                     ("win_length", 2048), ("content_encoder", "vec768l12"), ("unit_interpolate_mode", "nearest")):
            info.setdefault(k, v)
        self.save_hyperparameters({"diffusion": arch.to_dict(), "dataset_info": info} | params)
        self.model = arch.build(int(info["unit_dim"]), int(info["n_speakers"]), n_mels)
        self.hop_length = int(info["hop_length"])
        self.mel = LogMelSpectrogram(int(info["sampling_rate"]), int(info["filter_length"]), int(info["win_length"]),
                                 self.hop_length, n_mels, mel_fmin, mel_fmax)
        self._nonfinite = 0
        self._val_runs = 0
        if init_from:
            self.load_weights(init_from)

    @property
    def use_pitch_aug(self) -> bool:
        return self.model.aug_shift_embed is not None

    def load_weights(self, path: str) -> None:
        """Initialise from a so-vits-svc ``model_*.pt`` or the ``model.*`` weights of an svc_pl ``.ckpt``
        (:func:`svc_pl.warmstart.diffusion`)."""
        warmstart.diffusion(self.model, path)

    def _inputs(self, batch, frames: int):
        units = batch.units[:, :, :frames].transpose(1, 2)
        return units, batch.f0[:, :frames, None], batch.volume[:, :frames, None]

    def _target_mel(self, audio: torch.Tensor, frames: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
        """(B, frames, n_mels) vocoder mel of (B, samples) audio, each item at its key shift."""
        audio = audio.float()
        if shifts is None or not bool(shifts.any()):
            mel = self.mel(audio)
        else:
            mel = torch.cat([self.mel(audio[i:i + 1], float(s)) for i, s in enumerate(shifts.tolist())])
        if mel.shape[-1] < frames:
            mel = torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]), mode="replicate")
        return mel[..., :frames].transpose(1, 2)

    def training_step(self, batch, batch_idx: int):
        frames = int(batch.lengths.min())  # bucketed batches: crop to the shortest clip instead of padding
        units, f0, volume = self._inputs(batch, frames)
        audio = batch.audio[:, 0, : frames * self.hop_length]
        shifts = None
        if self.use_pitch_aug:
            b = units.shape[0]
            draw = (torch.rand(b) < self.hparams.pitch_aug_prob).float()
            shifts = (draw * (torch.rand(b) * 2 - 1) * self.hparams.pitch_aug_range).to(units.device)
            f0 = f0 * (2 ** (shifts / 12)).view(-1, 1, 1)
        mel = self._target_mel(audio, frames, shifts)
        loss = self.model(units, f0, volume, mel, speaker=batch.speaker, aug_shift=shifts)
        if not torch.isfinite(loss):
            self._nonfinite += 1
            LOG.warning("non-finite diffusion loss at step %d: step skipped (%d in a row)", self.global_step,
                        self._nonfinite)
            if self._nonfinite >= self.hparams.max_nonfinite_steps:
                raise UserFacingError(f"{self._nonfinite} non-finite losses in a row: lower model.learning_rate or "
                                      "check the dataset (silent or clipped clips)")
            return None
        self._nonfinite = 0
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=units.shape[0])
        self.log("learning_rate", self.optimizers().param_groups[0]["lr"], batch_size=units.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int):
        frames = int(batch.lengths.min())
        units, f0, volume = self._inputs(batch, frames)
        mel = self._target_mel(batch.audio[:, 0, : frames * self.hop_length], frames)
        gen = torch.Generator(device="cpu").manual_seed(batch_idx)
        b = units.shape[0]
        t = torch.randint(0, self.model.k_step_max, (b,), generator=gen).to(units.device)
        noise = torch.randn(b, mel.shape[-1], frames, generator=gen).to(units.device)
        loss = self.model(units, f0, volume, mel, speaker=batch.speaker, t=t, noise=noise)
        shallow = self.model.shallow_only
        mel_hat = self.model.infer(units, f0, volume, batch.speaker, gt_mel=mel if shallow else None,
                                   k_step=self.model.k_step_max, method=self.hparams.val_method,
                                   speedup=self.hparams.val_speedup, generator=gen)
        self.log("val/loss", loss, batch_size=b, sync_dist=True, prog_bar=True)
        self.log("val/mel_l1", (mel_hat - mel).abs().mean(), batch_size=b, sync_dist=True)
        if self.trainer.is_global_zero and self._val_runs % max(1, self.hparams.val_media_every) == 0:
            self._log_mel_image(batch_idx, mel_hat[0], mel[0])

    def _log_mel_image(self, index: int, mel_hat: torch.Tensor, mel: torch.Tensor) -> None:
        from svc_pl.lightning.media import _figure_mels, tensorboard_writer

        writer = tensorboard_writer(self.logger)
        if writer is not None:
            fig = _figure_mels(mel_hat.T.float().cpu().numpy(), mel.T.float().cpu().numpy())
            writer.add_figure(f"val/mel/{index}", fig, self.global_step)

    def on_validation_epoch_end(self) -> None:
        self._val_runs += 1

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.learning_rate,
                                weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, self.hparams.decay_step),
                                                gamma=self.hparams.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ exact resume (as SVCModule's)
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_random_state(checkpoint)
        checkpoint["svc_pl_counters"] = {"nonfinite": self._nonfinite, "val_runs": self._val_runs}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_random_state(checkpoint)  # a resumed run draws the clips, steps and shifts the whole run would have
        counters = checkpoint.get("svc_pl_counters", {})
        self._nonfinite = counters.get("nonfinite", 0)
        self._val_runs = counters.get("val_runs", 0)

    def export_sovits(self, out_dir: str | Path, global_step: int | None = None) -> tuple[Path, Path]:
        """Write ``model_<step>.pt`` and ``diffusion.yaml`` in so-vits-svc's format into ``out_dir``
        (:func:`svc_pl.compat.export.export_diffusion`)."""
        return export_diffusion(self.model, self.hparams.dataset_info, out_dir,
                                global_step=self.global_step if global_step is None else global_step)

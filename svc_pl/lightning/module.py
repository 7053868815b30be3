"""The training module: synthesizer + multi-period discriminator trained with the so-vits-svc 4.1
recipe under Lightning's manual optimization (discriminator step, then generator step)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from svc_pl import warmstart
from svc_pl.errors import UserFacingError
from svc_pl.layers.commons import slice_segments
from svc_pl.layers.ddsp import MultiResolutionSTFTLoss
from svc_pl.layers.discriminator import MultiPeriodDiscriminator
from svc_pl.lightning.losses import ContentLoss, MelLoss, discriminator_loss, feature_loss, generator_loss, kl_loss
from svc_pl.lightning.resume import restore_random_state, save_random_state
from svc_pl.synthesizer import NetConfig, Synthesizer

__all__ = ["NetConfig", "NonFiniteLossError", "SVCModule"]

LOG = logging.getLogger(__name__)


class NonFiniteLossError(UserFacingError, RuntimeError):
    """Training stopped after ``max_nonfinite_steps`` consecutive NaN/inf losses (the message says what to try)."""


class SVCModule(pl.LightningModule):
    """so-vits-svc 4.1 training as a LightningModule.

    Args:
        net: the synthesizer's architecture (:class:`~svc_pl.synthesizer.NetConfig`).
        dataset_info: speakers, unit dim, sample rate, hop, FFT sizes (linked from the data module).
        segment_frames: frames of audio the decoder generates per item: segment_frames * hop samples.
        segment_size: the same in samples (upstream ``train.segment_size``), for configs written that way;
            it must be a multiple of the dataset's hop. Given, it replaces ``segment_frames``.
        learning_rate, betas, eps: AdamW, both networks.
        lr_decay: ExponentialLR gamma, stepped once per epoch.
        warmup_epochs: linear learning-rate warm-up over the first epochs.
        c_mel, c_kl: loss weights.
        n_mels, mel_fmin, mel_fmax: the mel loss (fmax None: Nyquist).
        grad_clip: clip each network's gradient norm to this (None: only measure it, as upstream).
        init_from: start the generator from a so-vits-svc ``G_*.pth`` or an svc_pl ``.ckpt``; the run keeps
            the NSF source rate those weights were trained with (``net.source_sampling_rate``, see ``NetConfig``).
        init_discriminator_from: start the discriminator from a so-vits-svc ``D_*.pth`` or an svc_pl ``.ckpt``.
        max_nonfinite_steps: consecutive non-finite losses tolerated (each skips its step) before stopping.
        val_media_every: log audio/mel/F0 media every this many validation runs.
        discriminator_width: channel scale of the discriminator (1.0 = upstream, as so-vits-svc's D_*.pth).
        use_discriminator: train adversarially (so-vits-svc). False: the generator alone, on the mel and
            multi-resolution STFT losses (one optimizer step per batch) - the recipe for ``net.decoder: ddsp``.
        c_stft: weight of the multi-resolution STFT loss (FFT 2048/1024/512/256).
        speaker_lr_scale: the speaker table's learning rate as a multiple of ``learning_rate``. A fine-tune's new
            speaker starts at the base's mean voice, about 0.8 per element from any voice the base learned; at
            ``learning_rate`` alone AdamW moves it at most that much in ~1,600 steps, so a short fine-tune changes
            the voice through every other weight instead. A larger scale lets the embedding itself get there.
        speaker_adversary: weight of a speaker adversary on the prior's output (0: none). A small probe learns to
            tell the training speakers apart from each frame of ``m_p``; its gradient reaches the prior reversed
            and scaled by this weight (a gradient-reversal layer), so the prior learns to drop the speaker the units
            carry and the decoder must take the voice from the speaker embedding.
        c_content: weight of a content loss (0: none): L1 between the units a content encoder reads from the
            generated segment and from the real one, so the output keeps the words as that encoder hears them.
        content_loss_encoder: the encoder of the content loss, as ``svc-pl preprocess --content-encoder`` takes it
            (``whisper-tiny.en``, ``whisper-base``, a Whisper or HuBERT-family weight file). Not saved in checkpoints.
    """

    def __init__(self, net: NetConfig | None = None, dataset_info: dict[str, Any] | None = None,
                 segment_frames: int = 20, segment_size: int | None = None, learning_rate: float = 1e-4,
                 betas: tuple[float, float] = (0.8, 0.99),
                 eps: float = 1e-9, lr_decay: float = 0.999875, warmup_epochs: int = 0, c_mel: float = 45.0,
                 c_kl: float = 1.0, n_mels: int = 80, mel_fmin: float = 0.0, mel_fmax: float | None = None,
                 grad_clip: float | None = None, init_from: str | None = None,
                 init_discriminator_from: str | None = None, max_nonfinite_steps: int = 10,
                 val_media_every: int = 1, discriminator_width: float = 1.0, use_discriminator: bool = True,
                 c_stft: float = 0.0, speaker_lr_scale: float = 1.0, speaker_adversary: float = 0.0,
                 c_content: float = 0.0, content_loss_encoder: str = "whisper-tiny.en"):
        params = {k: v for k, v in locals().items() if k not in ("self", "net", "dataset_info", "__class__")}
        super().__init__()
        net = NetConfig.from_dict(net).to_dict()  # defaults for keys not given
        info = dict(dataset_info or {})
        info.setdefault("speakers", {"speaker0": 0})
        info.setdefault("n_speakers", max(info["speakers"].values(), default=0) + 1)
        for k, v in (("unit_dim", 768), ("sampling_rate", 44100), ("hop_length", 512), ("filter_length", 2048),
                     ("win_length", 2048), ("content_encoder", "vec768l12"), ("f0_method", "pm"),
                     ("unit_interpolate_mode", "nearest")):
            info.setdefault(k, v)
        params["betas"] = list(params["betas"])
        hop = int(info["hop_length"])
        if segment_size is not None:
            if segment_size % hop:
                raise UserFacingError(
                    f"model.segment_size ({segment_size} samples) is not a whole number of the dataset's frames "
                    f"(hop_length {hop}): give the segment in frames instead (--model.segment_frames "
                    f"{max(1, round(segment_size / hop))})")
            segment_frames = segment_size // hop
        params.update(segment_frames=int(segment_frames), segment_size=None)
        if init_from:
            net["source_sampling_rate"] = warmstart.source_sampling_rate(net, init_from, int(info["sampling_rate"]))
        self.save_hyperparameters({"net": net, "dataset_info": info} | params)
        self.automatic_optimization = False
        self.hop_length = hop
        self.segment_frames = int(segment_frames)
        self.segment_size = self.segment_frames * hop  # samples
        self.net = Synthesizer.from_config(net, info, self.segment_frames)
        self.disc = MultiPeriodDiscriminator(width=discriminator_width) if use_discriminator else None
        self.stft_loss = MultiResolutionSTFTLoss() if c_stft > 0 else None
        self.speaker_probe = (SpeakerProbe(int(net["inter_channels"]), int(info["n_speakers"]))
                              if speaker_adversary > 0 else None)
        self.content_loss = (ContentLoss(_content_loss_encoder(content_loss_encoder, info), int(info["sampling_rate"]))
                             if c_content > 0 else None)
        self.mel_loss = MelLoss(int(info["sampling_rate"]), int(info["filter_length"]), hop, int(info["win_length"]),
                                n_mels, mel_fmin, mel_fmax)
        self._nonfinite = 0
        self._grad_norms: dict[int, float] = {}
        self._val_runs = 0
        if init_from:
            self.load_generator_weights(init_from)
        if init_discriminator_from:
            self.load_discriminator_weights(init_discriminator_from)

    @property
    def speakers(self) -> dict[str, int]:
        return dict(self.hparams.dataset_info["speakers"])

    def load_generator_weights(self, path: str) -> None:
        """Initialise the generator from a shipped base, a so-vits-svc G_*.pth or the ``net.*`` weights of an svc_pl
        checkpoint (:func:`svc_pl.warmstart.generator`)."""
        warmstart.generator(self.net, path, dict(self.hparams.net), self.hparams.dataset_info)

    def load_discriminator_weights(self, path: str) -> None:
        """Initialise the discriminator from a so-vits-svc ``D_*.pth`` or the ``disc.*`` weights of an svc_pl
        ``.ckpt`` (:func:`svc_pl.warmstart.discriminator`)."""
        warmstart.discriminator(self.disc, path, self.hparams.discriminator_width)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        opts = [torch.optim.AdamW(self._generator_param_groups(), hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps)]
        if self.disc is not None:
            opts.append(torch.optim.AdamW(self.disc.parameters(), hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps))
        warmup, decay = hp.warmup_epochs, hp.lr_decay

        def factor(epoch: int) -> float:
            ramp = min(1.0, (epoch + 1) / warmup) if warmup > 0 else 1.0
            return ramp * decay**epoch

        sched = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in opts]
        return opts, [{"scheduler": s, "interval": "epoch"} for s in sched]

    def _generator_param_groups(self) -> list[dict[str, Any]]:
        """Two groups: every generator weight but the speaker table, then the speaker table at its own rate."""
        table = self.net.emb_g.weight
        rest = [p for p in self.net.parameters() if p is not table]
        if self.speaker_probe is not None:
            rest += list(self.speaker_probe.parameters())
        return [{"params": rest}, {"params": [table], "lr": self.hparams.learning_rate * self.hparams.speaker_lr_scale}]

    def _upgrade_optimizer_state(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint from before the speaker table had its own group (one generator group) resumes: its group
        is split the way :meth:`_generator_param_groups` splits the weights, the table's state kept."""
        states = checkpoint.get("optimizer_states") or []
        if not states or len(states[0].get("param_groups", [])) != 1:
            return
        names = [n for n, _ in self.net.named_parameters()]
        if "emb_g.weight" not in names:
            return
        (group,) = states[0]["param_groups"]
        ids = list(group["params"])
        if len(ids) != len(names):
            return  # not this network's layout: let the optimizer report the mismatch
        k = names.index("emb_g.weight")
        scale = self.hparams.speaker_lr_scale
        table_group = dict(group, params=[ids[k]])
        for key in ("lr", "initial_lr"):
            if key in table_group:
                table_group[key] = group[key] * scale
        states[0]["param_groups"] = [dict(group, params=ids[:k] + ids[k + 1:]), table_group]
        scheds = checkpoint.get("lr_schedulers") or []
        if scheds:
            for key in ("base_lrs", "_last_lr"):
                if len(scheds[0].get(key) or []) == 1:
                    scheds[0][key] = [scheds[0][key][0], scheds[0][key][0] * scale]

    def on_train_epoch_end(self) -> None:
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            sched.step()

    def on_before_optimizer_step(self, optimizer) -> None:
        # Gradients are unscaled here under 16-mixed (Lightning unscales before this hook).
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.hparams.grad_clip if self.hparams.grad_clip else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.tensor(0.0)
        self._grad_norms[id(optimizer)] = float(norm)

    def _all_finite(self, *losses: torch.Tensor) -> bool:
        finite = all(bool(torch.isfinite(loss).all()) for loss in losses)
        return bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))

    def _skip_nonfinite(self, what: str) -> None:
        self._nonfinite += 1
        LOG.warning("non-finite %s loss at step %d: step skipped (%d in a row)", what, self.global_step, self._nonfinite)
        if self._nonfinite >= self.hparams.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self._nonfinite} consecutive non-finite losses (last: {what}) at step {self.global_step}. "
                "Lower the learning rate, use precision 32 or bf16-mixed, or check the data for bad clips; "
                "resume from the last good checkpoint with --ckpt_path.")

    def training_step(self, batch, batch_idx: int):
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, list) else (opts, None)
        out = self.net(batch.units, batch.f0, batch.voiced, batch.spec, batch.speaker, batch.lengths, batch.lengths,
                       vol=batch.volume if self.net.vol_embedding else None)
        y = slice_segments(batch.audio, out.ids_slice * self.hop_length, self.segment_size)
        y_hat = out.audio
        zero = torch.zeros((), device=y.device)

        # discriminator
        loss_d = zero
        if opt_d is not None:
            self.toggle_optimizer(opt_d)
            d_out = self.disc(y, y_hat.detach())
            loss_d = discriminator_loss(d_out.real_logits, d_out.fake_logits)
            if self._all_finite(loss_d):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(loss_d)
                opt_d.step()
            else:
                opt_d.zero_grad(set_to_none=True)
                self._skip_nonfinite("discriminator")
            self.untoggle_optimizer(opt_d)

        # generator
        self.toggle_optimizer(opt_g)
        loss_mel, mel_hat, mel = self.mel_loss(y_hat, y)
        d_out = self.disc(y, y_hat) if opt_d is not None else None
        with torch.autocast(device_type=y.device.type, enabled=False):
            loss_fm = loss_adv = loss_kl = loss_stft = zero
            if d_out is not None:
                loss_fm = feature_loss(d_out.real_fmaps, d_out.fake_fmaps)
                loss_adv = generator_loss(d_out.fake_logits)
            if out.z_p is not None:
                loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.spec_mask)
            if self.stft_loss is not None:
                loss_stft = self.stft_loss(y_hat, y)
            loss_lf0 = (F.mse_loss(out.pred_lf0.float(), out.norm_lf0.float()) if out.pred_lf0 is not None else zero)
            loss_spk = spk_acc = zero
            loss_content = self.content_loss(y_hat, y) if self.content_loss is not None else zero
            if self.speaker_probe is not None:
                loss_spk, spk_acc = self.speaker_probe.loss(out.m_p.float(), out.spec_mask, batch.speaker,
                                                            self.hparams.speaker_adversary)
            loss_g = (loss_adv + loss_fm + loss_mel * self.hparams.c_mel + loss_kl * self.hparams.c_kl
                      + loss_stft * self.hparams.c_stft + loss_lf0 + loss_spk + loss_content * self.hparams.c_content)
        if self._all_finite(loss_g):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self._nonfinite = 0
        else:
            opt_g.zero_grad(set_to_none=True)
            self._skip_nonfinite("generator")
        self.untoggle_optimizer(opt_g)

        logs = {"loss/g/total": loss_g, "loss/g/mel": loss_mel, "loss/g/lf0": loss_lf0,
                "learning_rate": opt_g.param_groups[0]["lr"],
                "grad_norm_g": self._grad_norms.get(id(opt_g.optimizer), 0.0)}
        if opt_d is not None:
            logs.update({"loss/d/total": loss_d, "loss/g/fm": loss_fm, "loss/g/adv": loss_adv,
                         "grad_norm_d": self._grad_norms.get(id(opt_d.optimizer), 0.0)})
        if out.z_p is not None:
            logs["loss/g/kl"] = loss_kl
        if self.stft_loss is not None:
            logs["loss/g/stft"] = loss_stft
        if self.content_loss is not None:
            logs["loss/g/content"] = loss_content
        if self.speaker_probe is not None:
            logs["speaker_probe/loss"] = loss_spk
            logs["speaker_probe/accuracy"] = spk_acc
        self.log_dict({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=batch.f0.size(0))
        self.log("mel", float(loss_mel.detach()), prog_bar=True, on_step=True, logger=False, batch_size=batch.f0.size(0))
        return loss_g.detach()

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_random_state(checkpoint)
        checkpoint["svc_pl_counters"] = {"nonfinite": self._nonfinite, "val_runs": self._val_runs}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        stats = datamodule.unit_stats() if hasattr(datamodule, "unit_stats") else None
        stats = stats or getattr(self, "_unit_stats", None)  # a resumed run keeps what its checkpoint had
        if stats:
            checkpoint["unit_stats"] = stats  # the training speakers' unit statistics, for --match-units

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._upgrade_optimizer_state(checkpoint)
        restore_random_state(checkpoint)  # a resumed run draws what the uninterrupted one would have
        self._unit_stats = checkpoint.get("unit_stats")
        counters = checkpoint.get("svc_pl_counters", {})
        self._nonfinite = counters.get("nonfinite", 0)
        self._val_runs = counters.get("val_runs", 0)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch, batch_idx: int):
        audio, f0 = self.net.infer(batch.units, batch.f0, batch.voiced, batch.speaker, noise_scale=0.0,
                                   predict_f0=False, vol=batch.volume if self.net.vol_embedding else None)
        n = min(audio.shape[-1], batch.audio.shape[-1])
        loss, mel_hat, mel = self.mel_loss(audio[..., :n], batch.audio[..., :n])
        self.log("val/mel", loss, batch_size=1, sync_dist=True, prog_bar=True)
        if (self.trainer.is_global_zero and self._val_runs % max(1, self.hparams.val_media_every) == 0
                and not self.trainer.sanity_checking):
            from svc_pl.lightning.media import log_validation_media

            log_validation_media(self.logger, self.global_step, batch_idx, audio[0, 0], batch.audio[0, 0, :n], mel_hat[0],
                                 mel[0], batch.f0[0] * batch.voiced[0], int(self.hparams.dataset_info["sampling_rate"]))
        return loss

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._val_runs += 1

    # ------------------------------------------------------------------ export
    def export_sovits(self, out_dir: str | Path, speech_encoder: str | None = None, global_step: int | None = None,
                      epoch: int | None = None) -> dict[str, Path]:
        """Write ``G_<step>.pth``, ``D_<step>.pth`` and ``config.json`` that so-vits-svc 4.1 loads
        (:func:`svc_pl.compat.export.export_synthesizer`).

        ``global_step``/``epoch``: the training position (default: this module's, which is 0 outside a trainer;
        pass a checkpoint's ``global_step`` and ``epoch`` when exporting one)."""
        from svc_pl.compat.export import export_synthesizer

        return export_synthesizer(self.net, self.disc, dict(self.hparams), out_dir, speech_encoder=speech_encoder,
                                  global_step=self.global_step if global_step is None else global_step,
                                  epoch=self.current_epoch if epoch is None else epoch)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def _content_loss_encoder(path: str, info: dict[str, Any]) -> torch.nn.Module:
    """The frozen encoder of ``model.c_content``: Whisper weights (a short name, CTranslate2 folder or checkpoint)
    as Whisper, anything else as the dataset's own encoder kind."""
    from svc_pl.data.content import WHISPER_ENCODERS, load_content_encoder
    from svc_pl.data.whisper import is_whisper_weights

    kind = info["content_encoder"]
    name = kind if kind in WHISPER_ENCODERS or not is_whisper_weights(path) else "whisper-ppg"
    try:
        return load_content_encoder(name, path)
    except UserFacingError as err:
        raise UserFacingError(f"model.content_loss_encoder: {err}") from err


class SpeakerProbe(torch.nn.Module):
    """Per-frame speaker classifier on the prior's output, behind a gradient reversal (``speaker_adversary``)."""

    def __init__(self, channels: int, n_speakers: int, hidden: int = 128):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv1d(channels, hidden, 1), torch.nn.LeakyReLU(0.1),
                                       torch.nn.Conv1d(hidden, n_speakers, 1))

    def loss(self, m_p: torch.Tensor, mask: torch.Tensor, speaker: torch.Tensor, weight: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the probe over the valid frames of ``m_p`` (B, C, T) and its frame accuracy. The probe
        descends it; the prior, through the reversal, ascends it ``weight`` times. ``speaker``: (B,) ids (training
        batches hold ids, :class:`~svc_pl.data.dataset.Batch`)."""
        logits = self.net(_ReverseGradient.apply(m_p, weight))  # (B, S, T)
        target = speaker.long().view(-1, 1).expand(-1, logits.size(-1))
        valid = mask[:, 0] > 0
        ce = F.cross_entropy(logits, target, reduction="none")
        n = valid.sum().clamp(min=1)
        acc = ((logits.argmax(1) == target) & valid).sum() / n
        return (ce * valid).sum() / n, acc.detach().float()

"""The training module: synthesizer + multi-period discriminator trained with the so-vits-svc 4.1
recipe under Lightning's manual optimization (discriminator step, then generator step)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from svc_pl.errors import CheckpointMismatchError, UserFacingError
from svc_pl.layers.commons import slice_segments
from svc_pl.layers.ddsp import MultiResolutionSTFTLoss
from svc_pl.layers.discriminator import MultiPeriodDiscriminator
from svc_pl.lightning.losses import MelLoss, discriminator_loss, feature_loss, generator_loss, kl_loss
from svc_pl.synthesizer import NetConfig, Synthesizer

__all__ = ["NetConfig", "NonFiniteLossError", "SVCModule"]

LOG = logging.getLogger(__name__)


class NonFiniteLossError(UserFacingError, RuntimeError):
    """Training stopped after ``max_nonfinite_steps`` consecutive NaN/inf losses (the message says what to try)."""


def _read_run_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict of an svc_pl ``.ckpt`` (read weights-only; errors name the file)."""
    from svc_pl.run_checkpoint import read_ckpt

    return read_ckpt(path)["state_dict"]


def _trained_source_rate(path: str) -> tuple[int, str] | None:
    """The NSF source rate the generator in ``path`` was trained with, and where that was read; None for the
    shipped bases (``.safetensors``), whose settings are checked against the run's when they load.

    A so-vits-svc ``G_*.pth``: its ``config.json`` (beside it, where upstream's training keeps it), else
    so-vits-svc's default 44100 Hz. An svc_pl ``.ckpt``: its ``net.source_sampling_rate``, else its data's rate.
    """
    from svc_pl.compat.config import UPSTREAM_SOURCE_RATE, read_sovits_config
    from svc_pl.pretrained import pretrained_path

    if pretrained_path(str(path)) is not None or str(path).endswith(".safetensors"):
        return None
    if str(path).endswith(".ckpt"):
        from svc_pl.run_checkpoint import read_ckpt

        hp = read_ckpt(path).get("hyper_parameters") or {}
        rate = (hp.get("net") or {}).get("source_sampling_rate") or (hp.get("dataset_info") or {}).get("sampling_rate")
        return (int(rate), f"{path}'s hyper-parameters") if rate else None
    config = Path(path).with_name("config.json")
    if config.is_file():
        return read_sovits_config(config).source_sampling_rate, str(config)
    return UPSTREAM_SOURCE_RATE, "so-vits-svc's default: no config.json beside it"


def _source_rate_for_init(net: dict[str, Any], init_from: str, data_rate: int) -> int | None:
    """``net.source_sampling_rate`` for a run that starts from ``init_from``: the rate its generator was trained
    with (None when that is the data's), so fine-tuning keeps the source the weights learned; a rate the run's
    config sets explicitly wins, with a warning when it differs."""
    given = net.get("source_sampling_rate")
    trained = _trained_source_rate(init_from) if net.get("decoder") == "nsf-hifigan" else None
    if trained is None:
        return given
    rate, where = trained
    if given is not None:
        if int(given) != rate:
            LOG.warning("%s was trained with its NSF source at %d Hz (%s) but model.net.source_sampling_rate is %d: "
                        "fine-tuning with the config's", init_from, rate, where, int(given))
        return given
    if rate != data_rate:
        LOG.info("%s: NSF source at %d Hz (%s), not the data's %d Hz: kept for fine-tuning and export",
                 init_from, rate, where, data_rate)
        return rate
    return None


def _load_with_advice(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str, advice: str,
                      reinit_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``state`` into ``module`` (tables under ``reinit_prefixes`` of another size keep their initial values);
    returns the keys left at their initial values. A mismatch lists every tensor, then ``advice``."""
    from svc_pl.compat.checkpoint import load_state_into

    try:
        return load_state_into(module, state, str(path), reinit_prefixes=reinit_prefixes)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(err.path, err.missing, err.unexpected, err.mismatched, f"  {advice}") from None


def _same_run_advice(option: str, settings: str) -> str:
    return (f"{option} takes a run of the same {settings}: train with that run's config.yaml (beside its "
            "checkpoints/ folder) or drop the option")


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
    """

    def __init__(self, net: NetConfig | None = None, dataset_info: dict[str, Any] | None = None,
                 segment_frames: int = 20, segment_size: int | None = None, learning_rate: float = 1e-4,
                 betas: tuple[float, float] = (0.8, 0.99),
                 eps: float = 1e-9, lr_decay: float = 0.999875, warmup_epochs: int = 0, c_mel: float = 45.0,
                 c_kl: float = 1.0, n_mels: int = 80, mel_fmin: float = 0.0, mel_fmax: float | None = None,
                 grad_clip: float | None = None, init_from: str | None = None,
                 init_discriminator_from: str | None = None, max_nonfinite_steps: int = 10,
                 val_media_every: int = 1, discriminator_width: float = 1.0, use_discriminator: bool = True,
                 c_stft: float = 0.0):
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
            net["source_sampling_rate"] = _source_rate_for_init(net, init_from, int(info["sampling_rate"]))
        self.save_hyperparameters({"net": net, "dataset_info": info} | params)
        self.automatic_optimization = False
        self.hop_length = hop
        self.segment_frames = int(segment_frames)
        self.segment_size = self.segment_frames * hop  # samples
        self.net = Synthesizer.from_config(net, info, self.segment_frames)
        self.disc = MultiPeriodDiscriminator(width=discriminator_width) if use_discriminator else None
        self.stft_loss = MultiResolutionSTFTLoss() if c_stft > 0 else None
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
        """Initialise the generator from a so-vits-svc G_*.pth (speaker table re-initialised if its size
        differs) or from the ``net.*`` weights of an svc_pl checkpoint."""
        from svc_pl.compat.checkpoint import load_state_into
        from svc_pl.pretrained import load_base, pretrained_path

        base = pretrained_path(str(path))
        if base is not None or str(path).endswith(".safetensors"):
            state, meta = load_base(base or path)
            want, have = dict(self.hparams.net), meta.get("net", {})
            differ = sorted(k for k in have if k in want and have[k] != want[k])
            if differ:
                raise UserFacingError(f"{path}: the base was trained with other model settings ({', '.join(differ)}); "
                                      "fine-tune it with its own config (--config tiny for tiny-base)")
            base_info, info = meta.get("dataset_info", {}), self.hparams.dataset_info
            base_rate = (int(base_info.get("sampling_rate", 0)), int(base_info.get("hop_length", 0)))
            our_rate = (int(info["sampling_rate"]), int(info["hop_length"]))
            if 0 not in base_rate and base_rate != our_rate:
                raise UserFacingError(
                    f"{path}: the base is a {base_rate[0]} Hz / hop {base_rate[1]} model but this dataset is "
                    f"{our_rate[0]} Hz / hop {our_rate[1]}: preprocess with --sampling-rate {base_rate[0]} "
                    f"--hop-length {base_rate[1]}, or train without the base")
            if int(base_info.get("unit_dim", self.net.ssl_dim)) != self.net.ssl_dim:
                raise UserFacingError(
                    f"{path}: the base takes {meta['dataset_info']['unit_dim']}-d units "
                    f"({meta['dataset_info'].get('content_encoder')}) but this dataset has {self.net.ssl_dim}-d units: "
                    "preprocess with the base's encoder (--encoder whisper-ppg --content-encoder whisper-tiny.en)")
            base_window, our_window = dict(base_info.get("unit_window") or {}), dict(info.get("unit_window") or {})
            if base_window != our_window:
                flag = ",".join(str(base_window[k]) for k in ("window_frames", "chunk_frames", "lookahead_frames")
                                ) if base_window else "off"
                raise UserFacingError(
                    f"{path}: the base was trained on units made {_window_words(base_window)} but this dataset's "
                    f"units are made {_window_words(our_window)}: preprocess again with --unit-window {flag}")
            load_state_into(self.net, state, str(path), reinit_prefixes=("emb_g.",))
            table = state.get("emb_g.weight")
            if table is not None and table.shape != self.net.emb_g.weight.shape:
                # new speakers start at the base's average voice (a random vector is far from any it learned)
                with torch.no_grad():
                    gen = torch.Generator().manual_seed(0)
                    noise = torch.randn(self.net.emb_g.weight.shape, generator=gen) * table.std(0) * 0.1
                    self.net.emb_g.weight.copy_(table.mean(0, keepdim=True) + noise)
                LOG.info("speaker table re-initialised to the base's mean speaker (%d -> %d speakers)",
                         table.shape[0], self.net.emb_g.weight.shape[0])
        elif str(path).endswith(".ckpt"):
            state = {k[4:]: v for k, v in _read_run_checkpoint(path).items() if k.startswith("net.")}
            left = _load_with_advice(self.net, state, path, _same_run_advice("--model.init_from", "model.net settings"),
                                     reinit_prefixes=("emb_g.",))
            if any(k.startswith("emb_g.") for k in left):
                LOG.warning("%s: speaker table has %d rows, this dataset %d speakers: re-initialised emb_g",
                            path, state["emb_g.weight"].shape[0], self.net.emb_g.weight.shape[0])
        else:
            from svc_pl.compat import load_sovits_weights

            load_sovits_weights(self.net, path, finetune=True)
        LOG.info("generator initialised from %s", path)

    def load_discriminator_weights(self, path: str) -> None:
        """Initialise the discriminator from a so-vits-svc ``D_*.pth`` or the ``disc.*`` weights of an svc_pl
        ``.ckpt``; either must have this model's width (``discriminator_width``)."""
        from svc_pl.compat.checkpoint import read_checkpoint

        if self.disc is None:
            raise UserFacingError(f"{path}: --model.init_discriminator_from was given but this model trains without "
                                  "a discriminator (model.use_discriminator: false); drop the option")
        if str(path).endswith(".ckpt"):
            state = {k[5:]: v for k, v in _read_run_checkpoint(path).items() if k.startswith("disc.")}
            if not state:
                raise UserFacingError(f"{path}: that run trained without a discriminator (no disc.* weights); drop "
                                      "--model.init_discriminator_from")
            advice = _same_run_advice("--model.init_discriminator_from", "model.discriminator_width")
        else:
            state = read_checkpoint(path)["model"]
            advice = (f"--model.init_discriminator_from takes a D_*.pth of this model's discriminator width "
                      f"({self.hparams.discriminator_width}; so-vits-svc's are 1.0): set --model.discriminator_width "
                      "to the file's")
        _load_with_advice(self.disc, state, path, advice)
        LOG.info("discriminator initialised from %s", path)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        opts = [torch.optim.AdamW(self.net.parameters(), hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps)]
        if self.disc is not None:
            opts.append(torch.optim.AdamW(self.disc.parameters(), hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps))
        warmup, decay = hp.warmup_epochs, hp.lr_decay

        def factor(epoch: int) -> float:
            ramp = min(1.0, (epoch + 1) / warmup) if warmup > 0 else 1.0
            return ramp * decay**epoch

        sched = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in opts]
        return opts, [{"scheduler": s, "interval": "epoch"} for s in sched]

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
            loss_g = (loss_adv + loss_fm + loss_mel * self.hparams.c_mel + loss_kl * self.hparams.c_kl
                      + loss_stft * self.hparams.c_stft + loss_lf0)
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
        self.log_dict({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=batch.f0.size(0))
        self.log("mel", float(loss_mel.detach()), prog_bar=True, on_step=True, logger=False, batch_size=batch.f0.size(0))
        return loss_g.detach()

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["svc_pl_rng"] = {"torch": torch.get_rng_state(),
                                    "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
                                    "python": random.getstate(),
                                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        checkpoint["svc_pl_counters"] = {"nonfinite": self._nonfinite, "val_runs": self._val_runs}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import random

        import numpy as np

        rng = checkpoint.get("svc_pl_rng")
        if rng:  # restore the random state, so a resumed run draws what the uninterrupted one would have
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])
            if rng.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
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
        """Write ``G_<step>.pth``, ``D_<step>.pth`` and ``config.json`` that so-vits-svc 4.1 loads.

        ``global_step``/``epoch``: the training position (default: this module's, which is 0 outside a trainer;
        pass a checkpoint's ``global_step`` and ``epoch`` when exporting one)."""
        from svc_pl.compat import save_sovits, save_sovits_discriminator, sovits_config_for, write_json_atomic
        from svc_pl.synthesizer import synthesizer_kwargs

        if self.net.decoder != "nsf-hifigan" or self.disc is None:
            raise UserFacingError("this model uses the DDSP decoder (or no discriminator), which so-vits-svc has no "
                                  "format for: use the .ckpt with svc-pl infer")
        out = Path(out_dir)
        info = self.hparams.dataset_info
        kwargs = synthesizer_kwargs(dict(self.hparams.net), info, self.segment_frames)
        cfg = sovits_config_for(kwargs, self.speakers, hop_length=self.hop_length,
                                filter_length=int(info["filter_length"]), win_length=int(info["win_length"]),
                                n_mel_channels=self.hparams.n_mels, mel_fmin=self.hparams.mel_fmin,
                                mel_fmax=self.hparams.mel_fmax, segment_size_samples=self.segment_size,
                                speech_encoder=speech_encoder or info["content_encoder"],
                                unit_interpolate_mode=info["unit_interpolate_mode"])
        cfg.train.update(learning_rate=self.hparams.learning_rate, betas=list(self.hparams.betas), eps=self.hparams.eps,
                         lr_decay=self.hparams.lr_decay, c_mel=self.hparams.c_mel, c_kl=self.hparams.c_kl,
                         warmup_epochs=self.hparams.warmup_epochs)
        global_step = self.global_step if global_step is None else global_step
        epoch = self.current_epoch if epoch is None else epoch
        step = int(global_step // 2)
        paths = {"G": out / f"G_{step}.pth", "D": out / f"D_{step}.pth", "config": out / "config.json"}
        lr = self.hparams.learning_rate * self.hparams.lr_decay ** max(0, epoch)
        save_sovits(self.net, paths["G"], iteration=step, learning_rate=lr)
        save_sovits_discriminator(self.disc, paths["D"], iteration=step, learning_rate=lr)
        write_json_atomic(paths["config"], cfg.to_dict())
        return paths


def _window_words(window: dict[str, int]) -> str:
    if not window:
        return "from whole clips"
    return (f"in windows of {window['window_frames']} frames, {window['chunk_frames']} at a time with "
            f"{window['lookahead_frames']} of look-ahead")

"""LightningCLI for svc_pl: YAML configs with class_path/init_args, data-dependent model values linked
from the data module, atomic checkpoints, GAN-safe DDP by default, and a resume that resumes.

``--ckpt_path last`` resumes from the newest ``last.ckpt`` anywhere under the run (``trainer.default_root_dir``,
the logger's ``save_dir`` and any ``ModelCheckpoint`` ``dirpath``) and logs on into the logger version that
wrote it; with no such file, or an unreadable one, it stops instead of starting over or falling back to an older
step, and names the run's newest other checkpoint to resume from. ``--ckpt_path FILE`` is read (``weights_only``)
before anything is built, so a bad file is named at once; that run logs to a new version, as Lightning does.
Either way the model is built from the config on the command line, not re-parsed from the checkpoint. A run folder
moved or copied elsewhere resumes there and goes on writing its ``last.ckpt`` (``checkpoint_io.MovedRunCheckpoints``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningCLI

from svc_pl.data.datamodule import SVCDataModule
from svc_pl.errors import UserFacingError
from svc_pl.lightning.module import SVCModule
from svc_pl.lightning.ranks import close_process_group

LOG = logging.getLogger(__name__)

# ckpt_path values that Lightning resolves itself
_LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")
_LAST = re.compile(r"last(-v\d+)?\.ckpt")
_VERSION = re.compile(r"version_(\d+)")


class SVCLightningCLI(LightningCLI):
    """LightningCLI with svc_pl's resume, checkpointing and defaults (see the module's docstring).

    ``model_class_path``: with ``model_class=None`` (any LightningModule, named by ``model.class_path``), the class a
    config that gives only settings (``model.init_args`` or plain ``model`` keys) is taken to mean.
    """

    _ckpt_request: str | None = None  # --ckpt_path as given
    _resume_version: int | str | None = None  # logger version the resumed checkpoint was written under

    def __init__(self, *args, model_class_path: str | None = None, **kwargs):
        self.model_class_path = model_class_path
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        if self.subclass_mode_model and self.model_class_path:
            parser.set_defaults({"model": {"class_path": self.model_class_path}})
        # Unit dim, speaker table, sample rate, hop and FFT sizes are stated once: by the dataset.
        target = "model.init_args.dataset_info" if self.subclass_mode_model else "model.dataset_info"
        parser.link_arguments("data.dataset_info", target, apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then hold ``ckpt_path`` back until :meth:`before_instantiate_classes` resolves it.

        Held back, Lightning neither loads the file before it is checked nor rebuilds the model from the
        checkpoint's hyper-parameters: the model comes from the config given (use the run's ``config.yaml``).
        """
        super().parse_arguments(parser, args)
        cfg = self._subcommand_config(self.config)
        if cfg is not None and cfg.get("ckpt_path"):
            self._ckpt_request = str(cfg["ckpt_path"])
            cfg["ckpt_path"] = None

    def before_instantiate_classes(self) -> None:
        cfg = self._subcommand_config(self.config)
        trainer = cfg.get("trainer")
        if trainer is None:
            return
        if several_processes(trainer) and trainer.get("strategy") in (None, "auto"):
            # Two optimizers and two backward passes per step: DDP must tolerate parameters without
            # gradients in a pass (the generator's during the discriminator step, and vice versa).
            trainer["strategy"] = "ddp_find_unused_parameters_true"
        if self._ckpt_request is not None:
            cfg["ckpt_path"] = self._resolve_ckpt_path(self._ckpt_request, trainer)

    def _resolve_ckpt_path(self, request: str, trainer) -> str:
        """``last`` -> the run's newest last.ckpt (and the logger version to continue); a file -> checked."""
        from svc_pl.lightning.checkpoint_io import remove_stale_temp_files
        from svc_pl.run_checkpoint import read_ckpt

        if request in _LIGHTNING_CKPT_NAMES or request.startswith("registry:"):
            return request
        if request == "last":
            roots = run_roots(trainer)
            path = find_last_checkpoint(roots)
            if path is None:
                other = newest_checkpoint(roots)
                advice = f"resume from its newest checkpoint with --ckpt_path {other}, or " if other else ""
                raise UserFacingError(f"no last.ckpt found under {', '.join(str(r) for r in roots)}; {advice}drop "
                                      "--ckpt_path to start a new run")
            try:  # an unreadable newest checkpoint is named, not skipped: the user chooses what to lose
                read_ckpt(path)
            except UserFacingError as err:
                other = newest_checkpoint(roots, besides=path)
                advice = (f"The run's newest other checkpoint: --ckpt_path {other}" if other else
                          "The run has no other checkpoint: delete it and drop --ckpt_path to start a new run.")
                raise UserFacingError(f"{err} {advice}") from None
            self._continue_logger_version(trainer, path)
            remove_stale_temp_files(path.parent)  # what a crash left beside it
            LOG.info("resuming from %s", path)
            return str(path)
        read_ckpt(request)  # a missing, truncated or unsafe file is named here, before anything is built
        return request

    def _continue_logger_version(self, trainer, ckpt: Path) -> None:
        """Log on into ``<save_dir>/<name>/<version>/`` when ``ckpt`` is that version's ``checkpoints/`` file."""
        if ckpt.parent.name != "checkpoints":
            return  # a ModelCheckpoint dirpath of its own: the checkpoints go on there whatever the logger
        version_dir = ckpt.parent.parent
        match = _VERSION.fullmatch(version_dir.name)
        version = int(match.group(1)) if match else version_dir.name
        logger = trainer.get("logger")
        root = Path(trainer.get("default_root_dir") or os.getcwd())
        if logger in (None, True):
            if _same_dir(version_dir.parent, root / "lightning_logs"):
                self._resume_version = version  # Lightning's own default logger, with this version
            return
        init = logger.get("init_args") if hasattr(logger, "get") else None
        if init is None or "version" not in init or init.get("version") is not None:
            return  # no logger, several, or one whose version the user chose
        save_dir = init.get("save_dir") or root
        if _same_dir(version_dir.parent, Path(save_dir) / str(init.get("name") or "lightning_logs")):
            init["version"] = version

    def instantiate_trainer(self, **kwargs):
        from pytorch_lightning.loggers import TensorBoardLogger
        from pytorch_lightning.plugins.io import CheckpointIO

        from svc_pl.lightning.checkpoint_io import AtomicCheckpointIO, MovedRunCheckpoints

        trainer_cfg = self._subcommand_config(self.config_init).get("trainer", {})
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # checkpoints are written atomically
            trainer_cfg["plugins"] = plugins
        callbacks = trainer_cfg.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(default_model_checkpoint())
        if not any(isinstance(c, MovedRunCheckpoints) for c in callbacks):
            callbacks.append(MovedRunCheckpoints())  # a moved or copied run resumed in place keeps its last.ckpt
        bar_wanted = trainer_cfg.get("enable_progress_bar") is not False
        if bar_wanted and not any(isinstance(c, ProgressBar) for c in callbacks):
            bar = default_progress_bar()
            callbacks.extend([bar] if bar is not None else [])
        trainer_cfg["callbacks"] = callbacks
        if self._resume_version is not None and "logger" not in kwargs:
            root = trainer_cfg.get("default_root_dir") or os.getcwd()
            kwargs["logger"] = TensorBoardLogger(save_dir=root, version=self._resume_version)
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """One line for the model instead of Lightning's table (``--trainer.enable_model_summary true`` for that)."""
        parts = [f"{name} {_millions(child)}" for name, child in self.model.named_children() if _millions(child)]
        LOG.info("training %s: %s parameters (%s)", type(self.model).__name__, _millions(self.model), ", ".join(parts))

    def after_fit(self) -> None:
        """The stage line a run ends with: the step reached and the checkpoint to resume or export from."""
        ckpt = self.trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
        LOG.info("stopped at step %d%s", self.trainer.global_step, f"; last checkpoint: {last}" if last else "")

    def _subcommand_config(self, config):
        sub = config.get("subcommand")
        return config.get(sub, config) if sub else config


def run_roots(trainer) -> list[Path]:
    """Folders a run writes checkpoints under: ``default_root_dir``, loggers' ``save_dir``, ``ModelCheckpoint``
    ``dirpath`` (read from the parsed, not yet instantiated ``trainer`` config)."""
    roots = [Path(trainer.get("default_root_dir") or os.getcwd())]
    logger = trainer.get("logger")
    for item in logger if isinstance(logger, list) else [logger]:
        init = item.get("init_args") if hasattr(item, "get") else None
        if init is not None and init.get("save_dir"):
            roots.append(Path(init["save_dir"]))
    for item in trainer.get("callbacks") or []:
        init = item.get("init_args") if hasattr(item, "get") else None
        if init is not None and init.get("dirpath"):
            roots.append(Path(init["dirpath"]))
    unique = []
    for root in roots:
        if not any(_same_dir(root, u) for u in unique):
            unique.append(root)
    return unique


def find_last_checkpoint(roots: list[Path]) -> Path | None:
    """The most recently written ``last.ckpt`` (or ``last-vN.ckpt``) under any of ``roots``."""
    return newest_checkpoint(roots, only_last=True)


def newest_checkpoint(roots: list[Path], besides: Path | None = None, only_last: bool = False) -> Path | None:
    """The most recently written ``.ckpt`` under any of ``roots`` other than ``besides`` (``only_last``: of the
    ``last.ckpt`` / ``last-vN.ckpt`` files alone)."""
    skip = besides.resolve() if besides is not None else None
    found = {p.resolve() for root in roots if root.is_dir() for p in root.rglob("*.ckpt")
             if p.is_file() and (not only_last or _LAST.fullmatch(p.name))} - {skip}
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)), default=None)


def several_processes(trainer) -> bool:
    """Whether the parsed ``trainer`` config runs more than one process (devices x nodes), counting
    ``devices: auto`` (Lightning's default) and ``-1`` as Lightning does: every GPU when it trains on GPUs."""
    devices, accelerator = trainer.get("devices"), str(trainer.get("accelerator") or "auto")
    if (trainer.get("num_nodes") or 1) > 1:
        return True
    if devices in (None, "auto", -1, "-1"):
        import torch

        return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1
    if isinstance(devices, str) and "," in devices:  # GPU indices, "0,1"
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, list | tuple):
        return len(devices) > 1
    try:
        return int(devices) > 1
    except ValueError:
        return False  # Lightning says what is wrong with it


def _millions(module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.1f} M" if n else ""


def _same_dir(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def default_model_checkpoint():
    """The ModelCheckpoint a config without one gets: the newest three by step, and ``last.ckpt``."""
    return ModelCheckpoint(filename="{epoch}-{step}", save_last=True, save_top_k=3, monitor="step", mode="max",
                           every_n_train_steps=1600)


def default_progress_bar():
    """The bar a run without one gets: "Epoch 3" and "step: 120/20000" (:mod:`svc_pl.lightning.progress`) where
    Lightning's rich bar would write "Epoch 3/-2"; None without ``rich`` (Lightning's tqdm bar: "Epoch 3")."""
    if importlib.util.find_spec("rich") is None:
        return None
    from svc_pl.lightning.progress import StepProgressBar

    return StepProgressBar()


def trainer_defaults() -> dict:
    # No default callbacks: a ModelCheckpoint is added by SVCLightningCLI.instantiate_trainer only when the config
    # has none (two would write last.ckpt and last-v1.ckpt), and SVCModule logs ``learning_rate`` itself (a
    # LearningRateMonitor would log it again as lr-AdamW, lr-AdamW-1). The model summary is one line (before_fit).
    return {
        "log_every_n_steps": 50,
        "max_epochs": -1,
        "enable_model_summary": False,
    }


def main(args: list[str] | None = None) -> None:
    """``fit``/``validate`` through :class:`SVCLightningCLI`. The LightningModule is the one the configs name with
    ``model.class_path`` (settings under ``model.init_args``); without one, the synthesizer's :class:`SVCModule`, or
    for an older config that sets ``model.diffusion`` the diffusion model's (see :mod:`svc_pl.configs`)."""
    from svc_pl.configs import model_class_path, trains_diffusion

    class_path = model_class_path(args)
    if class_path:  # the configs name the class: LightningCLI's own class_path/init_args form
        model_class, subclass_mode = None, True
    elif trains_diffusion(args):
        from svc_pl.lightning.diffusion_module import DiffusionModule

        model_class, subclass_mode = DiffusionModule, False
    else:
        model_class, subclass_mode = SVCModule, False
    try:
        SVCLightningCLI(model_class, SVCDataModule, subclass_mode_model=subclass_mode, model_class_path=class_path,
                        trainer_defaults=trainer_defaults(), args=args, save_config_kwargs={"overwrite": True},
                        seed_everything_default=1234)
    finally:
        close_process_group()

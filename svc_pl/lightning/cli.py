"""LightningCLI for svc_pl: YAML configs with class_path/init_args, data-dependent model values linked
from the data module, atomic checkpoints, and GAN-safe DDP by default."""

from __future__ import annotations

from pytorch_lightning.cli import LightningCLI

from svc_pl.data.datamodule import SVCDataModule
from svc_pl.lightning.module import SVCModule


class SVCLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Unit dim, speaker table, sample rate, hop and FFT sizes are stated once: by the dataset.
        parser.link_arguments("data.dataset_info", "model.dataset_info", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = cfg.get("trainer")
        if trainer is None:
            return
        devices = trainer.get("devices")
        multi = devices not in (None, 1, "1", "auto", [0]) or (trainer.get("num_nodes") or 1) > 1
        if multi and trainer.get("strategy") in (None, "auto"):
            # Two optimizers and two backward passes per step: DDP must tolerate parameters without
            # gradients in a pass (the generator's during the discriminator step, and vice versa).
            trainer["strategy"] = "ddp_find_unused_parameters_true"

    def _parse_ckpt_path(self) -> None:
        """Check a resume checkpoint up front, with an error naming the file if it cannot be read.

        The model is built from the config given on the command line (use the run's saved
        ``config.yaml``); Lightning's default of re-parsing hyper-parameters from the checkpoint is skipped.
        """
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and not str(ckpt_path).startswith(
                "registry:"):
            from svc_pl.lightning.checkpoint_io import AtomicCheckpointIO

            AtomicCheckpointIO().load_checkpoint(ckpt_path)

    def instantiate_trainer(self, **kwargs):
        from pytorch_lightning.plugins.io import CheckpointIO

        from svc_pl.lightning.checkpoint_io import AtomicCheckpointIO

        cfg = self.config_init.get(self.subcommand, self.config_init) if self.subcommand else self.config_init
        trainer_cfg = cfg.get("trainer", {})
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # checkpoints are written atomically
            trainer_cfg["plugins"] = plugins
        return super().instantiate_trainer(**kwargs)


def trainer_defaults() -> dict:
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    return {
        "callbacks": [
            ModelCheckpoint(filename="{epoch}-{step}", save_last=True, save_top_k=3, monitor="step", mode="max",
                            every_n_train_steps=1600),
            LearningRateMonitor(logging_interval="epoch"),
        ],
        "log_every_n_steps": 50,
        "max_epochs": -1,
    }


def main(args: list[str] | None = None) -> None:
    SVCLightningCLI(SVCModule, SVCDataModule, trainer_defaults=trainer_defaults(), args=args,
                    save_config_kwargs={"overwrite": True}, seed_everything_default=1234)

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
        devices, accel = trainer.get("devices"), trainer.get("accelerator")
        multi = devices not in (None, 1, "1", "auto", [0]) or (trainer.get("num_nodes") or 1) > 1
        if multi and trainer.get("strategy") in (None, "auto"):
            # Two optimizers and two backward passes per step: DDP must tolerate parameters without
            # gradients in a pass (the generator's during the discriminator step, and vice versa).
            trainer["strategy"] = "ddp_find_unused_parameters_true"
        del accel


def trainer_defaults() -> dict:
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from svc_pl.lightning.checkpoint_io import AtomicCheckpointIO

    return {
        "plugins": [AtomicCheckpointIO()],
        "callbacks": [
            ModelCheckpoint(filename="{epoch}-{step}", save_last=True, save_top_k=3, monitor="step", mode="max",
                            every_n_train_steps=1600),
            LearningRateMonitor(logging_interval="epoch"),
            TQDMProgressBar(refresh_rate=5),
        ],
        "log_every_n_steps": 50,
        "max_epochs": -1,
    }


def main(args: list[str] | None = None) -> None:
    SVCLightningCLI(SVCModule, SVCDataModule, trainer_defaults=trainer_defaults(), args=args,
                    save_config_kwargs={"overwrite": True}, seed_everything_default=1234)

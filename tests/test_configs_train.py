"""The shipped so-vits-svc 4.1 configs train: ``svc-pl fit --config 44k`` and ``--config 44k-tiny`` (``# Extends:
44k`` plus overrides) each build their network and run one training step on a tiny 44.1 kHz / hop 512 dataset."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from svc_pl.cli import main as cli_main
from tests.datasets import make_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "svc_pl" / "configs"


@pytest.fixture(scope="module")
def dataset44(tmp_path_factory):
    # the 4.1 default's data: 44.1 kHz, hop 512, FFT 2048, 768-d units (vec768l12)
    return make_dataset(tmp_path_factory.mktemp("ds44"), sr=44100, hop=512, n_fft=2048, unit_dim=768,
                        voices=("en", "en+f3"), clips_per_voice=2)


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _shipped(name: str) -> dict:
    """Every setting the shipped config states, flattened (44k-tiny: 44k's, then its own lines over them)."""
    settings = _flat(yaml.safe_load((CONFIGS / "44k.yaml").read_text()))
    if name == "44k-tiny":
        settings.update(_flat(yaml.safe_load((CONFIGS / "44k-tiny.yaml").read_text())))
    return settings


@pytest.mark.slow
@pytest.mark.parametrize("name", ["44k", "44k-tiny"])
def test_shipped_44k_config_trains_one_step(tmp_path, dataset44, name):
    root = tmp_path / "run"
    try:
        # the config as shipped; only the run's size is cut: one batch of one short clip, no validation
        cut = {"trainer.default_root_dir": str(root), "trainer.accelerator": "cpu", "trainer.max_steps": 2,
               "trainer.limit_val_batches": 0, "trainer.enable_progress_bar": False, "trainer.log_every_n_steps": 1,
               "data.batch_size": 1, "data.num_workers": 0, "data.max_frames": 40, "model.segment_frames": 8}
        args = [item for key, value in cut.items() for item in (f"--{key}", str(value).lower())]
        assert cli_main(["fit", "--config", name, "--data.dataset_dir", str(dataset44), *args]) == 0
        # what ran is the shipped config: every setting it states (and that was not cut) is the run's
        (ran,) = root.rglob("config.yaml")
        ran = _flat(yaml.safe_load(ran.read_text()))
        differ = {k: (v, ran.get(k)) for k, v in _shipped(name).items() if k not in cut and ran.get(k) != v}
        assert not differ, differ
        (last,) = root.rglob("last.ckpt")  # the default checkpointing (44k.yaml names none) wrote it
        ckpt = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        assert ckpt["global_step"] == 2  # one batch: the discriminator's step and the generator's
        hp = ckpt["hyper_parameters"]
        net = {k[len("model.net."):]: v for k, v in _shipped(name).items() if k.startswith("model.net.")}
        assert {k: hp["net"][k] for k in net} == net
        assert hp["dataset_info"]["sampling_rate"] == 44100 and hp["dataset_info"]["hop_length"] == 512
        state = ckpt["state_dict"]
        g = sum(v.numel() for k, v in state.items() if k.startswith("net."))
        assert abs(g - {"44k": 52.25e6, "44k-tiny": 35.49e6}[name]) < 0.1e6, g  # tensors, weight-norm g/v counted
        assert any(".depth_conv." in k for k in state) == net["use_depthwise_conv"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        (events,) = root.rglob("events.out.tfevents.*")
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in ("loss/g/total", "loss/g/mel", "loss/g/kl", "loss/d/total", "grad_norm_g", "grad_norm_d"):
            values = [e.value for e in acc.Scalars(tag)]
            assert len(values) == 1 and np.isfinite(values).all(), (tag, values)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # a 44k checkpoint is about 1.2 GB

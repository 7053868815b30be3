"""The speaker table's own learning rate (``--model.speaker_lr_scale``): applied to the table and to nothing else,
and a checkpoint written before the table had its own optimizer group still resumes."""

from pathlib import Path

import pytest
import torch

from svc_pl.cli import main as cli_main
from svc_pl.lightning.module import SVCModule
from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]
TINY_NSF = str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml")
NET = {"decoder": "ddsp", "inter_channels": 16, "hidden_channels": 16, "filter_channels": 32, "n_heads": 2,
       "n_layers": 1, "gin_channels": 8, "ddsp_hidden": 16, "n_harmonics": 8, "n_noise_bands": 9}
INFO = {"speakers": {"a": 0, "b": 1}, "unit_dim": 32, "sampling_rate": 16000, "hop_length": 320,
        "filter_length": 1024, "win_length": 1024}


def test_the_speaker_table_steps_at_its_own_rate_and_nothing_else_does():
    torch.manual_seed(0)
    module = SVCModule(net=NET, dataset_info=INFO, learning_rate=1e-3, use_discriminator=False, c_stft=1.0,
                       speaker_lr_scale=40.0)
    opts, _ = module.configure_optimizers()
    (opt,) = opts
    table = module.net.emb_g.weight
    rest, own = opt.param_groups
    assert own["params"] == [table] and all(p is not table for p in rest["params"])
    assert len(rest["params"]) + 1 == len(list(module.net.parameters()))
    assert own["lr"] == pytest.approx(40 * rest["lr"]) and rest["lr"] == pytest.approx(1e-3)
    # one AdamW step on a loss that reaches every weight: each element moves by about its group's rate
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    loss = sum((p.float() * torch.randn_like(p)).sum() for p in module.net.parameters())
    loss.backward()
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in module.net.named_parameters()}
    assert moved["emb_g.weight"] == pytest.approx(40e-3, rel=0.05), moved["emb_g.weight"]
    others = max(v for n, v in moved.items() if n != "emb_g.weight")
    assert others <= 1.05e-3, others


def test_the_default_keeps_one_rate():
    module = SVCModule(net=NET, dataset_info=INFO, learning_rate=2e-4, use_discriminator=False)
    (opt,), _ = module.configure_optimizers()
    assert [g["lr"] for g in opt.param_groups] == [2e-4, 2e-4]


@pytest.mark.slow
def test_a_checkpoint_with_one_generator_group_resumes_with_the_table_at_its_rate(tmp_path, monkeypatch):
    """Checkpoints of svc_pl before the table had its own group hold one generator group (and one base rate in
    the scheduler): resumed now, the run goes on with the table's Adam moments kept and its rate scaled."""
    ds = make_dataset(tmp_path / "ds", voices=("en",), clips_per_voice=2)
    common = ["fit", "--config", TINY_NSF, "--data.dataset_dir", str(ds), "--trainer.enable_progress_bar", "false",
              "--trainer.limit_val_batches", "0", "--data.batch_size", "2"]
    new_layout = SVCModule._generator_param_groups
    monkeypatch.setattr(SVCModule, "_generator_param_groups", lambda self: self.net.parameters())
    assert cli_main([*common, "--trainer.default_root_dir", str(tmp_path / "old"), "--trainer.max_steps", "4"]) == 0
    (old_ckpt,) = (tmp_path / "old").rglob("last.ckpt")
    old = torch.load(old_ckpt, weights_only=True)
    assert len(old["optimizer_states"][0]["param_groups"]) == 1
    names = [n for n, _ in SVCModule(**old["hyper_parameters"]).net.named_parameters()]
    k = names.index("emb_g.weight")
    old_table_moment = old["optimizer_states"][0]["state"][k]["exp_avg"]

    monkeypatch.setattr(SVCModule, "_generator_param_groups", new_layout)
    seen = {}

    def record(self):
        opt = self.optimizers()[0].optimizer
        seen["groups"] = [dict(lr=g["lr"], n=len(g["params"])) for g in opt.param_groups]
        seen["table_moment"] = opt.state[self.net.emb_g.weight]["exp_avg"].clone()

    monkeypatch.setattr(SVCModule, "on_train_start", record)
    assert cli_main([*common, "--trainer.default_root_dir", str(tmp_path / "new"), "--trainer.max_steps", "8",
                     "--model.speaker_lr_scale", "10", "--ckpt_path", str(old_ckpt)]) == 0
    lr = old["optimizer_states"][0]["param_groups"][0]["lr"]
    assert seen["groups"] == [dict(lr=lr, n=len(names) - 1), dict(lr=pytest.approx(10 * lr), n=1)]
    assert torch.equal(seen["table_moment"], old_table_moment)  # the table's state went to the table
    (new_ckpt,) = (tmp_path / "new").rglob("last.ckpt")
    new = torch.load(new_ckpt, weights_only=True)
    assert new["global_step"] == 8 and len(new["optimizer_states"][0]["param_groups"]) == 2
    base = new["lr_schedulers"][0]["base_lrs"]
    assert len(base) == 2 and base[1] == pytest.approx(10 * base[0])

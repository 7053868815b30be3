"""Shallow-diffusion model: parity with so-vits-svc 4.1 (fixture from its own code), samplers, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from svc_pl.compat import load_sovits_diffusion, save_sovits_diffusion
from svc_pl.diffusion import METHODS, MelDiffusion
from svc_pl.errors import CheckpointMismatchError, UserFacingError

FIXTURE = Path(__file__).parent / "data" / "sovits_diffusion"
TOL = 1e-4


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def models():
    return {name: load_sovits_diffusion(FIXTURE / name / "model_0.pt", FIXTURE / name / "diffusion.yaml")
            for name in ("full", "shallow")}


def _inputs(fx, items):
    idx = torch.tensor(items)
    return [fx["inputs"][k][idx] for k in ("units", "f0", "volume")]


def _case_kwargs(fx, case, model):
    idx = torch.tensor(case["items"])
    speaker = {"ids": fx["inputs"]["speaker"][idx], "mix": fx["inputs"]["mix"], "none": None}[case["speaker"]]
    return dict(speaker=speaker, gt_mel=None if case["from_noise"] else fx["inputs"]["gt_mel"][idx],
                k_step=case["k_step"], method=case["method"], speedup=case["speedup"],
                aug_shift=fx["inputs"]["aug_shift"][idx] if model.aug_shift_embed is not None else None)


CASE_NAMES = [c["name"] for c in torch.load(FIXTURE / "cases.pt", weights_only=True)["cases"]]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_sampler_matches_upstream(fixture, models, name):
    case = next(c for c in fixture["cases"] if c["name"] == name)
    model = models[case["model"]]
    kwargs = _case_kwargs(fixture, case, model)
    if case["speedup"] > 1:  # deterministic samplers: the recorded initial noise
        mel = model.infer(*_inputs(fixture, case["items"]), noise=case["noise"], **kwargs)
        assert (mel - case["mel"]).abs().max() < TOL
    # every sampler (and DDPM's per-step noise) from a seed reproduces upstream's torch.manual_seed run
    mel = model.infer(*_inputs(fixture, case["items"]), generator=torch.Generator().manual_seed(case["seed"]),
                      **kwargs)
    assert mel.shape == case["mel"].shape
    assert (mel - case["mel"]).abs().max() < TOL


def test_every_method_is_covered_by_the_fixture(fixture):
    covered = {"ddpm" if c["speedup"] <= 1 else c["method"] for c in fixture["cases"]}
    assert covered == set(METHODS)


def test_training_loss_matches_upstream(fixture, models):
    inp = fixture["inputs"]
    for rec in fixture["losses"]:
        model = models[rec["model"]]
        kw = {"speaker": inp["speaker"] if model.n_speakers > 1 else None,
              "aug_shift": inp["aug_shift"] if model.aug_shift_embed is not None else None}
        loss = model(inp["units"], inp["f0"], inp["volume"], inp["gt_mel"], t=rec["t"], noise=rec["noise"], **kw)
        assert abs(loss.item() - rec["loss"].item()) < 1e-5
        torch.manual_seed(7)  # random step and noise drawn as upstream draws them: the same loss for a seed
        seeded = model(inp["units"], inp["f0"], inp["volume"], inp["gt_mel"], **kw)
        assert abs(seeded.item() - rec["loss"].item()) < 1e-5


def test_loss_trains_only_below_k_step_max(fixture):
    model = load_sovits_diffusion(FIXTURE / "shallow" / "model_0.pt", FIXTURE / "shallow" / "diffusion.yaml")
    inp = fixture["inputs"]
    seen = []
    denoise = model.decoder.denoise_fn.forward
    model.decoder.denoise_fn.forward = lambda x, step, cond: seen.extend(step.tolist()) or denoise(x, step, cond)
    torch.manual_seed(0)
    for _ in range(40):
        loss = model(inp["units"], inp["f0"], inp["volume"], inp["gt_mel"])
    assert model.k_step_max == 60 and 0 <= min(seen) and max(seen) < 60 and max(seen) > 40
    loss.backward()
    assert model.unit_embed.weight.grad is not None


@pytest.mark.parametrize("method", METHODS)
def test_k_step_zero_returns_the_input_mel(models, fixture, method):
    mel = fixture["inputs"]["gt_mel"]
    out = models["full"].infer(*_inputs(fixture, [0, 1]), fixture["inputs"]["speaker"], gt_mel=mel, k_step=0,
                               method=method)
    assert torch.equal(out, mel)


def test_seeded_sampling_is_repeatable(models, fixture):
    model = models["full"]
    args = _inputs(fixture, [0, 1])
    kw = dict(speaker=fixture["inputs"]["speaker"], gt_mel=fixture["inputs"]["gt_mel"], k_step=10, method="ddpm")
    a = model.infer(*args, generator=torch.Generator().manual_seed(3), **kw)
    b = model.infer(*args, generator=torch.Generator().manual_seed(3), **kw)
    c = model.infer(*args, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_shapes_for_any_length_and_batch(method):
    model = MelDiffusion(unit_dim=8, n_speakers=2, n_mels=10, n_layers=2, n_chans=8, n_hidden=6, timesteps=50).eval()
    for b, n in ((1, 1), (3, 17)):
        out = model.infer(torch.randn(b, n, 8), torch.full((b, n, 1), 220.0), torch.rand(b, n, 1),
                          torch.ones(b, dtype=torch.long), method=method, speedup=10)
        assert out.shape == (b, n, 10) and torch.isfinite(out).all()


def test_speaker_mix_and_time_varying_map(models, fixture):
    model = models["full"]
    units, f0, vol = _inputs(fixture, [0, 1])
    one_hot = torch.zeros(2, units.shape[1], 3)
    one_hot[..., 2] = 1.0
    by_id = model.condition(units, f0, vol, torch.tensor([2, 2]))
    assert torch.allclose(model.condition(units, f0, vol, one_hot), by_id, atol=1e-6)
    assert torch.allclose(model.condition(units, f0, vol, {2: 1.0}), by_id, atol=1e-6)
    half = torch.full((units.shape[1], 3), 0.0)
    half[:, 0] = half[:, 2] = 0.5
    mix = model.condition(units, f0, vol, {0: 0.5, 2: 0.5})
    assert torch.allclose(model.condition(units, f0, vol, half), mix, atol=1e-6)
    switch = one_hot.clone()  # speaker 0 for the first half of the frames, speaker 2 after
    switch[:, :12] = torch.tensor([1.0, 0.0, 0.0])
    cond = model.condition(units, f0, vol, switch)
    assert torch.allclose(cond[..., 12:], by_id[..., 12:], atol=1e-6)
    assert torch.allclose(cond[..., :12], model.condition(units, f0, vol, torch.tensor([0, 0]))[..., :12], atol=1e-6)
    with pytest.raises(ValueError, match="speaker map"):
        model.condition(units, f0, vol, torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="3 speakers"):
        model.condition(units, f0, vol, torch.tensor([0, 3]))


def test_k_step_limits_give_clear_errors(models, fixture):
    args = _inputs(fixture, [0, 1])
    with pytest.raises(ValueError, match="k_step_max 60"):
        models["shallow"].infer(*args, gt_mel=fixture["inputs"]["gt_mel"], k_step=61)
    with pytest.raises(ValueError, match="shallow diffusion only"):
        models["shallow"].infer(*args)
    with pytest.raises(ValueError, match="unknown diffusion method"):
        models["shallow"].infer(*args, gt_mel=fixture["inputs"]["gt_mel"], method="euler")


def test_strict_loading_lists_every_tensor(tmp_path):
    cfg = yaml.safe_load((FIXTURE / "full" / "diffusion.yaml").read_text())
    cfg["model"]["n_layers"] = 4  # one block too many
    cfg["model"]["n_hidden"] = 10  # every condition projection mis-shaped
    cfg["model"]["use_pitch_aug"] = False  # aug_shift_embed.weight unexpected
    (tmp_path / "diffusion.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointMismatchError) as err:
        load_sovits_diffusion(FIXTURE / "full" / "model_0.pt", tmp_path / "diffusion.yaml")
    text = str(err.value)
    assert str(FIXTURE / "full" / "model_0.pt") in text and "diffusion.yaml" in text
    for name in ("decoder.denoise_fn.residual_layers.3.dilated_conv.weight", "aug_shift_embed.weight",
                 "unit_embed.weight: checkpoint (12, 16) vs model (10, 16)",
                 "decoder.denoise_fn.residual_layers.0.conditioner_projection.weight"):
        assert name in text
    assert set(err.value.missing) == {k for k in MelDiffusion(unit_dim=16, n_speakers=3, n_mels=20, n_layers=4,
                                                              n_chans=16, n_hidden=10, timesteps=200).state_dict()
                                      if k.startswith("decoder.denoise_fn.residual_layers.3.")}


@pytest.mark.parametrize("protocol", [2, 4])  # torch's default, and the one the weights-only reader cannot parse
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_is_refused(tmp_path, protocol):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "model_0.pt"
    torch.save({"global_step": 0, "model": {"x": Payload()}}, bad, pickle_protocol=protocol)
    with pytest.raises(UserFacingError, match="model_0.pt: contains objects other than tensors") as err:
        load_sovits_diffusion(bad, FIXTURE / "full" / "diffusion.yaml")
    assert protocol != 2 or "posix.system" in str(err.value)
    assert not marker.exists()


def test_corrupt_and_foreign_files_are_named(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes((FIXTURE / "full" / "model_0.pt").read_bytes()[:2000])
    with pytest.raises(UserFacingError, match="cut.pt"):
        load_sovits_diffusion(cut, FIXTURE / "full" / "diffusion.yaml")
    other = tmp_path / "other.pt"
    torch.save({"weights": [1, 2]}, other)
    with pytest.raises(UserFacingError, match="not a so-vits-svc diffusion checkpoint"):
        load_sovits_diffusion(other, FIXTURE / "full" / "diffusion.yaml")
    with pytest.raises(UserFacingError, match="missing model.n_layers"):
        cfg = yaml.safe_load((FIXTURE / "full" / "diffusion.yaml").read_text())
        del cfg["model"]["n_layers"]
        (tmp_path / "d.yaml").write_text(yaml.safe_dump(cfg))
        load_sovits_diffusion(FIXTURE / "full" / "model_0.pt", tmp_path / "d.yaml")


def test_save_writes_the_upstream_format(tmp_path, models, fixture):
    model = models["full"]
    save_sovits_diffusion(model, tmp_path / "model_5.pt", tmp_path / "diffusion.yaml", global_step=5)
    ours = torch.load(tmp_path / "model_5.pt", weights_only=True)
    theirs = torch.load(FIXTURE / "full" / "model_0.pt", weights_only=True)
    assert ours["global_step"] == 5 and set(ours["model"]) == set(theirs["model"])
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    cfg = yaml.safe_load((tmp_path / "diffusion.yaml").read_text())
    assert cfg["model"]["n_layers"] == 3 and cfg["data"]["encoder_out_channels"] == 16 and cfg["spk"]["spk2"] == 2
    again = load_sovits_diffusion(tmp_path / "model_5.pt", tmp_path / "diffusion.yaml")
    case = next(c for c in fixture["cases"] if c["name"] == "shallow_dpmpp")
    mel = again.infer(*_inputs(fixture, case["items"]), noise=case["noise"], **_case_kwargs(fixture, case, again))
    assert (mel - case["mel"]).abs().max() < TOL
    fresh = MelDiffusion(unit_dim=8, n_speakers=1, n_mels=10, n_layers=2, n_chans=8, n_hidden=6, timesteps=50,
                         k_step_max=20)
    save_sovits_diffusion(fresh, tmp_path / "f.pt", tmp_path / "f.yaml", sampling_rate=22050)
    loaded = load_sovits_diffusion(tmp_path / "f.pt", tmp_path / "f.yaml")
    assert loaded.k_step_max == 20 and loaded.n_mels == 10 and loaded.sovits_config.sampling_rate == 22050


# --- training ---------------------------------------------------------------------------------------------------


def test_vocoder_mel_and_key_shift():
    from svc_pl.data.spectral import LogMelSpectrogram

    sr, hop = 16000, 320
    mel = LogMelSpectrogram(sr, 1024, 1024, hop, 40, 40.0, 16000.0)
    t = torch.arange(sr) / sr
    audio = (0.5 * torch.sin(2 * torch.pi * 440 * t)).unsqueeze(0)
    ref = LogMelSpectrogram(sr, 1024, 1024, hop, 40, 40.0, None)(audio)
    assert mel(audio).shape == (1, 40, sr // hop) and torch.allclose(mel(audio), ref, atol=1e-5)
    octave_up = mel(audio, 12.0)  # the 440 Hz tone lands where 880 Hz does
    at_880 = mel((0.5 * torch.sin(2 * torch.pi * 880 * t)).unsqueeze(0))
    assert octave_up.shape == at_880.shape
    assert abs(int(octave_up[0, :, 10:-10].mean(-1).argmax()) - int(at_880[0, :, 10:-10].mean(-1).argmax())) <= 1
    assert int(octave_up[0, :, 10:-10].mean(-1).argmax()) > int(mel(audio)[0, :, 10:-10].mean(-1).argmax()) + 3


def test_loss_goes_down_on_one_batch():
    torch.manual_seed(0)
    model = MelDiffusion(unit_dim=8, n_speakers=2, use_pitch_aug=True, n_mels=12, n_layers=2, n_chans=16,
                         n_hidden=16, timesteps=100)
    units, f0, vol = torch.randn(2, 30, 8), 100 + 200 * torch.rand(2, 30, 1), torch.rand(2, 30, 1)
    mel = -8 + 4 * torch.rand(2, 30, 12)
    t, noise = torch.tensor([10, 60]), torch.randn(2, 12, 30)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = model(units, f0, vol, mel, speaker=torch.tensor([0, 1]), aug_shift=torch.tensor([0.0, 2.0]), t=t,
                     noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_fit_through_the_cli_resumes_and_exports(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from svc_pl.cli import main as cli_main
    from svc_pl.lightning.diffusion_module import export_checkpoint
    from tests.datasets import make_dataset

    data = make_dataset(tmp_path / "ds", voices=("en", "en+f3"), clips_per_voice=2)
    shipped = Path(__file__).resolve().parents[1] / "svc_pl" / "configs" / "diffusion.yaml"
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({
        "config": str(shipped),
        "trainer": {"max_steps": 4, "check_val_every_n_epoch": 1, "enable_progress_bar": False,
                    "log_every_n_steps": 1, "accelerator": "cpu",
                    "callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                   "init_args": {"filename": "{step}", "save_last": True, "save_top_k": -1,
                                                 "every_n_train_steps": 2}}]},
        "model": {"diffusion": {"n_layers": 2, "n_chans": 16, "n_hidden": 16, "timesteps": 100,
                                "use_pitch_aug": True}, "n_mels": 40, "val_speedup": 20},
        "data": {"batch_size": 2, "num_workers": 0, "max_frames": 40, "val_clips": 1}}))
    base = ["fit", "--config", str(tmp_path / "small.yaml"), "--data.dataset_dir", str(data),
            "--trainer.default_root_dir", str(tmp_path / "run")]
    assert cli_main(base + ["--trainer.max_steps", "2"]) == 0
    assert cli_main(base + ["--ckpt_path", "last"]) == 0  # resumes at step 2, stops at 4
    last = sorted((tmp_path / "run").rglob("last.ckpt"))
    assert len(last) == 1
    ckpt = torch.load(last[0], weights_only=True)
    assert ckpt["global_step"] == 4 and any(k.startswith("model.decoder.denoise_fn.") for k in ckpt["state_dict"])
    tags = set()
    for ev in (tmp_path / "run").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    assert {"train/loss", "val/loss", "val/mel_l1", "learning_rate", "val/mel/0"} <= tags
    model_path, config_path = export_checkpoint(last[0], tmp_path / "export")
    assert model_path.name == "model_4.pt"
    model = load_sovits_diffusion(model_path, config_path)
    assert model.n_speakers == 2 and model.unit_dim == 32 and model.sovits_config.sampling_rate == 16000
    mel = model.infer(torch.randn(1, 9, 32), torch.full((1, 9, 1), 200.0), torch.rand(1, 9, 1), 1, speedup=20)
    assert mel.shape == (1, 9, 40) and torch.isfinite(mel).all()


def test_init_from_upstream_checkpoint_for_finetuning(caplog):
    from svc_pl.lightning.diffusion_module import DiffusionModule

    arch = {"n_layers": 3, "n_chans": 16, "n_hidden": 12, "timesteps": 200, "use_pitch_aug": True}
    info = {"speakers": {"a": 0, "b": 1}, "unit_dim": 16, "sampling_rate": 16000, "hop_length": 320,
            "filter_length": 1024, "win_length": 1024}
    with caplog.at_level("WARNING"):
        module = DiffusionModule(diffusion=arch, dataset_info=info, n_mels=20,
                                 init_from=str(FIXTURE / "full" / "model_0.pt"))
    theirs = torch.load(FIXTURE / "full" / "model_0.pt", weights_only=True)["model"]
    ours = module.model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if not k.startswith("spk_embed."))
    assert ours["spk_embed.weight"].shape == (2, 12) and "spk_embed.weight" in caplog.text  # 3 speakers -> 2
    with pytest.raises(CheckpointMismatchError, match="n_layers|residual_layers.2"):
        DiffusionModule(diffusion=arch | {"n_layers": 2}, dataset_info=info, n_mels=20,
                        init_from=str(FIXTURE / "full" / "model_0.pt"))


def test_pitch_augmented_training_step_shifts_f0_mel_and_input(monkeypatch):
    from svc_pl.data.dataset import Batch
    from svc_pl.lightning.diffusion_module import DiffusionModule

    info = {"speakers": {"a": 0}, "unit_dim": 8, "sampling_rate": 16000, "hop_length": 320, "filter_length": 1024,
            "win_length": 1024}
    module = DiffusionModule(diffusion={"n_layers": 1, "n_chans": 8, "n_hidden": 8, "timesteps": 50,
                                        "use_pitch_aug": True}, dataset_info=info, n_mels=40, pitch_aug_prob=1.0)
    module.log = lambda *a, **k: None
    monkeypatch.setattr(module, "optimizers", lambda: torch.optim.SGD(module.parameters(), lr=0.1))
    seen = {}
    monkeypatch.setattr(module.model, "forward", lambda units, f0, volume, mel, speaker=None, aug_shift=None:
                        seen.update(f0=f0, mel=mel, shift=aug_shift) or mel.sum() * 0)
    t = torch.arange(2 * 30 * 320).reshape(2, 1, -1) / 16000
    audio = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    batch = Batch(torch.randn(2, 8, 30), torch.full((2, 30), 440.0), torch.ones(2, 30), torch.zeros(2, 513, 30),
                  audio, torch.zeros(2, dtype=torch.long), torch.tensor([30, 30]), torch.rand(2, 30), ["x", "y"])
    torch.manual_seed(0)
    module.training_step(batch, 0)
    shift = seen["shift"]
    assert shift.shape == (2,) and (shift.abs() > 0).all() and (shift.abs() <= 5).all()
    assert torch.allclose(seen["f0"][:, 0, 0], 440 * 2 ** (shift / 12))
    for i in range(2):
        assert torch.allclose(seen["mel"][i].T, module.mel(audio[i], float(shift[i]))[0], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_keeps_the_sampler_in_fp32(method):
    torch.manual_seed(0)
    model = MelDiffusion(unit_dim=8, n_speakers=1, n_mels=10, n_layers=2, n_chans=8, n_hidden=6, timesteps=40).eval()
    states = set()
    denoise = model.decoder.denoise_fn.denoise
    model.decoder.denoise_fn.denoise = lambda x, step, proj: states.add(x.dtype) or denoise(x, step, proj)
    args = (torch.randn(1, 7, 8), torch.full((1, 7, 1), 220.0), torch.rand(1, 7, 1), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.condition(*args).dtype == torch.bfloat16  # the network does run in bf16
        mel = model.infer(*args, method=method, speedup=10, generator=torch.Generator().manual_seed(0))
        shallow = model.infer(*args, gt_mel=torch.randn(1, 7, 10, dtype=torch.bfloat16), k_step=20, method=method,
                              speedup=10, noise=torch.randn(1, 7, 10))
    assert mel.dtype == shallow.dtype == torch.float32 and states == {torch.float32}


@pytest.mark.slow
def test_two_process_ddp_training_shares_the_clips_and_writes_one_set_of_outputs(tmp_path):
    """``svc-pl fit --config diffusion --trainer.devices 2``: two ranks (world size 2) train at every step on
    different clips, between them on every training clip; one checkpoint folder and one TensorBoard run; finite
    losses on both ranks."""
    import math
    import os
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.datasets import make_dataset
    from tests.rank_probe import probe_env, read_probe

    repo = Path(__file__).resolve().parents[1]
    data = make_dataset(tmp_path / "ds", voices=("en", "en+f3"), clips_per_voice=3)  # 4 training clips, 2 val
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({
        "config": str(repo / "svc_pl" / "configs" / "diffusion.yaml"),
        "trainer": {"max_steps": 2, "check_val_every_n_epoch": 1, "enable_progress_bar": False,
                    "log_every_n_steps": 1},
        "model": {"diffusion": {"n_layers": 2, "n_chans": 16, "n_hidden": 16, "timesteps": 100,
                                "use_pitch_aug": True}, "n_mels": 40, "val_speedup": 20},
        "data": {"batch_size": 2, "num_workers": 0, "max_frames": 40, "val_clips": 2}}))
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "svc_pl.cli", "fit", "--config", str(tmp_path / "small.yaml"), "--data.dataset_dir",
           str(data), "--trainer.default_root_dir", str(root), "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = probe_env(tmp_path / "probe", dict(os.environ, OMP_NUM_THREADS="1"), repo)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # one set of outputs: one logger version, one TensorBoard file, one last.ckpt, at the step both ranks reached
    assert len(list(root.rglob("version_*"))) == 1 and len(list(root.rglob("last.ckpt"))) == 1
    (events,) = root.rglob("events.out.tfevents.*")
    ckpt = torch.load(next(root.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    # two ranks trained, at every step on different clips, between them on every training clip, finite losses
    rows = read_probe(tmp_path / "probe", "train")
    assert {r["world"] for r in rows} == {2} and {r["rank"] for r in rows} == {0, 1}, rows
    assert sorted({r["step"] for r in rows}) == [0, 1], rows  # 2 optimizer steps = 2 batches per rank
    assert all(r["loss"] is not None and math.isfinite(r["loss"]) for r in rows), rows
    train = set((data / "train.txt").read_text().split())
    for step in (0, 1):
        files = {rank: [f for r in rows if r["rank"] == rank and r["step"] == step for f in r["files"]]
                 for rank in (0, 1)}
        assert files[0] and files[1] and not set(files[0]) & set(files[1]), (step, files)
        assert set(files[0] + files[1]) == train, files
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    for tag, n in (("train/loss", 2), ("val/loss", 2)):  # validation after each one-batch epoch
        values = [e.value for e in acc.Scalars(tag)]
        assert len(values) == n and all(math.isfinite(v) for v in values), (tag, values)


def _small_diffusion_config(tmp_path, **trainer) -> Path:
    """The shipped diffusion config (``model.class_path`` form), cut to a tiny network, CPU and a few steps."""
    shipped = Path(__file__).resolve().parents[1] / "svc_pl" / "configs" / "diffusion.yaml"
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "config": str(shipped),
        "trainer": {"check_val_every_n_epoch": 1, "enable_progress_bar": False, "log_every_n_steps": 1,
                    "accelerator": "cpu", "limit_val_batches": 0, **trainer},
        "model": {"init_args": {"diffusion": {"n_layers": 2, "n_chans": 16, "n_hidden": 16, "timesteps": 100,
                                              "use_pitch_aug": True}, "n_mels": 40, "val_speedup": 20}},
        "data": {"batch_size": 1, "num_workers": 0, "max_frames": 40, "val_clips": 1}}))
    return path


@pytest.mark.slow
def test_resumed_diffusion_run_equals_uninterrupted(tmp_path):
    """As the synthesizer's (tests/test_training.py): a checkpoint mid-epoch, resumed, gives the weights and
    optimizer state of the run that went on. The diffusion step draws its step t, its noise and its pitch shifts at
    random: without the random state restored from the checkpoint the resumed run draws others."""
    from svc_pl.cli import main as cli_main
    from tests.datasets import make_dataset
    from tests.test_training import _assert_same_tensors

    data = make_dataset(tmp_path / "ds", voices=("en", "en+f3"), clips_per_voice=3)  # 4 training clips
    config = _small_diffusion_config(tmp_path, callbacks=[{
        "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
        "init_args": {"filename": "{epoch}-{step}", "save_last": True, "save_top_k": -1, "every_n_train_steps": 3}}])

    def fit(root, *extra):
        assert cli_main(["fit", "--config", str(config), "--data.dataset_dir", str(data), "--trainer.max_steps", "6",
                         "--trainer.default_root_dir", str(root), *extra]) == 0
        (last,) = root.rglob("last.ckpt")
        return torch.load(last, weights_only=True)

    full = fit(tmp_path / "full")
    (mid,) = (tmp_path / "full").rglob("epoch=0-step=3.ckpt")  # after 3 of the epoch's 4 batches
    resumed = fit(tmp_path / "resumed", "--ckpt_path", str(mid))
    assert full["global_step"] == resumed["global_step"] == 6 and full["epoch"] == resumed["epoch"]
    assert "svc_pl_rng" in resumed and resumed["svc_pl_counters"] == full["svc_pl_counters"]
    _assert_same_tensors(full["state_dict"], resumed["state_dict"], "state_dict")
    _assert_same_tensors(full["optimizer_states"], resumed["optimizer_states"], "optimizer_states")


def test_diffusion_settings_are_typed_and_an_unknown_key_is_named():
    from svc_pl.diffusion import DiffusionConfig
    from svc_pl.errors import ConfigError
    from svc_pl.lightning.diffusion_module import DiffusionModule

    cfg = DiffusionConfig.from_dict({"n_layers": 3, "use_pitch_aug": True})
    assert (cfg.n_layers, cfg.n_chans, cfg.use_pitch_aug) == (3, 512, True)  # keys not given keep the defaults
    model = cfg.build(unit_dim=8, n_speakers=2, n_mels=12)
    assert len(model.decoder.denoise_fn.residual_layers) == 3 and model.aug_shift_embed is not None
    with pytest.raises(ConfigError, match=r"model.diffusion: unknown key\(s\) \['n_layer'\]; allowed: n_layers, "):
        DiffusionConfig.from_dict({"n_layer": 3})
    info = {"speakers": {"a": 0}, "unit_dim": 8, "sampling_rate": 16000, "hop_length": 320, "filter_length": 1024,
            "win_length": 1024}
    with pytest.raises(ConfigError, match="n_layer"):
        DiffusionModule(diffusion={"n_layer": 3}, dataset_info=info, n_mels=12)
    module = DiffusionModule(diffusion=DiffusionConfig(n_layers=2, n_chans=8, n_hidden=8), dataset_info=info,
                             n_mels=12)
    assert module.hparams.diffusion == DiffusionConfig(n_layers=2, n_chans=8, n_hidden=8).to_dict()  # plain data

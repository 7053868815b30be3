"""The same results on every device: seeded batches equal one-row runs on CPU and CUDA, and the CUDA paths
(mixed-precision training, conversion, shallow diffusion, diffusion training) run and agree with the CPU.

The CUDA cases skip on a machine without a GPU. Those that train need a preprocessed dataset: built from
espeak-ng speech here, or taken from the folder ``SVC_PL_TEST_DATASET`` names (a GPU machine without espeak-ng
gets one built elsewhere: see scripts/gpu_check.sh).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.data.content import random_content_encoder
from svc_pl.diffusion.model import MelDiffusion
from svc_pl.infer.converter import Converter, ConvertOptions
from svc_pl.infer.diffusion import load_diffusion_stage
from svc_pl.infer.loading import load_voice_model
from svc_pl.synthesizer import Synthesizer
from tests.test_diffusion_infer import HOP, SR, _diffusion, write_voice_and_vocoder
from tests.test_infer import TINY

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run scripts/gpu_check.sh on a GPU machine)")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _exact_cuda_math():
    """fp32 on CUDA without TF32, so batched and one-row runs differ by rounding only."""
    if not CUDA:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _tiny_synthesizer(device: str) -> Synthesizer:
    torch.manual_seed(0)
    return Synthesizer(**TINY, spec_channels=513, segment_size=20).eval().to(device)


def _inputs(batch: int, frames: int, device: str, unit_dim: int = 768):
    g = torch.Generator().manual_seed(1)
    units = torch.randn(batch, unit_dim, frames, generator=g)
    f0 = 180 + 60 * torch.rand(batch, 1, generator=g) + 20 * torch.sin(torch.arange(frames) / 7.0)
    uv = (torch.rand(batch, frames, generator=g) > 0.15).float()
    return units.to(device), f0.to(device), uv.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_synthesis_batch_rows_equal_one_row_runs(device):
    net = _tiny_synthesizer(device)
    units, f0, uv = _inputs(3, 60, device)
    speakers = torch.tensor([0, 1, 2], device=device)
    with torch.no_grad():
        batched, _ = net.infer(units, f0, uv, speakers, noise_scale=5.0, seed=5)
        rows = [net.infer(units[i:i + 1], f0[i:i + 1], uv[i:i + 1], speakers[i:i + 1], noise_scale=5.0, seed=5)[0]
                for i in range(3)]
        other_seed, _ = net.infer(units, f0, uv, speakers, noise_scale=5.0, seed=6)
    tol = 1e-5 if device == "cpu" else 2e-5
    err = (batched - torch.cat(rows)).abs().max().item()
    assert err < tol, f"{device}: a batched row differs from its one-row run by {err}"
    assert (batched - other_seed).abs().max().item() > 30 * tol  # the seed (noise) really matters


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["ddpm", "dpm-solver++"])
def test_seeded_diffusion_batch_rows_equal_one_row_runs(device, method):
    torch.manual_seed(0)
    model = MelDiffusion(unit_dim=32, n_speakers=2, n_mels=16, n_layers=2, n_chans=8, n_hidden=8,
                         timesteps=100).eval().to(device)
    with torch.no_grad():
        model.decoder.denoise_fn.output_projection.weight.normal_(0, 0.3)
    b, n = 3, 40
    g = torch.Generator().manual_seed(2)
    units = torch.randn(b, n, 32, generator=g).to(device)
    f0 = (200 + 40 * torch.rand(b, n, 1, generator=g)).to(device)
    vol = torch.rand(b, n, 1, generator=g).to(device)
    mel = torch.randn(b, n, 16, generator=g).to(device)
    spk = torch.tensor([0, 1, 1], device=device)

    def run(rows: slice, seed: int) -> torch.Tensor:
        count = len(range(b)[rows])
        gens = [torch.Generator(device=device).manual_seed(seed) for _ in range(count)]
        return model.infer(units[rows], f0[rows], vol[rows], spk[rows], gt_mel=mel[rows], k_step=30, method=method,
                           speedup=5, generator=gens)

    with torch.no_grad():
        batched = run(slice(None), 11)
        rows = torch.cat([run(slice(i, i + 1), 11) for i in range(b)])
        other = run(slice(None), 12)
    err = (batched - rows).abs().max().item()
    assert err < 1e-4, f"{device} {method}: a batched row differs from its one-row run by {err}"
    assert (batched - other).abs().max().item() > 1e-2  # the noise really enters


# ---------------------------------------------------------------- CUDA only


def _voiced_signal(sr: int, seconds: float) -> np.ndarray:
    """A sung-like test signal: three vibrato notes with harmonics and short breaths between them."""
    t = np.arange(int(sr * seconds)) / sr
    notes = np.select([t < seconds / 3, t < 2 * seconds / 3], [220.0, 277.2], 329.6)
    f0 = notes * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    gate = ((t % (seconds / 3)) > 0.08).astype(float)
    rng = np.random.default_rng(0)
    return (0.3 * y * gate + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def voice_files(tmp_path_factory):
    d = write_voice_and_vocoder(tmp_path_factory.mktemp("devices"))
    sf.write(d / "song.wav", _voiced_signal(SR, 3.0), SR, subtype="FLOAT")
    return {"voice": d / "G_1.pth", "vocoder": d / "vocoder", "song": d / "song.wav",
            "full": _diffusion(d / "full"), "dir": d}


def _converter(files, device, diffusion=None, k_step=20, only=False):
    voice = load_voice_model(files["voice"], device=device)
    stage = None
    if diffusion:
        stage = load_diffusion_stage(files[diffusion], None, files["vocoder"], voice=None if only else voice,
                                     unit_dim=768, k_step=k_step, only_diffusion=only, speakers=["tenor"],
                                     device=device)
    return Converter(voice, random_content_encoder("vec768l12"), device=device, diffusion=stage)


def _convert(conv, files, **kw):
    y, sr = sf.read(files["song"], dtype="float32")
    return conv.convert(y, sr, ConvertOptions(speaker="tenor", precision="fp32", **kw))


@needs_cuda
def test_conversion_on_cuda_equals_cpu_given_the_same_random_numbers(voice_files, monkeypatch):
    """The whole conversion (content encoder, prior, flow, NSF decoder) on CUDA equals the CPU's once both draw the
    same random numbers: every draw of the synthesizer goes through ``commons._draw``, here made to draw on the CPU
    (seeded as usual) and move the numbers to the device."""
    from svc_pl.layers import commons

    draw = commons._draw
    monkeypatch.setattr(commons, "_draw", lambda fn, shape, device, dtype: draw(fn, shape, torch.device("cpu"),
                                                                               dtype).to(device))
    a = _convert(_converter(voice_files, "cpu"), voice_files, noise_scale=0.4)
    gpu = _converter(voice_files, "cuda")
    assert {p.device.type for m in (gpu.model.net, gpu.encoder) for p in m.parameters()} == {"cuda"}
    b = _convert(gpu, voice_files, noise_scale=0.4)
    assert a.shape == b.shape and np.isfinite(b).all()
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    other = np.linalg.norm(a - _convert(gpu, voice_files, noise_scale=0.4, seed=7)) / np.linalg.norm(a)
    print(f"CUDA vs CPU, same random numbers: relative L2 difference {rel:.2e} (another seed: {other:.2e})")
    assert rel < 1e-5 and other > 1e-4, (rel, other)  # H200: 6.2e-07, another seed 1.3e-03
    monkeypatch.undo()
    c = _convert(gpu, voice_files, noise_scale=0.4)  # CUDA's own random numbers: seeded, so repeatable
    assert np.array_equal(c, _convert(gpu, voice_files, noise_scale=0.4))


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_shallow_and_only_diffusion_on_cuda(voice_files, precision):
    plain = _convert(_converter(voice_files, "cuda"), voice_files)
    shallow_conv = _converter(voice_files, "cuda", "full", k_step=20)
    kw = dict(shallow_diffusion=True, k_step=20, diffusion_method="dpm-solver++", diffusion_speedup=5)
    shallow = _convert(shallow_conv, voice_files, **kw)
    assert shallow.shape == plain.shape and np.isfinite(shallow).all()
    assert np.array_equal(shallow, _convert(shallow_conv, voice_files, **kw))  # seeded: repeatable
    if precision == "bf16":
        bf16 = shallow_conv.convert(*sf.read(voice_files["song"], dtype="float32"),
                                    ConvertOptions(speaker="tenor", precision="bf16", **kw))
        rel = np.abs(bf16 - shallow).mean() / np.abs(shallow).mean()
        print(f"shallow diffusion bf16 vs fp32 on CUDA: mean relative difference {rel:.4f}")
        assert 0 < rel < 0.2, rel
    only = _convert(_converter(voice_files, "cuda", "full", only=True), voice_files, only_diffusion=True,
                    diffusion_method="dpm-solver++", diffusion_speedup=10)
    assert only.shape == plain.shape and np.isfinite(only).all() and np.abs(only).max() > 0


def _devices_used(monkeypatch) -> dict[str, set[str]]:
    """The device types the synthesizer, the diffusion model and the vocoder compute on (their inputs'), per call."""
    from svc_pl.layers.nsf import NSFHiFiGAN

    used = {"synthesizer": set(), "diffusion": set(), "vocoder": set()}  # vocoder: the synthesizer's decoder too

    def spy(key, fn):
        return lambda self, x, *a, **k: used[key].add(x.device.type) or fn(self, x, *a, **k)

    for key, cls, name in (("synthesizer", Synthesizer, "infer"), ("diffusion", MelDiffusion, "infer"),
                           ("vocoder", NSFHiFiGAN, "decode_windowed"), ("vocoder", NSFHiFiGAN, "forward")):
        monkeypatch.setattr(cls, name, spy(key, getattr(cls, name)))
    return used


@pytest.mark.parametrize("device", DEVICES)
def test_infer_cli_device_is_where_the_networks_run(voice_files, tmp_path, device, monkeypatch):
    """svc-pl infer --device DEVICE runs the synthesizer, the diffusion model and its vocoder on DEVICE (no silent
    fallback to the CPU)."""
    import svc_pl.data.content as content
    from tests.test_flags_observed import CheapEncoder

    monkeypatch.setattr(content, "random_content_encoder", lambda name, seed=0: CheapEncoder())  # units: any
    used = _devices_used(monkeypatch)
    y, sr = sf.read(voice_files["song"], dtype="float32")
    sf.write(tmp_path / "short.wav", y[: sr // 2], sr, subtype="FLOAT")
    code = cli_main(["infer", str(tmp_path / "short.wav"), "-m", str(voice_files["voice"]), "-o", str(tmp_path / "o"),
                     "-s", "tenor", "--device", device, "--random-encoder", "--no-progress", "--shallow-diffusion",
                     "--diffusion-model", str(voice_files["full"]), "--vocoder", str(voice_files["vocoder"]),
                     "--k-step", "10", "--diffusion-speedup", "5", "--backend", "torch"])  # torch's networks
    assert code == 0
    assert used == {"synthesizer": {device}, "diffusion": {device}, "vocoder": {device}}, used


@needs_cuda
def test_infer_cli_on_cuda_with_shallow_diffusion(voice_files, tmp_path, monkeypatch):
    used = _devices_used(monkeypatch)
    out = tmp_path / "out"
    code = cli_main(["infer", str(voice_files["song"]), "-m", str(voice_files["voice"]), "-o", str(out),
                     "-s", "tenor", "--device", "cuda", "--random-encoder", "--encoder", "vec768l12",
                     "--no-progress", "--shallow-diffusion",
                     "--diffusion-model", str(voice_files["full"]), "--vocoder", str(voice_files["vocoder"]),
                     "--k-step", "20"])
    assert code == 0
    assert used == {"synthesizer": {"cuda"}, "diffusion": {"cuda"}, "vocoder": {"cuda"}}, used  # not the CPU
    wavs = list(out.rglob("*.wav"))
    assert len(wavs) == 1
    y, sr = sf.read(wavs[0], dtype="float32")
    assert sr == SR and np.isfinite(y).all() and abs(len(y) - 3 * SR) <= HOP


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    given = os.environ.get("SVC_PL_TEST_DATASET")
    if given:
        dest = tmp_path_factory.mktemp("given") / "ds"
        shutil.copytree(given, dest)
        return dest
    from tests.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("ds"), clips_per_voice=2)


def _scalars(root: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for ev in sorted(root.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [(e.step, e.value) for e in acc.Scalars(tag)]
    return sorted(values)


@needs_cuda
@pytest.mark.slow
def test_mixed_precision_training_on_cuda_unscales_before_clipping(tmp_path, dataset):
    """One GAN step each under 32, 16-mixed and bf16-mixed from the same seed: finite losses, and the gradient
    norm the module measures (and clips) is the unscaled one (16-mixed scales the loss by 65536 before backward)."""
    norms = {}
    for precision in ("32", "16-mixed", "bf16-mixed"):
        root = tmp_path / precision
        args = ["fit", "--config", str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml"), "--data.dataset_dir",
                str(dataset), "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
                "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", precision,
                "--trainer.max_steps", "60", "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1",
                "--data.batch_size", "2", "--model.grad_clip", "1000"]
        assert cli_main(args) == 0
        for tag in ("loss/g/total", "loss/d/total", "loss/g/mel"):
            values = _scalars(root, tag)
            assert values and all(np.isfinite(v) for _, v in values), (precision, tag, values)
        norms[precision] = [v for _, v in _scalars(root, "grad_norm_g")]
        assert norms[precision], precision  # logged: the checks below are not over an empty list
        state = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
        assert state["global_step"] == 60  # 30 batches: the discriminator and the generator step once each
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    # 16-mixed: the first steps overflow while GradScaler lowers its scale from 65536 (those steps are skipped and
    # their norm is not finite); every finite norm is the unscaled one, of the size fp32 and bf16 measure
    finite = {p: [v for v in n if np.isfinite(v)] for p, n in norms.items()}
    print("generator grad norms (median of the finite ones, count):",
          {p: (float(np.median(v)) if v else None, len(v)) for p, v in finite.items()})
    assert len(finite["32"]) == len(norms["32"]) and len(finite["bf16-mixed"]) == len(norms["bf16-mixed"])
    assert len(finite["16-mixed"]) >= 5, norms["16-mixed"]
    for precision in ("16-mixed", "bf16-mixed"):
        assert 0.25 < np.median(finite[precision]) / np.median(finite["32"]) < 4, finite


@needs_cuda
@pytest.mark.slow
def test_diffusion_training_on_cuda(tmp_path, dataset):
    import yaml

    shipped = REPO / "svc_pl" / "configs" / "diffusion.yaml"
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({
        "config": str(shipped),
        "trainer": {"max_steps": 3, "enable_progress_bar": False, "log_every_n_steps": 1, "accelerator": "gpu",
                    "devices": 1, "precision": "bf16-mixed", "limit_val_batches": 0},
        "model": {"diffusion": {"n_layers": 2, "n_chans": 16, "n_hidden": 16, "timesteps": 100}, "n_mels": 40},
        "data": {"batch_size": 2, "num_workers": 0, "max_frames": 40}}))
    assert cli_main(["fit", "--config", str(tmp_path / "small.yaml"), "--data.dataset_dir", str(dataset),
                     "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    losses = _scalars(tmp_path / "run", "train/loss")  # DiffusionModule's tag, one value per step
    state = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert state["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert len(losses) == 3 and all(np.isfinite(v) for _, v in losses), losses

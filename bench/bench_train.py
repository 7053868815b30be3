"""Training speed and memory: seconds per training step (one discriminator update + one generator update, as
so-vits-svc's train loop does) for the 44.1 kHz 4.1 default config, batch 2, segment 10240, CPU, fp32 by
default; ``--device cuda`` and ``--precision bf16`` (autocast, as upstream's ``fp16_run`` with ``half_type: bf16``)
measure a GPU.

ours: ``SVCModule`` run by a Lightning ``Trainer`` (manual optimization, logger/checkpointing/progress bar off)
on a synthetic in-memory dataset that yields the same ``Batch`` every step; a step is timed from
``on_train_batch_start`` to ``on_train_batch_end``.
reference: upstream ``SynthesizerTrn`` + ``MultiPeriodDiscriminator`` + its losses and mel functions, one
iteration of ``train.py``'s loop body (fp16 off, so GradScaler is the identity and is left out), on the same
synthetic batch (same audio, units, F0, spectrogram).

Each implementation runs in its own Python process (peak RSS per run); torch uses 2 threads.

    python bench/bench_train.py --reference /tmp/sovits_ref --json bench/results/train.json
    python bench/bench_train.py --reference /tmp/sovits_ref --device cuda --batch-size 16 --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common as C
import numpy as np

SCRIPT = Path(__file__).resolve()
SR, HOP, N_FFT = 44100, 512, 2048


def synthetic_batch(torch, batch: int, frames: int):
    """A deterministic batch: real speech audio, random 768-d units, a sung-like F0 contour with a few
    unvoiced frames, speaker 0. Every second item is 10 % shorter (padding and masks exercised).
    Returns plain tensors: units (B, 768, T), f0/uv/volume (B, T), audio (B, 1, T*hop), lengths (B,)."""
    speech, _ = C.test_speech(batch * frames * HOP / SR + 1, SR, seed=1)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([frames - (frames // 10) * (i % 2) for i in range(batch)], dtype=torch.long)
    units = torch.zeros(batch, 768, frames)
    f0 = torch.zeros(batch, frames)
    uv = torch.zeros(batch, frames)
    audio = torch.zeros(batch, 1, frames * HOP)
    t = torch.arange(frames) * HOP / SR
    for i, n in enumerate(lengths.tolist()):
        units[i, :, :n] = torch.randn(768, n, generator=gen)
        f0[i, :n] = (200 + 40 * (i % 4)) * 2 ** (torch.sin(2 * np.pi * 0.4 * t[:n]) / 3)
        uv[i, :n] = (torch.rand(n, generator=gen) > 0.1).float()
        seg = speech[i * frames * HOP: i * frames * HOP + n * HOP]
        audio[i, 0, :n * HOP] = torch.from_numpy(seg)
    return units, f0, uv, audio, lengths


def _timed_steps(times: list[float]) -> dict:
    return {"step_all": times, "step": C.median(times)}


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gpu_mib(torch, device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def worker_ours(args) -> dict:
    torch = C.setup_torch()
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, Dataset

    from svc_pl.data.dataset import Batch
    from svc_pl.data.spectral import LinearSpectrogram
    from svc_pl.lightning.module import NetConfig, SVCModule

    torch.manual_seed(1234)
    units, f0, uv, audio, lengths = synthetic_batch(torch, args.batch_size, args.frames)
    spec = LinearSpectrogram(N_FFT, HOP, N_FFT)(audio[:, 0])
    spec = spec * (torch.arange(spec.shape[-1])[None, None] < lengths[:, None, None])
    batch = Batch(units, f0, uv, spec, audio, torch.zeros(args.batch_size, dtype=torch.long), lengths,
                  torch.zeros_like(f0), [f"synthetic{i}" for i in range(args.batch_size)])
    steps = args.warmups + args.steps

    class Repeat(Dataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return batch

    class StepTimer(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, module, b, idx):
            _sync(torch, args.device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, out, b, idx):
            _sync(torch, args.device)
            self.times.append(time.perf_counter() - self.t0)

    info = {"speakers": {C.SPEAKER: 0}, "n_speakers": 200, "unit_dim": 768, "sampling_rate": SR,
            "hop_length": HOP, "filter_length": N_FFT, "win_length": N_FFT}
    module = SVCModule(NetConfig(), dataset_info=info, segment_size=args.segment_size)
    timer = StepTimer()
    precision = {"fp32": "32-true", "bf16": "bf16-mixed"}[args.precision]
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=2 * steps, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    t0 = time.perf_counter()
    trainer.fit(module, DataLoader(Repeat(), batch_size=None, shuffle=False))
    wall = time.perf_counter() - t0
    assert len(timer.times) == steps, timer.times
    return {"impl": "ours", "driver": "Lightning Trainer (SVCModule.training_step, manual optimization)",
            **_timed_steps(timer.times[args.warmups:]), "fit_wall": wall, "peak_rss_mib": C.peak_rss_mib(),
            "peak_gpu_mib": _peak_gpu_mib(torch, args.device),
            **_common_fields(args, module.net, module.disc)}


def worker_reference(args) -> dict:
    ref = C.import_reference(args.reference)
    torch = C.setup_torch()
    import modules.commons as commons
    import torch.nn.functional as F
    import utils
    from models import MultiPeriodDiscriminator, SynthesizerTrn
    from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
    from modules.mel_processing import mel_spectrogram_torch, spec_to_mel_torch, spectrogram_torch

    from svc_pl.compat.config import TEMPLATE_41

    hps = utils.HParams(**TEMPLATE_41)
    hps.train.segment_size = args.segment_size
    torch.manual_seed(1234)
    net_g = SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                           **hps.model)
    net_d = MultiPeriodDiscriminator(hps.model.use_spectral_norm)
    optim_g = torch.optim.AdamW(net_g.parameters(), hps.train.learning_rate, betas=hps.train.betas,
                                eps=hps.train.eps)
    optim_d = torch.optim.AdamW(net_d.parameters(), hps.train.learning_rate, betas=hps.train.betas,
                                eps=hps.train.eps)
    dev = torch.device(args.device)
    net_g.to(dev).train()
    net_d.to(dev).train()
    half = torch.bfloat16 if args.precision == "bf16" else None
    c, f0, uv, y, lengths = (t.to(dev) for t in synthetic_batch(torch, args.batch_size, args.frames))
    spec = spectrogram_torch(y[:, 0], hps.data.filter_length, hps.data.sampling_rate, hps.data.hop_length,
                             hps.data.win_length, center=False)
    spec = spec * (torch.arange(spec.shape[-1], device=dev)[None, None] < lengths[:, None, None])
    g = torch.zeros(args.batch_size, 1, dtype=torch.long, device=dev)
    volume = torch.zeros_like(f0)

    def amp(enabled=True):
        return torch.autocast(dev.type, dtype=half, enabled=enabled and half is not None)

    def step():  # train.py train_and_evaluate loop body (rank 0 without the logging branch); bf16: no GradScaler
        mel = spec_to_mel_torch(spec, hps.data.filter_length, hps.data.n_mel_channels, hps.data.sampling_rate,
                                hps.data.mel_fmin, hps.data.mel_fmax)
        with amp():
            y_hat, ids_slice, z_mask, (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0, lf0 = net_g(
                c, f0, uv, spec, g=g, c_lengths=lengths, spec_lengths=lengths, vol=volume)
            y_mel = commons.slice_segments(mel, ids_slice, hps.train.segment_size // hps.data.hop_length)
            y_hat_mel = mel_spectrogram_torch(y_hat.squeeze(1).float(), hps.data.filter_length,
                                              hps.data.n_mel_channels, hps.data.sampling_rate, hps.data.hop_length,
                                              hps.data.win_length, hps.data.mel_fmin, hps.data.mel_fmax)
            y_seg = commons.slice_segments(y, ids_slice * hps.data.hop_length, hps.train.segment_size)
            y_d_hat_r, y_d_hat_g, _, _ = net_d(y_seg, y_hat.detach())
            with amp(False):
                loss_disc, _, _ = discriminator_loss(y_d_hat_r, y_d_hat_g)
        optim_d.zero_grad()
        loss_disc.backward()
        commons.clip_grad_value_(net_d.parameters(), None)
        optim_d.step()
        with amp():
            y_d_hat_r, y_d_hat_g, fmap_r, fmap_g = net_d(y_seg, y_hat)
            with amp(False):
                loss_mel = F.l1_loss(y_mel, y_hat_mel) * hps.train.c_mel
                loss_kl = kl_loss(z_p.float(), logs_q.float(), m_p.float(), logs_p.float(), z_mask) * hps.train.c_kl
                loss_fm = feature_loss(fmap_r, fmap_g)
                loss_gen, _ = generator_loss(y_d_hat_g)
                loss_lf0 = F.mse_loss(pred_lf0.float(), lf0.float()) if net_g.use_automatic_f0_prediction else 0
                loss_gen_all = loss_gen + loss_fm + loss_mel + loss_kl + loss_lf0
        optim_g.zero_grad()
        loss_gen_all.backward()
        commons.clip_grad_value_(net_g.parameters(), None)
        optim_g.step()
        return float(loss_gen_all)

    times = []
    for _ in range(args.warmups + args.steps):
        _sync(torch, args.device)
        t0 = time.perf_counter()
        step()
        _sync(torch, args.device)
        times.append(time.perf_counter() - t0)
    return {"impl": "reference", "driver": "train.py loop body (upstream models, losses, mel functions)",
            **_timed_steps(times[args.warmups:]), "peak_rss_mib": C.peak_rss_mib(),
            "peak_gpu_mib": _peak_gpu_mib(torch, args.device), "reference": ref,
            "stubs": list(C.REFERENCE_STUBS), **_common_fields(args, net_g, net_d)}


def _common_fields(args, net_g, net_d) -> dict:
    return {"batch_size": args.batch_size, "frames": args.frames, "segment_size": args.segment_size,
            "device": args.device, "precision": args.precision,
            "params_g_m": sum(p.numel() for p in net_g.parameters()) / 1e6,
            "params_d_m": sum(p.numel() for p in net_d.parameters()) / 1e6, "env": C.environment()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", help="so-vits-svc 4.1 checkout to compare with (see bench/README.md)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--segment-size", type=int, default=10240, help="samples the decoder generates per item")
    p.add_argument("--frames", type=int, default=400, help="frames per clip (4.6 s); upstream crops to <= 790")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmups", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both implementations run there)")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                   help="one run per precision and implementation (bf16: autocast, no grad scaler)")
    C.add_run_arguments(p)
    args = p.parse_args(argv)
    if args.worker_out:
        args.precision = args.precision[0]
        C.worker_result(args.worker_out, worker_ours(args) if args.worker == "ours" else worker_reference(args))
        return
    C.announce(args)
    common = ["--batch-size", str(args.batch_size), "--segment-size", str(args.segment_size), "--frames",
              str(args.frames), "--steps", str(args.steps), "--warmups", str(args.warmups), "--device", args.device]
    results = []
    for precision in args.precision:
        for impl in ["ours"] + (["reference"] if args.reference else []):
            print(f"running {impl} {precision} on {args.device} ...", flush=True)
            extra = ["--reference", args.reference] if args.reference else []
            results.append(C.run_measured(SCRIPT, ["--worker", impl, "--precision", precision, *common, *extra],
                                          args.max_load, args.wait))
    rows = [[r["impl"], r["precision"], r["step"], min(r["step_all"]), max(r["step_all"]), r["peak_rss_mib"],
             r.get("peak_gpu_mib") or 0.0, r["params_g_m"], r["params_d_m"], r["quiet"]["load1_before"],
             r["quiet"]["foreign_cores"]] for r in results]
    C.print_table(["impl", "precision", "s/step (median)", "min", "max", "peak RSS MiB", "peak GPU MiB",
                   "G params M", "D params M", "load1", "foreign"], rows,
                  f"Training step (D + G update), batch {args.batch_size}, {args.frames} frames/clip, segment "
                  f"{args.segment_size}, {args.device}, torch {C.THREADS} threads; median of {args.steps} after "
                  f"{args.warmups} warm-up")
    for r in results[:2]:
        print(f"  {r['impl']}: {r['driver']}")
    ratios = {}
    ref_rows = {r["precision"]: r for r in results if r["impl"] == "reference"}
    for r in results:
        ref = ref_rows.get(r["precision"])
        if r["impl"] == "ours" and ref:
            ratios[r["precision"]] = {"step": r["step"] / ref["step"],
                                      "peak_rss": r["peak_rss_mib"] / ref["peak_rss_mib"]}
            if r.get("peak_gpu_mib") and ref.get("peak_gpu_mib"):
                ratios[r["precision"]]["peak_gpu"] = r["peak_gpu_mib"] / ref["peak_gpu_mib"]
    if ratios:
        C.print_table(["precision", "ours/ref s/step", "ours/ref peak RSS", "ours/ref peak GPU"],
                      [[p, v["step"], v["peak_rss"], v.get("peak_gpu", 0.0)] for p, v in ratios.items()], "Ratios")
        stubs = next((r.get("stubs") for r in results if r["impl"] == "reference"), None)
        if stubs:
            print("\nReference run with these in-process stubs (benchmark only):")
            for s in stubs:
                print(f"  - {s}")
    C.write_json(args.json, {"mode": "train", "results": results, "ratios": ratios, "env": C.environment(),
                             "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()

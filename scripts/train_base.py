#!/usr/bin/env python
"""Train the shipped ``tiny-base``: synthesise the multi-voice corpus, preprocess it with Whisper tiny.en (or
the multilingual Whisper base: ``--content-encoder whisper-base``),
train ``svc-pl fit --config tiny`` for a fixed time, write ``svc_pl/pretrained/tiny-base.safetensors`` and
evaluate it on held-out voices (model card ``svc_pl/pretrained/tiny-base.md``).

    python scripts/train_base.py WORK_DIR --minutes 90          # everything (resumes each stage)
    python scripts/train_base.py WORK_DIR --stage export        # only write the base from WORK_DIR's run
    python scripts/train_base.py WORK_DIR --stage evaluate      # only evaluate the written base

Needs espeak-ng, festival (festvox-kallpc16k, festvox-us-slt-hts) and the whisper extra.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "svc_pl" / "pretrained"
# units as a live stream makes them (1 s windows, 80 ms chunks, 40 ms look-ahead) and two speaker-perturbed
# copies per clip that training draws from: what `svc-pl preprocess --content-encoder whisper-tiny.en` does
# by default, spelled out
PREPROCESS = ["--encoder", "whisper-ppg", "--content-encoder", "whisper-tiny.en", "--sampling-rate", "16000",
              "--hop-length", "320", "--filter-length", "1024", "--f0", "pm", "--unit-window", "50,4,2",
              "--perturb-copies", "2"]
# voices per Harvard sentence (spoken) and per sentence of SUNG_SENTENCES (sung)
SPOKEN_PER_SENTENCE, SUNG_PER_SENTENCE = 5, 4
# voices per sentence of SUS_SENTENCES, spoken and sung (each sung by other voices than those that speak it)
SUS_SPOKEN_PER_SENTENCE, SUS_SUNG_PER_SENTENCE, SUS_SUNG_OFFSET = 2, 1, 3


def sus_sentences_of(voice_index: int, n_voices: int) -> tuple[list[int], list[int]]:
    """(spoken, sung) :data:`SUS_SENTENCE_IDS` of base voice ``voice_index``: the sung ones are spread from a voice
    ``SUS_SUNG_OFFSET`` further on, so no voice sings a sentence it speaks."""
    from svc_pl.corpus import SUS_SENTENCE_IDS, spread_over

    sung_as = (voice_index + SUS_SUNG_OFFSET) % n_voices
    return (spread_over(SUS_SENTENCE_IDS, voice_index, n_voices, SUS_SPOKEN_PER_SENTENCE),
            spread_over(SUS_SENTENCE_IDS, sung_as, n_voices, SUS_SUNG_PER_SENTENCE))


def preprocess_args(content_encoder: str = "whisper-tiny.en") -> list[str]:
    """:data:`PREPROCESS` with the base's Whisper encoder (the same window and perturbed copies for either)."""
    args = list(PREPROCESS)
    args[args.index("--content-encoder") + 1] = content_encoder
    return args


def content_encoder_of(unit_dim: int) -> str:
    """The Whisper encoder whose units a base of ``unit_dim``-d units was made on."""
    from svc_pl.data.whisper_weights import BUILTIN_UNIT_DIM, builtin_for_unit_dim

    name = builtin_for_unit_dim(unit_dim)
    if name is None:
        sys.exit(f"no Whisper encoder of this script gives {unit_dim}-d units (known: {BUILTIN_UNIT_DIM})")
    return name


_WHISPER_TITLE = {"whisper-tiny.en": "Whisper tiny.en", "whisper-base": "multilingual Whisper base"}


def stage_data(work: Path, workers: int, content_encoder: str = "whisper-tiny.en") -> None:
    from svc_pl.cli import main as cli
    from svc_pl.corpus import (
        BASE_VOICES,
        SUNG_SENTENCE_IDS,
        TRAIN_MELODIES,
        TRAIN_SENTENCES,
        extra_sentences_of,
        render_corpus,
        render_voice,
        spread_over,
    )

    t = time.time()
    files = render_corpus(work / "raw", BASE_VOICES, TRAIN_SENTENCES, TRAIN_MELODIES, extra_shift=5.0,
                          transposes=(0, -7, 7), workers=workers)
    # more words: the 80 Harvard sentences, each spoken by 5 of the voices (about 29 per voice, unshifted), 36
    # more sentences, each sung by 4 voices on a training melody (about 10 per voice), and 320 semantically
    # unpredictable ones, each spoken by 2 voices and sung by a third (about 46 and 23 per voice)
    from concurrent.futures import ProcessPoolExecutor

    n = len(BASE_VOICES)
    with ProcessPoolExecutor(workers) as pool:
        sus = [sus_sentences_of(i, n) for i in range(n)]
        jobs = [pool.submit(render_voice, work / "raw", v, extra_sentences_of(i, n, SPOKEN_PER_SENTENCE) + sus[i][0],
                            [], sung_sentences=spread_over(SUNG_SENTENCE_IDS, i, n, SUNG_PER_SENTENCE) + sus[i][1])
                for i, v in enumerate(BASE_VOICES)]
        files += [p for j in jobs for p in j.result()]
    print(f"corpus: {len(files)} files from {len(BASE_VOICES)} voices in {time.time() - t:.0f} s", flush=True)
    code = cli(["preprocess", str(work / "raw"), str(work / "data"), *preprocess_args(content_encoder),
                "--workers", str(workers),
                "--val-per-speaker", "1", "--max-clip-seconds", "6", "--no-progress"])
    if code != 0:
        sys.exit("preprocessing failed")


def warm_start_file(work: Path, previous: Path, fit_args: list[str] = (), unit_map_from: Path | None = None) -> Path:
    """A previous base's weights labelled with this corpus's unit window, to start training from.

    The previous base may have learned on other units (whole-clip ones, for the first base): its prior and
    decoder are still a far better start than random weights, and training on the new units adapts them.
    Where the run's decoder (the tiny config's ``model.net``, with ``--model.net.KEY=VALUE`` fit args over it) has
    heads the previous base lacks, they are added at their neutral start (see :func:`_with_envelope_head`,
    :func:`_with_noise_steps`). A previous base of other units (another encoder, ``--content-encoder``) keeps its
    input layer through a linear map from this corpus's units to its own, fitted on the same clips preprocessed
    both ways (``unit_map_from``: a data folder with the previous base's units; :func:`unit_map`).
    """
    import json

    from svc_pl.pretrained import load_base, save_base

    state, meta = load_base(previous)
    net = _run_net(fit_args)
    bins = int(net.get("ddsp_envelope_bins", 0))
    if bins and not meta["net"].get("ddsp_envelope_bins"):  # a harmonic-distribution base: new envelope head
        state = _with_envelope_head(state, meta["net"], bins)
        meta["net"] = dict(meta["net"], ddsp_envelope_bins=bins)
    steps = int(net.get("ddsp_noise_steps", 1))
    if steps != int(meta["net"].get("ddsp_noise_steps", 1)):
        state = _with_noise_steps(state, steps)
        meta["net"] = dict(meta["net"], ddsp_noise_steps=steps)
    info = json.loads((work / "data" / "dataset.json").read_text())
    dim, base_dim = int(info["unit_dim"]), int(meta["dataset_info"]["unit_dim"])
    if dim != base_dim:
        if unit_map_from is None:
            sys.exit(f"--init-from: {previous} takes {base_dim}-d units, {work / 'data'} has {dim}-d ones: give "
                     "--unit-map-from DATA, the same clips preprocessed with the previous base's encoder, so that "
                     "its input layer is carried over through a linear map between the two")
        a, a0, r2 = unit_map(work / "data", unit_map_from)
        print(f"unit map {dim} -> {base_dim}: R^2 {r2:.3f} on the fitted frames", flush=True)
        state = _with_unit_map(state, a, a0)
    meta["dataset_info"] = dict(meta["dataset_info"], unit_window=info.get("unit_window") or {},
                                hop_length=_warm_start_hop(meta, info), unit_dim=dim)
    meta["warm_started_from"] = {"file": previous.name, "global_step": meta.get("global_step")}
    return save_base(state, work / "warm_start.safetensors", meta)


def unit_map(data: Path, previous_data: Path, max_clips: int = 300, ridge: float = 1e-3):
    """Least-squares affine map from the units of ``data`` to those of ``previous_data`` (the same clips, paired by
    their path; clean units, frames paired up to the shorter), fitted on up to ``max_clips`` clips spread over the
    corpus, with a small ridge. Returns ``(A, a0, r2)``: ``previous ~= A @ units + a0``, ``A`` (previous dim, dim),
    and the share of the previous units' variance the map explains on those frames."""
    import torch

    pairs = sorted(p.relative_to(data) for p in data.rglob("*.pt") if (previous_data / p.relative_to(data)).is_file())
    xs, ys = [], []
    for rel in pairs[::max(1, len(pairs) // max_clips)][:max_clips]:
        x, y = (torch.load(root / rel, map_location="cpu", weights_only=True) for root in (data, previous_data))
        if not (isinstance(x, dict) and "units" in x and isinstance(y, dict) and "units" in y):
            continue
        t = min(x["units"].shape[-1], y["units"].shape[-1])
        xs.append(x["units"][:, :t].T.double())
        ys.append(y["units"][:, :t].T.double())
    if not xs:
        sys.exit(f"--unit-map-from {previous_data}: no clip of {data} is there too (preprocess the same raw folder "
                 "with the previous base's encoder)")
    x, y = torch.cat(xs), torch.cat(ys)
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = xa.T @ xa
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    w = torch.linalg.solve(gram, xa.T @ y)  # (dim + 1, previous dim)
    r2 = 1 - float(((y - xa @ w) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
    return w[:-1].T.float(), w[-1].float(), r2


def _with_unit_map(state: dict, a, a0) -> dict:
    """A base's weights for units ``u`` whose map ``a @ u + a0`` gives the units it learned on: its input layer
    (``pre``, a convolution over frames) composed with the map, so the warm start renders as the previous base did
    from the mapped units; every other weight is kept."""
    import torch

    w, b = state["pre.weight"], state["pre.bias"]  # (hidden, previous dim, kernel)
    new_w = torch.einsum("hok,on->hnk", w.float(), a)
    new_b = b.float() + torch.einsum("hok,o->h", w.float(), a0)
    return dict(state, **{"pre.weight": new_w.to(w.dtype), "pre.bias": new_b.to(b.dtype)})


def _warm_start_hop(meta: dict, info: dict) -> int:
    """The corpus's hop, for a previous base of another hop: a DDSP decoder's weights do not depend on the hop (it
    reads one frame of controls per hop and renders them at the audio rate), so a hop-320 base starts a hop-160
    one; its frame-level layers then see half the time per frame, which training adapts to. A HiFi-GAN decoder's
    upsampling *is* its hop: refused."""
    hop, base_hop = int(info["hop_length"]), int(meta["dataset_info"].get("hop_length", 0))
    if base_hop and hop != base_hop and meta["net"].get("decoder") != "ddsp":
        sys.exit(f"--init-from: the base's {meta['net'].get('decoder', 'nsf-hifigan')} decoder renders hop "
                 f"{base_hop} only, this corpus is hop {hop}: preprocess it with --hop-length {base_hop}")
    return hop


def _tiny_config() -> dict:
    """The shipped tiny config (what the fit stage trains with)."""
    import yaml

    return yaml.safe_load((OUT.parent / "configs" / "tiny.yaml").read_text())


def _run_net(fit_args: list[str] = ()) -> dict:
    """The ``model.net`` the fit stage trains: the tiny config's, each ``--model.net.KEY=VALUE`` fit arg over it."""
    import yaml

    net = dict(_tiny_config()["model"]["net"])
    for arg in fit_args:
        key, eq, value = arg.partition("=")
        if eq and key.startswith("--model.net."):
            net[key.removeprefix("--model.net.")] = yaml.safe_load(value)
    return net


def _with_noise_steps(state: dict, steps: int) -> dict:
    """A base's weights for a decoder that shapes its noise ``steps`` times per frame (``ddsp_noise_steps``): the
    level head is added at zero (level 1 at every sub-step, the frame gains interpolated between frames), or
    dropped when going back to one step; every other weight is kept."""
    import torch

    state = {k: v for k, v in state.items() if not k.startswith("dec.noise_env.")}
    if steps > 1:
        hidden = state["dec.out.weight"].shape[1]
        state["dec.noise_env.weight"] = torch.zeros((steps, hidden, 1), dtype=state["dec.out.weight"].dtype)
        state["dec.noise_env.bias"] = torch.zeros(steps, dtype=state["dec.out.bias"].dtype)
    return state


def _with_envelope_head(state: dict, net: dict, bins: int) -> dict:
    """A harmonic-distribution base's weights for a decoder that reads the harmonics from an envelope of ``bins``:
    its output layer keeps the loudness and noise rows and gets ``bins`` zero rows (a flat envelope, all harmonics
    alike) in place of the per-harmonic ones; every other weight is kept."""
    import torch

    h, w, b = int(net["n_harmonics"]), state["dec.out.weight"], state["dec.out.bias"]
    new_w = torch.zeros((1 + bins + w.shape[0] - 1 - h, *w.shape[1:]), dtype=w.dtype)
    new_b = torch.zeros(new_w.shape[0], dtype=b.dtype)
    new_w[0], new_b[0] = w[0], b[0]
    new_w[1 + bins:], new_b[1 + bins:] = w[1 + h:], b[1 + h:]
    return dict(state, **{"dec.out.weight": new_w, "dec.out.bias": new_b})


def stage_fit(work: Path, minutes: float, max_steps: int, init_from: Path | None = None,
              fit_args: list[str] = (), unit_map_from: Path | None = None) -> None:
    from svc_pl.cli import main as cli

    runs = work / "runs"
    last = sorted(runs.rglob("last.ckpt"))
    h, m = divmod(int(minutes), 60)
    args = ["fit", "--config", "tiny", "--data.dataset_dir", str(work / "data"), "--trainer.default_root_dir",
            str(runs), "--trainer.max_steps", str(max_steps), "--trainer.max_time", f"00:{h:02d}:{m:02d}:00",
            "--trainer.logger.class_path", "pytorch_lightning.loggers.TensorBoardLogger",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", "base",
            "--trainer.logger.init_args.version", "0", "--trainer.enable_progress_bar", "false",
            # the shipped bases' recipe: every speaker is seen thousands of times, at the shared rate (the config's
            # larger speaker rate is for fine-tunes, whose new speaker must travel from the mean in a few hundred steps)
            "--model.speaker_lr_scale", "1", *fit_args]
    if last:
        args += ["--ckpt_path", str(last[-1])]
    elif init_from is not None:
        args += ["--model.init_from", str(warm_start_file(work, init_from, fit_args, unit_map_from))]
    with (work / MACHINES).open("a") as f:  # the model card names every machine that trained the base
        f.write(f"{time.strftime('%Y-%m-%d')}\t{_this_machine()}\t{minutes:g} min (cumulative)\t"
                f"from step {_step_of(last[-1]) if last else 0}, unvoiced_f0_hold {_config_hold()}"
                + (f", fit args {' '.join(fit_args)}" if fit_args else "") + "\n")
    if cli(args) != 0:
        sys.exit("training failed")


MACHINES = "machines.tsv"


def _this_machine() -> str:
    """'NVIDIA H200' on CUDA, else e.g. '2-core Intel(R) Xeon(R) Processor' from /proc/cpuinfo."""
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()}-core {name}"


def _step_of(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def _config_hold() -> float:
    """The tiny config's ``data.unvoiced_f0_hold`` (what the fit stage trains with)."""
    return float(_tiny_config()["data"].get("unvoiced_f0_hold", 0))


def _hold_since(work: Path) -> tuple[float, int] | None:
    """(share, first step) of the unbroken run of fit stages, up to the last, that held unvoiced F0; None if the
    last did not (or the runs were not recorded)."""
    path = work / MACHINES
    runs = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        m = re.search(r"from step (\d+), unvoiced_f0_hold ([\d.]+)", line)
        runs.append((int(m.group(1)), float(m.group(2))) if m else (0, 0.0))
    since = None
    for step, hold in runs:
        since = (since or (hold, step)) if hold > 0 else None
    return since


def _fit_args_of(work: Path) -> list[tuple[int, str]]:
    """(first step, extra ``svc-pl fit`` arguments) of each recorded fit stage that had any."""
    path = work / MACHINES
    found = [re.search(r"from step (\d+),.*, fit args (.+)$", line)
             for line in (path.read_text().splitlines() if path.is_file() else [])]
    return [(int(m.group(1)), m.group(2)) for m in found if m]


def _machines_of(work: Path) -> list[str]:
    """The distinct machines the fit stage ran on, in order (empty when it never recorded any)."""
    path = work / MACHINES
    names = [line.split("\t")[1] for line in path.read_text().splitlines() if line.count("\t") >= 2] \
        if path.is_file() else []
    return list(dict.fromkeys(names))


def stage_export(work: Path, minutes: float) -> Path:
    import torch

    from svc_pl.pretrained import save_base
    from svc_pl.run_checkpoint import segment_frames

    candidates = [torch.load(p, map_location="cpu", weights_only=True) for p in (work / "runs").rglob("last*.ckpt")]
    ckpt = max(candidates, key=lambda c: int(c["global_step"]))
    hp = ckpt["hyper_parameters"]
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    meta = {"net": dict(hp["net"]), "dataset_info": dict(hp["dataset_info"]), "global_step": int(ckpt["global_step"]),
            "segment_frames": segment_frames(hp), "epoch": int(ckpt["epoch"]),
            "train_minutes": _trained_minutes(ckpt, minutes),
            "config": "tiny", "init_from": _warm_start_of(work, hp.get("init_from") or _warm_start_file_of(work)),
            "machines": _machines_of(work)}
    path = save_base(state, OUT / "tiny-base.safetensors", meta)
    print(f"base: {path} ({path.stat().st_size / 1e6:.1f} MB, step {meta['global_step']})", flush=True)
    return path


def _trained_minutes(ckpt: dict, fallback: float) -> float:
    """Training time of the run as its checkpoint's Timer counted it (cumulative over resumes, right for a run
    stopped by hand); ``fallback`` (``--minutes``) for a checkpoint without one."""
    timer = next((v for k, v in (ckpt.get("callbacks") or {}).items() if k.startswith("Timer")), None)
    seconds = ((timer or {}).get("time_elapsed") or {}).get("train")
    return round(seconds / 60, 1) if seconds else fallback


def _warm_start_file_of(work: Path) -> str | None:
    """The warm-start file :func:`stage_fit` wrote, if it did: a resumed run's hparams no longer name it (a resume
    is started with ``--ckpt_path`` alone, so its hparams, saved in every later checkpoint, have ``init_from`` None)."""
    path = work / "warm_start.safetensors"
    return str(path) if path.is_file() else None


def _warm_start_of(work: Path, init_from: str | None) -> str | None:
    """What the run started from, for the model card: the previous base's file name and step."""
    if not init_from:
        return None
    from svc_pl.pretrained import load_base

    meta = load_base(init_from)[1] if Path(init_from).is_file() else {}
    origin = meta.get("warm_started_from") or {}
    return f"{origin.get('file', Path(init_from).name)} (step {origin.get('global_step')})"


def stage_evaluate(work: Path) -> dict:
    """Resynthesis of held-out voices with their own F0, through ``svc-pl infer`` with the base."""
    from svc_pl.cli import main as cli
    from svc_pl.corpus import EVAL_MELODIES, EVAL_SENTENCES, HELD_OUT_VOICES, render_corpus
    from svc_pl.data.audio import load_audio
    from svc_pl.evaluate import evaluate_f0

    ev = work / "eval"
    files = render_corpus(ev / "raw", HELD_OUT_VOICES, EVAL_SENTENCES[:2], EVAL_MELODIES)
    model = ev / "base.ckpt"
    _base_as_ckpt(model)
    from svc_pl.pretrained import load_base

    encoder = content_encoder_of(int(load_base(OUT / "tiny-base.safetensors")[1]["dataset_info"]["unit_dim"]))
    rows = []
    for f in files:
        out_dir = ev / "out" / f.parent.name
        code = cli(["infer", str(f), "-o", str(out_dir), "-m", str(model), "-s", "0", "--content-encoder",
                    encoder, "--no-progress", "--precision", "fp32"])
        if code != 0:
            sys.exit(f"conversion of {f} failed")
        src, sr = load_audio(f)
        conv, csr = load_audio(out_dir / f.name)
        a = evaluate_f0(src, conv, sr, csr, method="pm")
        rows.append({"file": f"{f.parent.name}/{f.name}", "f0_median_cents": a.f0_median_cents,
                     "gross_error_rate": a.f0_gross_error_rate, "voicing_agreement": a.vuv_agreement})
    summary = {k: float(np.nanmedian([r[k] for r in rows])) for k in ("f0_median_cents", "gross_error_rate",
                                                                        "voicing_agreement")}
    summary["gross_error_rate_mean"] = float(np.mean([r["gross_error_rate"] for r in rows]))
    report = {"summary": summary, "files": rows}
    (OUT / "tiny-base-eval.json").write_text(json.dumps(report, indent=2) + "\n")
    write_card(work, summary)
    print(json.dumps(summary, indent=2), flush=True)
    from svc_pl.evaluate import plot_conversion

    f = next(p for p in files if p.name.startswith("sung"))
    src, sr = load_audio(f)
    conv, csr = load_audio(ev / "out" / f.parent.name / f.name)
    plot_conversion(src, sr, conv, csr, 0, ev / "base_resynthesis.png")
    print(f"plot: {ev / 'base_resynthesis.png'}")
    return report


def write_card(work: Path, summary: dict) -> Path:
    """The model card beside the weights: recipe, run time, final losses, evaluation figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from svc_pl.corpus import BASE_VOICES, HARVARD_SENTENCES, HELD_OUT_VOICES, SUNG_SENTENCES, SUS_SENTENCES
    from svc_pl.data.unit_window import UnitWindow
    from svc_pl.io import write_text_atomic
    from svc_pl.pretrained import load_base

    _, meta = load_base(OUT / "tiny-base.safetensors")
    events = sorted((work / "runs").rglob("events.out.tfevents.*"))
    losses = {}
    if events:
        acc = EventAccumulator(str(events[-1]))
        acc.Reload()
        for tag in ("loss/g/stft", "loss/g/mel", "loss/g/lf0"):
            if tag in acc.Tags()["scalars"]:
                tail = [e.value for e in acc.Scalars(tag)[-20:]]
                losses[tag] = sum(tail) / len(tail)
    data = json.loads((work / "data" / "dataset.json").read_text())
    hours = sum(1 for _ in (work / "data").rglob("*.pt"))
    n = meta["net"]
    window = meta["dataset_info"].get("unit_window") or {}
    unit_dim = int(meta["dataset_info"]["unit_dim"])
    encoder = content_encoder_of(unit_dim)
    warm = meta.get("init_from")
    lines = [
        "# tiny-base", "",
        "A pretrained base for `svc-pl fit --config tiny --model.init_from tiny-base` (16 kHz, hop 320, "
        f"{_WHISPER_TITLE[encoder]} units, {unit_dim}-d). Made by `python scripts/train_base.py WORK --minutes "
        f"{meta['train_minutes']:.0f}" + (f" --content-encoder {encoder}" if encoder != "whisper-tiny.en" else "")
        + (" --init-from PREVIOUS_BASE" if warm else "") + "`.", "",
        "## Model", "",
        f"- Prior encoder: {n['n_layers']} transformer layers, {n['hidden_channels']} channels, coarse-F0 embedding "
        "(so-vits-svc's `enc_p`), F0 predictor for `--auto-predict-f0`.",
        f"- Decoder: DDSP harmonic-plus-noise ({n['n_harmonics']} harmonics at k*F0"
        + (f", their amplitudes read at k*F0 from a log envelope of {n['ddsp_envelope_bins']} bins over "
           f"0-{meta['dataset_info']['sampling_rate'] / 2000:g} kHz" if n.get("ddsp_envelope_bins") else "")
        + f", {n['n_noise_bands']} noise bands, 3 convolutions of {n['ddsp_hidden']} channels), speaker embedding "
        f"of {n['gin_channels']}.",
        "- No discriminator: trained on multi-resolution STFT loss (FFT 2048/1024/512/256) + mel L1.",
        "- Weights stored as float16 safetensors (no pickle).", "",
        "## Units", "",
        (f"- Made as a live stream makes them (`--unit-window {UnitWindow.from_dict(window).spec}`): every "
         f"{window['chunk_frames'] * 20} ms of units from one Whisper call on "
         f"{window['window_frames'] * 20} ms of audio ending {window['lookahead_frames'] * 20} ms after them, "
         "without Whisper's 30 s padding, so `svc-pl live` and `svc-pl infer` give the model the units it "
         "learned on. Datasets for fine-tuning get the same units from `svc-pl preprocess --content-encoder "
         + ("whisper-tiny.en` (the default for that encoder)" if encoder == "whisper-tiny.en" else
            f"{encoder} --unit-window {UnitWindow.from_dict(window).spec} --perturb-copies 2`")
         + "; a dataset with other units is refused.")
        if window else "- Whole-clip units, as so-vits-svc makes them.",
        "- Trained on speaker-perturbed units (`--perturb-copies 2`): each step reads the units of one of two "
        "copies of the clip whose voice was changed (Praat formant shift and pitch randomisation, random "
        "parametric EQ), so the decoder takes the voice from the speaker embedding, not from the units. "
        "Conversion uses the clean units.",
        *([f"- Unvoiced frames' F0 as a live stream has it on {hold[0]:.0%} of the clips from step {hold[1]} on "
           "(`--data.unvoiced_f0_hold`): the last voiced F0 instead of the interpolation towards the next voiced "
           "frame, which a stream cannot know, so the model takes either."] if (hold := _hold_since(work)) else []),
        "",
        "## Data", "",
        f"- {len(BASE_VOICES)} Debian voices ({', '.join(v.name for v in BASE_VOICES)}): espeak-ng variants and "
        "festival kal/slt; per voice 16 sentences spoken (and again with F0 moved 5 semitones by WORLD), about "
        f"{len(HARVARD_SENTENCES) * SPOKEN_PER_SENTENCE // len(BASE_VOICES)} of the {len(HARVARD_SENTENCES)} "
        f"Harvard sentences (each spoken by {SPOKEN_PER_SENTENCE} voices, for more words), about "
        f"{len(SUNG_SENTENCES) * SUNG_PER_SENTENCE // len(BASE_VOICES)} of {len(SUNG_SENTENCES)} more sentences "
        f"sung on a training melody (each by {SUNG_PER_SENTENCE} voices), about "
        f"{len(SUS_SENTENCES) * SUS_SPOKEN_PER_SENTENCE // len(BASE_VOICES)} spoken and "
        f"{len(SUS_SENTENCES) * SUS_SUNG_PER_SENTENCE // len(BASE_VOICES)} sung of {len(SUS_SENTENCES)} semantically "
        f"unpredictable sentences (random common words; each spoken by {SUS_SPOKEN_PER_SENTENCE} voices and sung by "
        f"{SUS_SUNG_PER_SENTENCE} other) and 5 melodies sung at three "
        "transpositions (WORLD re-synthesis of slow speech on a melody; C2 to about D6 over the corpus). "
        f"{hours} clips, {data.get('speakers') and len(data['speakers'])} speakers.",
        f"- Held out (never trained on): voices {', '.join(v.name for v in HELD_OUT_VOICES)}; sentences 16-19 and "
        "melody 5.", "",
        "## Training", "",
        f"- {meta['global_step']} steps (batch 8 x 1 s, Adam lr 5e-4, decay 0.998 per epoch) in "
        f"{meta['train_minutes']:.0f} minutes on {' then '.join(meta.get('machines') or ['2 CPU cores'])} (fp32)"
        + (f", starting from the previous base's weights ({warm})." if warm else "."),
        *[f"- From step {step}: `{args}`" + (" (the content loss: Whisper tiny.en's units of each generated "
                                             "segment held to those of the real one, `docs/training.md`)."
                                             if "c_content" in args else ".")
          for step, args in _fit_args_of(work)],
        "- Final losses (mean of the last logged values): " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()),
        "",
        "## Evaluation (held-out voices, resynthesis through `svc-pl infer` with their own F0, speaker 0)", "",
        f"- F0 median error: {summary['f0_median_cents']:.1f} cents (median over files)",
        f"- gross-error rate (>50 cents): {summary['gross_error_rate']:.3f} median, "
        f"{summary['gross_error_rate_mean']:.3f} mean",
        f"- voicing agreement: {summary['voicing_agreement']:.3f}",
        "- per-file figures: `tiny-base-eval.json`; conversion figures (similarity, MCD, word error rate): the "
        "docs/quality.md (`bench/bench_quality.py`, `bench/bench_words.py`)", "",
        "## Limits", "",
        "- Trained on synthetic voices only: real singers will need fine-tuning on their own recordings, and the "
        "output keeps some of the buzzy, vocoder-like timbre of its training data.",
        "- Whisper tiny.en is an English ASR encoder: other languages convert with weaker content.",
    ]
    path = OUT / "tiny-base.md"
    kept = _hand_kept_sections(path.read_text() if path.is_file() else "", lines)
    write_text_atomic(path, "\n".join(lines) + "\n" + "".join("\n" + s for s in kept))
    print(f"model card: {path}" + (f" (kept by hand: {', '.join(s.splitlines()[0][3:] for s in kept)})"
                                   if kept else ""))
    return path


def _hand_kept_sections(old_card: str, lines: list[str]) -> list[str]:
    """The sections of the card that were written by hand (their ``## `` title is not one the writer makes), in
    their order: a rewrite of the card after a new export or evaluation keeps them (conversion tables, history)."""
    made = {line for line in lines if line.startswith("## ")}
    sections, current = [], None
    for line in old_card.splitlines(keepends=True):
        if line.startswith("## ") or line.startswith("# "):
            current = [line] if line.startswith("## ") and line.rstrip("\n") not in made else None
            if current is not None:
                sections.append(current)
        elif current is not None:
            current.append(line)
    return ["".join(s).rstrip("\n") + "\n" for s in sections]


def _base_as_ckpt(path: Path, base: Path = OUT / "tiny-base.safetensors") -> None:
    """A minimal svc_pl checkpoint of the base, so ``svc-pl infer`` converts with it."""
    from svc_pl.pretrained import write_base_ckpt

    write_base_ckpt(path, base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--minutes", type=float, default=90.0,
                    help="training time (cumulative over resumes); the export stage takes the run's own count from "
                         "its checkpoint and this only when the checkpoint has none")
    ap.add_argument("--max-steps", type=int, default=200000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stage", choices=["all", "data", "fit", "export", "evaluate"], default="all")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from a previous base's weights (e.g. svc_pl/pretrained/tiny-base.safetensors)")
    ap.add_argument("--content-encoder", choices=["whisper-tiny.en", "whisper-base"], default="whisper-tiny.en",
                    help="the units of the corpus (data stage): Whisper tiny.en (the shipped base's) or the "
                         "multilingual Whisper base (the whisper-base extra)")
    ap.add_argument("--unit-map-from", type=Path, default=None, metavar="DATA",
                    help="with --init-from a base of other units: the same corpus preprocessed with that base's "
                         "encoder (e.g. the WORK/data of its run), to carry its input layer over")
    ap.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                    help="one more `svc-pl fit` argument for the fit stage (repeat; e.g. "
                         "--fit-arg=--model.speaker_adversary=0.5)")
    a = ap.parse_args()
    if a.stage in ("all", "data"):
        stage_data(a.work, a.workers, a.content_encoder)
    if a.stage in ("all", "fit"):
        stage_fit(a.work, a.minutes, a.max_steps, a.init_from, a.fit_arg, a.unit_map_from)
    if a.stage in ("all", "export"):
        stage_export(a.work, a.minutes)
    if a.stage in ("all", "evaluate"):
        stage_evaluate(a.work)


if __name__ == "__main__":
    main()

"""Convert recordings to a target voice.

Inputs are files or folders (folders are converted recursively, their tree mirrored under
OUTPUT_DIR). Works with svc_pl checkpoints (.ckpt) and so-vits-svc models (G_*.pth + config.json).
A file that cannot be read is reported and skipped; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from svc_pl.infer.flags import ConverterFactory, add_option_flags, check_speaker, option_groups, options_from_args

LOG = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = option_groups(p)
    io = groups["input/output"]
    io.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    io.add_argument("-o", "--output", "--output-dir", dest="output", required=True, metavar="OUTPUT_DIR")
    io.add_argument("-m", "--model", help="svc_pl .ckpt or so-vits-svc G_*.pth (required but with --only-diffusion)")
    io.add_argument("-c", "--config", help="so-vits-svc config.json (default: beside the model)")
    io.add_argument("--content-encoder", metavar="PATH",
                    help="content-encoder weights the model was trained with: ContentVec/HuBERT checkpoint or "
                         "folder, Whisper checkpoint or CTranslate2 folder, or whisper-tiny.en / whisper-base")
    from svc_pl.data.audio import FORMATS
    from svc_pl.data.content import ENCODERS

    io.add_argument("--encoder", choices=sorted(ENCODERS),
                    help="content encoder name (default: the model's speech_encoder)")
    io.add_argument("--random-encoder", action="store_true",
                    help="fixed random content-encoder weights (only for models trained with --random-encoder)")
    io.add_argument("--format", choices=[ext.lstrip(".") for ext in FORMATS],
                    help="output format (default: the input's)")
    io.add_argument("--no-progress", action="store_true")
    spk = groups["speaker"]
    spk.add_argument("-s", "--speaker", default=None,
                     help="target speaker name or id (default: the first)")
    spk.add_argument("--speaker-mix", metavar="NAME:W,...", help="static speaker mix, e.g. 'alto:0.7,tenor:0.3'")
    spk.add_argument("--speaker-keyframes", metavar="JSON",
                     help="time-varying mix: JSON file [[seconds, {\"name\": weight, ...}], ...], linearly "
                          "interpolated between keyframes (overrides --speaker)")
    quality = groups["quality"]
    quality.add_argument("--cluster-model", metavar="PATH",
                         help="k-means model from svc-pl train-index (kmeans.pt), for --cluster-ratio")
    quality.add_argument("--feature-index", metavar="DIR",
                         help="feature index folder from svc-pl train-index, for --retrieval-ratio")
    quality.add_argument("--enhancer", metavar="DIR", help="openvpi NSF-HiFiGAN vocoder folder (model + config.json)")
    quality.add_argument("--unit-stats", metavar="PATH",
                         help="for --match-units with a model whose checkpoint has no unit statistics (so-vits-svc "
                              "models): unit_stats.pt of svc-pl train-index, or the preprocessed dataset")
    add_option_flags(groups)
    speed = groups["speed"]
    speed.add_argument("--device", default=None, help="device for single-device runs (cpu, cuda, cuda:1)")
    speed.add_argument("--devices", default="1", help="number of devices: >1 splits the files across them")
    speed.add_argument("--accelerator", default="auto", help="cpu, gpu, ... for --devices")


def run(args: argparse.Namespace) -> int:
    from svc_pl.errors import UserFacingError
    from svc_pl.infer.batch import collect_jobs, convert_file

    if not args.model and not args.only_diffusion:
        raise UserFacingError("pass the voice model with -m/--model (svc_pl .ckpt or so-vits-svc G_*.pth); only "
                              "--only-diffusion converts without one")
    if not args.content_encoder and not args.random_encoder:
        raise UserFacingError("pass --content-encoder PATH (the content-encoder weights the model was trained "
                              "with, e.g. checkpoint_best_legacy_500.pt, or whisper-tiny.en for tiny-base models)")
    opts = options_from_args(args)
    jobs = collect_jobs(args.inputs, args.output, args.format)
    if not jobs:
        raise UserFacingError("no input audio files found")
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    factory = ConverterFactory(args)
    if devices != 1:
        from svc_pl.lightning.predict import predict_convert

        _probe(factory, opts, args.device or "cpu")
        done, failed = predict_convert(jobs, factory, opts, devices=devices, accelerator=args.accelerator,
                                       progress=not args.no_progress)
        print(f"converted {done} file(s), {failed} failed", file=sys.stderr)
        return 1 if failed else 0
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    converter = factory(device)
    check_speaker(converter, opts)
    m = converter.model
    print(f"model {m.source}: {m.sampling_rate} Hz, {len(m.speakers) or m.net.n_speakers} speaker(s); converting "
          f"{len(jobs)} file(s) on {device}", file=sys.stderr)
    failures = []
    from tqdm.auto import tqdm

    for job in tqdm(jobs, desc="convert", unit="file", disable=args.no_progress or len(jobs) < 2):
        try:
            convert_file(converter, job, opts)
        except UserFacingError as err:
            failures.append(str(err))
            print(f"error: {err}", file=sys.stderr)
        except Exception as err:  # one bad file must not stop a folder run: report it and go on
            failures.append(f"{job.source}: {type(err).__name__}: {err}")
            print(f"error: {failures[-1]}", file=sys.stderr)
    ok = len(jobs) - len(failures)
    print(f"converted {ok} of {len(jobs)} file(s) into {args.output}", file=sys.stderr)
    for f in failures:
        print(f"  failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def _probe(factory, opts, device) -> None:
    """Fail fast (once, before spawning) on a bad model, config or speaker."""
    from svc_pl.infer.build import diffusion_stage
    from svc_pl.infer.loading import load_voice_model

    a = factory.args
    model = None if opts.only_diffusion else load_voice_model(a.model, a.config, device="cpu")
    diffusion = diffusion_stage(opts, model, None if model is None else int(model.net.ssl_dim), "cpu",
                                enhancer=a.enhancer)
    model = diffusion.voice_model() if model is None else model
    names = list(opts.speaker) if isinstance(opts.speaker, dict) else [opts.speaker]
    for name in names:
        model.speaker_id(name)

"""Convert recordings to a target voice.

Inputs are files or folders (folders are converted recursively, their tree mirrored under
OUTPUT_DIR). Works with svc_pl checkpoints (.ckpt) and so-vits-svc models (G_*.pth + config.json).
A file that cannot be read is reported and skipped; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

LOG = logging.getLogger(__name__)


# ConvertOptions fields whose flags are not --field-name: short forms and the names users know
_FLAGS: dict[str, tuple[str, ...]] = {
    "transpose": ("-t", "--transpose"),
    "noise_scale": ("-n", "--noise-scale"),
    "f0_method": ("--f0",),
    "f0_model_path": ("--f0-model",),
}
_METAVARS = {"f0_model_path": "PATH", "diffusion_model": "PATH", "diffusion_config": "PATH", "vocoder": "DIR"}
# fields set by flags of their own (see _options): a name or id, a mix, or a keyframe file
_SPEAKER_FIELDS = ("speaker", "speaker_keyframes")


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = _groups(p)
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
    _add_option_flags(groups)
    speed = groups["speed"]
    speed.add_argument("--device", default=None, help="device for single-device runs (cpu, cuda, cuda:1)")
    speed.add_argument("--devices", default="1", help="number of devices: >1 splits the files across them")
    speed.add_argument("--accelerator", default="auto", help="cpu, gpu, ... for --devices")


def _groups(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    from svc_pl.infer.options import OPTION_GROUPS

    return {name: p.add_argument_group(name) for name in OPTION_GROUPS}


def _add_option_flags(groups: dict[str, argparse._ArgumentGroup]) -> None:
    """One flag per :class:`ConvertOptions` field (but the speaker's), its type, default, choices and help
    taken from the field."""
    import dataclasses
    import typing

    from svc_pl.data.pitch import METHODS
    from svc_pl.infer.options import ConvertOptions

    hints = typing.get_type_hints(ConvertOptions)
    for f in dataclasses.fields(ConvertOptions):
        if f.name in _SPEAKER_FIELDS:
            continue
        flags = _FLAGS.get(f.name, ("--" + f.name.replace("_", "-"),))
        kwargs = {"dest": f.name, "default": f.default, "help": f.metadata["help"]}
        kind = hints[f.name]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        else:
            if typing.get_origin(kind) is typing.Literal:
                kwargs["choices"], kind = typing.get_args(kind), str
            elif f.name == "f0_method":
                kwargs["choices"] = METHODS
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kwargs["type"] = args[0] if args else kind
            if f.default is not None:
                kwargs["help"] += " (default: %(default)s)"
            if f.name in _METAVARS:
                kwargs["metavar"] = _METAVARS[f.name]
        groups[f.metadata["group"]].add_argument(*flags, **kwargs)


def _options(args):
    import dataclasses

    from svc_pl.infer.options import ConvertOptions

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ConvertOptions)
              if f.name not in _SPEAKER_FIELDS}
    if args.speaker is not None:
        values["speaker"] = args.speaker
    if args.speaker_mix:
        mix = {}
        for part in args.speaker_mix.split(","):
            name, _, w = part.partition(":")
            mix[name.strip()] = float(w or 1)
        values["speaker"] = mix
    if args.speaker_keyframes:
        with open(args.speaker_keyframes, encoding="utf-8") as f:
            values["speaker_keyframes"] = [(float(t), dict(w)) for t, w in json.load(f)]
    return ConvertOptions(**values)


class ConverterFactory:
    """Builds the converter on a given device (picklable, for multi-process runs)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, device):
        from svc_pl.infer.build import build_converter

        a = self.args
        return build_converter(a.model, a.content_encoder, encoder=a.encoder, random_encoder=a.random_encoder,
                               config=a.config, device=device, options=_options(a), enhancer=a.enhancer,
                               cluster_model=a.cluster_model, feature_index=a.feature_index)


def run(args: argparse.Namespace) -> int:
    from svc_pl.errors import UserFacingError
    from svc_pl.infer.batch import collect_jobs, convert_file

    if not args.model and not args.only_diffusion:
        raise UserFacingError("pass the voice model with -m/--model (svc_pl .ckpt or so-vits-svc G_*.pth); only "
                              "--only-diffusion converts without one")
    if not args.content_encoder and not args.random_encoder:
        raise UserFacingError("pass --content-encoder PATH (the content-encoder weights the model was trained "
                              "with, e.g. checkpoint_best_legacy_500.pt, or whisper-tiny.en for tiny-base models)")
    opts = _options(args)
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
    _check_speaker(converter, opts)
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


def _check_speaker(converter, opts) -> None:
    from svc_pl.infer.build import check_speakers

    check_speakers(converter.model, opts)


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

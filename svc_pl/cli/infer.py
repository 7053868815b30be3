"""Convert recordings to a target voice.

Inputs are files or folders (folders are converted recursively, their tree mirrored under
OUTPUT_DIR). Works with svc_pl checkpoints (.ckpt) and so-vits-svc models (G_*.pth + config.json).
A file that cannot be read is reported and skipped; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    p.add_argument("-o", "--output", "--output-dir", dest="output", required=True, metavar="OUTPUT_DIR")
    p.add_argument("-m", "--model", required=True, help="svc_pl .ckpt or so-vits-svc G_*.pth")
    p.add_argument("-c", "--config", help="so-vits-svc config.json (default: beside the model)")
    p.add_argument("-s", "--speaker", default=None, help="target speaker name or id (default: the first)")
    p.add_argument("-t", "--transpose", type=float, default=0.0, help="pitch shift in semitones")
    p.add_argument("--content-encoder", metavar="PATH",
                   help="content-encoder weights the model was trained with: ContentVec/HuBERT checkpoint or folder, "
                        "Whisper checkpoint or CTranslate2 folder, or whisper-tiny.en")
    p.add_argument("--encoder", help="content encoder name (default: the model's speech_encoder)")
    p.add_argument("--random-encoder", action="store_true",
                   help="fixed random content-encoder weights (only for models trained with --random-encoder)")
    p.add_argument("--f0", default="pm", choices=["pm", "dio", "harvest", "crepe", "fcpe", "rmvpe"])
    p.add_argument("--f0-model", metavar="PATH", help="rmvpe.pt for --f0 rmvpe")
    p.add_argument("--f0-threshold", type=float, default=None, help="F0 filter / voicing threshold")
    p.add_argument("--auto-predict-f0", action="store_true", help="predict F0 with the model (speech, not singing)")
    p.add_argument("-n", "--noise-scale", type=float, default=0.4)
    p.add_argument("--cluster-model", metavar="PATH", help="k-means model from svc-pl train-index (kmeans.pt)")
    p.add_argument("--cluster-ratio", type=float, default=0.0, help="share of cluster centres in the units (0-1)")
    p.add_argument("--feature-index", metavar="DIR", help="feature index folder from svc-pl train-index")
    p.add_argument("--retrieval-ratio", type=float, default=0.0, help="share of retrieved features (0-1)")
    p.add_argument("--loudness-mix", type=float, default=1.0,
                   help="1 keeps the model's loudness, 0 follows the input's loudness envelope")
    p.add_argument("--speaker-mix", metavar="NAME:W,...", help="static speaker mix, e.g. 'alto:0.7,tenor:0.3'")
    p.add_argument("--speaker-keyframes", metavar="JSON",
                   help="time-varying mix: JSON file [[seconds, {\"name\": weight, ...}], ...]")
    p.add_argument("--slice-db", type=float, default=-40.0)
    p.add_argument("--max-silence-kept", type=float, default=0.5,
                   help="seconds of silence kept around voiced audio; longer pauses are passed through as silence")
    p.add_argument("--min-chunk-seconds", type=float, default=5.0,
                   help="shortest voiced chunk before a pause may end it")
    p.add_argument("--pad-seconds", type=float, default=0.5)
    p.add_argument("--clip-seconds", type=float, default=0.0, help="forced clip length (0: automatic)")
    p.add_argument("--crossfade-seconds", type=float, default=0.0, help="cross-fade between forced clips")
    p.add_argument("--seed", type=int, default=52468)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16: content encoder and synthesizer under bfloat16 autocast (about 2x faster on CPUs "
                        "with AVX-512 BF16/AMX and on GPUs; the audio moves from fp32's by -30 to -40 dB); "
                        "auto (default): bf16 where the hardware does it natively, else fp32")
    p.add_argument("--decode-window", type=int, default=256,
                   help="frames the decoder works on at a time (0: whole clips); same audio, less set-up and memory")
    p.add_argument("--length-bucket-seconds", type=float, default=0.5,
                   help="pad clips with silence to a multiple of this length (few shapes: faster, flat memory)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="clips of one length converted together (0: 1 on CPU, 8 on GPU)")
    p.add_argument("--max-chunk-seconds", type=float, default=10.0,
                   help="longest voiced clip converted at once when --clip-seconds is 0")
    p.add_argument("--enhancer", metavar="DIR", help="openvpi NSF-HiFiGAN vocoder folder (model + config.json)")
    p.add_argument("--enhancer-adaptive-key", type=float, default=0.0)
    p.add_argument("--format", choices=["wav", "flac", "ogg"], help="output format (default: the input's)")
    p.add_argument("--device", default=None, help="device for single-device runs (cpu, cuda, cuda:1)")
    p.add_argument("--devices", default="1", help="number of devices: >1 splits the files across them")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, ... for --devices")
    p.add_argument("--no-progress", action="store_true")


def _options(args):
    from svc_pl.infer.converter import ConvertOptions

    speaker = args.speaker if args.speaker is not None else 0
    if args.speaker_mix:
        speaker = {}
        for part in args.speaker_mix.split(","):
            name, _, w = part.partition(":")
            speaker[name.strip()] = float(w or 1)
    keyframes = None
    if args.speaker_keyframes:
        with open(args.speaker_keyframes, encoding="utf-8") as f:
            keyframes = [(float(t), dict(w)) for t, w in json.load(f)]
    return ConvertOptions(speaker=speaker, speaker_keyframes=keyframes, transpose=args.transpose,
                          noise_scale=args.noise_scale, auto_predict_f0=args.auto_predict_f0, f0_method=args.f0,
                          f0_threshold=args.f0_threshold, f0_model_path=args.f0_model,
                          cluster_ratio=args.cluster_ratio, retrieval_ratio=args.retrieval_ratio,
                          loudness_mix=args.loudness_mix, slice_db=args.slice_db, max_silence_kept=args.max_silence_kept,
                          min_chunk_seconds=args.min_chunk_seconds, pad_seconds=args.pad_seconds,
                          clip_seconds=args.clip_seconds, crossfade_seconds=args.crossfade_seconds, seed=args.seed,
                          precision=args.precision, max_chunk_seconds=args.max_chunk_seconds,
                          decode_window=args.decode_window, length_bucket_seconds=args.length_bucket_seconds,
                          batch_size=args.batch_size,
                          enhancer_adaptive_key=args.enhancer_adaptive_key)


class ConverterFactory:
    """Builds the converter on a given device (picklable, for multi-process runs)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, device):
        import torch

        from svc_pl.data.content import load_content_encoder, random_content_encoder
        from svc_pl.infer.converter import Converter
        from svc_pl.infer.loading import load_voice_model

        a = self.args
        device = torch.device(device)
        model = load_voice_model(a.model, a.config, device=device)
        name = a.encoder or model.content_encoder
        encoder = random_content_encoder(name) if a.random_encoder else load_content_encoder(name, a.content_encoder,
                                                                                            device=device)
        if int(encoder.dim) != int(model.net.ssl_dim):
            from svc_pl.errors import UserFacingError

            raise UserFacingError(
                f"{a.model}: the model takes {model.net.ssl_dim}-d units ({model.content_encoder}) but the content "
                f"encoder {a.content_encoder or name!r} gives {encoder.dim}-d units: pass the encoder the model was "
                "trained with (--content-encoder, and --encoder if the name differs)")
        enhancer = cluster = index = None
        if a.enhancer:
            from svc_pl.infer.enhancer import Enhancer

            enhancer = Enhancer.from_pretrained(a.enhancer, device=device)
        if a.cluster_model:
            from svc_pl.infer.cluster import ClusterModel

            cluster = ClusterModel.load(a.cluster_model)
        if a.feature_index:
            from svc_pl.infer.retrieval import FeatureIndex

            index = FeatureIndex.load(a.feature_index)
        return Converter(model, encoder, device=device, enhancer=enhancer, cluster=cluster, index=index)


def run(args: argparse.Namespace) -> int:
    from svc_pl.errors import UserFacingError
    from svc_pl.infer.batch import collect_jobs, convert_file

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
    if len(jobs) > 1 or failures:
        print(f"converted {ok} of {len(jobs)} file(s) into {args.output}", file=sys.stderr)
        for f in failures:
            print(f"  failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def _check_speaker(converter, opts) -> None:
    spk = opts.speaker
    names = list(spk) if isinstance(spk, dict) else [spk]
    for frame in opts.speaker_keyframes or []:
        names += list(frame[1])
    for name in names:
        converter.model.speaker_id(name)


def _probe(factory, opts, device) -> None:
    """Fail fast (once, before spawning) on a bad model, config or speaker."""
    from svc_pl.infer.loading import load_voice_model

    model = load_voice_model(factory.args.model, factory.args.config, device="cpu")
    names = list(opts.speaker) if isinstance(opts.speaker, dict) else [opts.speaker]
    for name in names:
        model.speaker_id(name)

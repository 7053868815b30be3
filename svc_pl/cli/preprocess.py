"""Turn INPUT_DIR/<speaker>/*.{wav,flac,ogg,...} into a training-ready dataset in OUTPUT_DIR.

Files are resampled once to the model rate, loudness-normalised and split at silences; per clip
the content units, F0 with voiced flags and volume are written as one feature file, plus
train/val file lists and dataset.json. Re-running resumes: finished files are skipped. Problem files
are listed in OUTPUT_DIR/report.txt and skipped; the exit status is non-zero only if nothing usable
came out.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input_dir", help="folder with one sub-folder of recordings per speaker")
    p.add_argument("output_dir", help="where the preprocessed dataset goes")
    from svc_pl.data.content import ENCODERS
    from svc_pl.data.pitch import METHODS

    p.add_argument("--encoder", default=None, choices=sorted(ENCODERS),
                   help="content encoder (default: whisper-ppg for Whisper weights, else vec768l12 as so-vits-svc 4.1)")
    p.add_argument("--content-encoder", dest="content_encoder", metavar="PATH",
                   help="weights: ContentVec checkpoint_best_legacy_500.pt, a Hugging Face model folder, "
                        "hubert-soft-0d54a1f4.pt, a Whisper checkpoint or CTranslate2 folder, or whisper-tiny.en / whisper-base")
    p.add_argument("--random-encoder", action="store_true",
                   help="use a ContentVec-shaped encoder with fixed random weights (demos and tests only)")
    p.add_argument("--f0", default="pm", choices=METHODS,
                   help="F0 method (default pm)")
    p.add_argument("--f0-model", metavar="PATH", help="weights for --f0 rmvpe (rmvpe.pt)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="worker processes")
    p.add_argument("--device", default="cpu", help="device for the content encoder (cpu, cuda, cuda:1, ...)")
    p.add_argument("--sampling-rate", type=int, default=44100)
    p.add_argument("--hop-length", type=int, default=512)
    p.add_argument("--filter-length", type=int, default=2048)
    p.add_argument("--win-length", type=int, default=None, help="default: --filter-length")
    p.add_argument("--val-per-speaker", type=int, default=2)
    p.add_argument("--max-clip-seconds", type=float, default=15.0)
    p.add_argument("--min-clip-seconds", type=float, default=0.5)
    p.add_argument("--slice-db", type=float, default=-40.0, help="silence threshold of the slicer (dB)")
    p.add_argument("--cache-spec", action="store_true", help="store linear spectrograms (faster training, more disk)")
    p.add_argument("--unit-window", default="auto", metavar="auto|off|on|W,C,L",
                   help="make units as a live stream does: each C frames (20 ms) from one encoder call on W frames of "
                        "audio ending L frames after them (on = 50,4,2: 1 s, 80 ms, 40 ms). auto (default): on for "
                        "whisper-tiny.en, the shipped base's units; off: whole clips, as so-vits-svc")
    p.add_argument("--perturb-copies", type=int, default=-1, metavar="N",
                   help="also store the units of N speaker-perturbed copies of each clip (formant shift, pitch "
                        "randomisation, random EQ); training reads them so the voice comes from the speaker "
                        "embedding. Default: 2 for whisper-tiny.en (the base's recipe), else 0")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from svc_pl.data.preprocess import PreprocessOptions, preprocess
    from svc_pl.errors import UserFacingError

    if not args.content_encoder and not args.random_encoder:
        raise UserFacingError("no content encoder weights: pass --content-encoder PATH (e.g. so-vits-svc's "
                              "pretrain/checkpoint_best_legacy_500.pt) or --random-encoder for a demo")
    if args.encoder is None:
        from svc_pl.data.whisper import is_whisper_weights

        args.encoder = ("whisper-ppg" if args.content_encoder and is_whisper_weights(args.content_encoder)
                        else "vec768l12")
    opts = PreprocessOptions(sampling_rate=args.sampling_rate, hop_length=args.hop_length,
                             filter_length=args.filter_length, win_length=args.win_length or args.filter_length,
                             encoder=args.encoder, content_encoder_path=args.content_encoder,
                             random_encoder=args.random_encoder, f0_method=args.f0, f0_model_path=args.f0_model,
                             workers=max(1, args.workers), device=args.device, val_per_speaker=args.val_per_speaker,
                             slice_db=args.slice_db, min_clip_seconds=args.min_clip_seconds,
                             max_clip_seconds=args.max_clip_seconds, cache_spec=args.cache_spec,
                             unit_window=args.unit_window, perturb_copies=args.perturb_copies, seed=args.seed)
    try:
        opts.resolved_unit_window()
    except ValueError as err:
        raise UserFacingError(f"--unit-window: {err}") from None
    if args.random_encoder:
        print("note: using a content encoder with fixed RANDOM weights (--random-encoder); real conversions need "
              "ContentVec weights via --content-encoder", file=sys.stderr)
    report = preprocess(args.input_dir, args.output_dir, opts, progress=not args.no_progress)
    print(f"{report['clips']} clips ({report['seconds']} s) from {report['files']} files, "
          f"{len(report['speakers'])} speakers -> {args.output_dir}")
    if report["problems"]:
        print(f"{len(report['problems'])} file(s) skipped, see {os.path.join(args.output_dir, 'report.txt')}:",
              file=sys.stderr)
        for p in report["problems"][:20]:
            print(f"  {p['file']}: {p['problem']}", file=sys.stderr)
    return 0 if report["clips"] else 1

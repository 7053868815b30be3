"""Score a conversion: F0 agreement with the transposed source (cents), voicing agreement, gross errors;
speaker similarity to a target reference by two judges (needs svc_pl[speaker]); the output's word and
character error rates against the source's transcript and given lyrics (needs svc_pl[asr]; without it a
one-line note, or an error when --lyrics asks for them)."""

from __future__ import annotations

import argparse
import math


def add_arguments(p: argparse.ArgumentParser) -> None:
    from svc_pl.data.pitch import METHODS

    p.add_argument("source", help="the original recording")
    p.add_argument("converted", help="the converted recording")
    p.add_argument("-t", "--transpose", type=float, default=0.0, help="semitones the conversion was transposed by")
    p.add_argument("--target-reference", metavar="WAV",
                   help='a recording of the target voice, for speaker similarity (pip install "svc_pl[speaker]")')
    p.add_argument("--lyrics", metavar="TEXT|FILE",
                   help="the words sung or spoken (text, or a text file): WER/CER of the output against them")
    p.add_argument("--no-transcribe", action="store_true", help="skip the transcripts and WER/CER")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the F0 curves as a PNG")
    p.add_argument("--f0", default="fcpe", choices=METHODS, help="F0 extractor (default: fcpe)")
    p.add_argument("--f0-model", metavar="PATH", help="rmvpe.pt for --f0 rmvpe")
    p.add_argument("--no-f0-check", action="store_true",
                   help="judge every frame the --f0 tracker voices, without Praat's second reading (by default source "
                        "frames where the two trackers disagree, usually by an octave, are left out)")
    p.add_argument("--device", default=None, help="torch device for the F0 and speaker models (default: cpu)")


def _table(report: dict) -> str:
    """Plain aligned ``key  value`` lines; floats to 4 significant digits."""
    width = max(len(k) for k in report)
    lines = []
    for k, v in report.items():
        text = f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v)
        lines.append(f"{k:<{width}}  {text}")
    return "\n".join(lines)


def _read_lyrics(value: str | None) -> str | None:
    """``--lyrics``: the text itself, or the contents of a file of that name."""
    from pathlib import Path

    if not value:
        return None
    p = Path(value)
    try:
        if p.is_file():
            return p.read_text(encoding="utf-8").strip() or None
    except OSError:  # e.g. a lyric too long to be a file name
        pass
    return value.strip() or None


def run(args: argparse.Namespace) -> int:
    from svc_pl.data.audio import load_audio
    from svc_pl.errors import UserFacingError
    from svc_pl.evaluate import (
        ASR_EXTRA_HINT,
        CHECK_METHOD,
        Transcriber,
        asr_available,
        evaluate_f0,
        intelligibility,
        plot_f0,
        require_speaker_extra,
        speaker_similarity,
    )
    from svc_pl.io import write_json_atomic

    # Everything that can fail fast (missing files, missing extra) before the F0 models run.
    src, sr_s = load_audio(args.source)
    conv, sr_c = load_audio(args.converted)
    ref = load_audio(args.target_reference) if args.target_reference else None
    if ref is not None:
        require_speaker_extra()
    lyrics = _read_lyrics(args.lyrics)
    transcribe = not args.no_transcribe and asr_available()
    if lyrics and not transcribe:
        raise UserFacingError(f"--lyrics needs transcripts: {ASR_EXTRA_HINT}" if not args.no_transcribe
                              else "--lyrics and --no-transcribe contradict each other")
    if not args.no_transcribe and not transcribe:
        print(f"note: no WER/CER: {ASR_EXTRA_HINT}")

    result = evaluate_f0(src, conv, sr_s, sr_c, transpose=args.transpose, method=args.f0, device=args.device,
                         model_path=args.f0_model, check_method=None if args.no_f0_check else CHECK_METHOD)
    report = result.to_dict()
    if ref is not None:
        report |= speaker_similarity(conv, sr_c, ref[0], ref[1], src, sr_s, device=args.device)
    if transcribe:
        report |= intelligibility(Transcriber(), conv, sr_c, src, sr_s, lyrics)
    report |= {"source": args.source, "converted": args.converted}
    if args.target_reference:
        report["target_reference"] = args.target_reference
    print(_table(report))
    if args.json:
        write_json_atomic(args.json, {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                      for k, v in report.items()})
    if args.plot:
        plot_f0(result, args.plot)
    return 0

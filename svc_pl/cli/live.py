"""Convert a microphone (or a file, block by block, as if it came from one) live.

Devices: --input-device/--output-device (names or numbers from --list-devices). Files: --input-file IN.wav
--output-file OUT.wav stream the file through the same code, paced in real time (--as-fast-as-possible skips the
pacing); OUT.wav is what an output device would play: the input's length, delayed by the reported latency.
The conversion options are those of svc-pl infer (the slicer, clip and diffusion settings do not apply to a stream).
"""

import argparse
import sys

from svc_pl.infer.live import add_arguments  # noqa: F401  (the command's flags)


def run(args: argparse.Namespace) -> int:
    """``--list-devices``, or the stream with its model line and a status line redrawn in place on stderr."""
    from svc_pl.infer import live

    if args.list_devices:
        print(live.load_sounddevice().query_devices())
        return 0
    return live.run(args, show=_print)


def _print(text: str, final: bool) -> None:
    print(f"\r{text}", end="\n" if final else "", file=sys.stderr, flush=True)

"""Convert, compare, train and stream live in a browser (Gradio; the optional extra svc_pl[webui]).

Listens on 127.0.0.1 unless --host says otherwise and never makes a public share link. Serves only the files
it wrote (under --workdir) and the uploads it was given; uploads are limited to --max-file-size. The content
encoder is the server's setting, as for svc-pl infer: every model is run with --content-encoder/--encoder.
"""

from __future__ import annotations

import argparse
import logging

LOG = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from svc_pl.data.content import ENCODERS

    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine "
                                                      "only; 0.0.0.0 exposes the app to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="where voice models (*.ckpt, G_*.pth) are listed from and new training runs go "
                        "(default: %(default)s)")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="where conversions are written, one folder per request (default: a new temporary folder)")
    p.add_argument("--content-encoder", metavar="PATH",
                   help="content-encoder weights the models were trained with (as svc-pl infer), e.g. "
                        "whisper-tiny.en for tiny-base models")
    p.add_argument("--encoder", choices=sorted(ENCODERS), help="content encoder name (default: the model's)")
    p.add_argument("--random-encoder", action="store_true",
                   help="fixed random content-encoder weights (only for models trained with --random-encoder)")
    p.add_argument("--device", default="cpu", help="device for conversion (default: %(default)s)")
    p.add_argument("--max-file-size", default="200mb", help="largest upload (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile
    from pathlib import Path

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never call home
    from svc_pl.webui.app import launch  # gradio: only here
    from svc_pl.webui.convert import ServerSettings

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="svc-pl-webui-"))
    settings = ServerSettings(workdir=workdir.resolve(), runs=Path(args.runs).resolve(),
                              content_encoder=args.content_encoder, encoder=args.encoder,
                              random_encoder=args.random_encoder, device=args.device)
    _, url = launch(settings, host=args.host, port=args.port, max_file_size=args.max_file_size, block=False)
    print(f"svc-pl webui: {url} (models from {settings.runs}, outputs in {workdir}); Ctrl+C stops", flush=True)
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0

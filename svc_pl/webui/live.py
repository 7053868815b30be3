"""What the web UI's Live tab does, without Gradio: ``svc-pl live`` on the server's audio devices (list them,
start, read the stats while it runs, stop) and on a given file (``svc-pl live --input-file/--output-file``: the
streamed output and its stats). Every action builds the ``svc-pl live`` command line and runs it through the
command's own engine (:mod:`svc_pl.infer.live`), so the page streams exactly as the command does."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from svc_pl.errors import UserFacingError
from svc_pl.webui.convert import ServerSettings, parse_speaker_mix

LOG = logging.getLogger(__name__)


@dataclass
class LiveRequest:
    """The settings of a stream, named as ``svc-pl live``'s flags."""

    model: str
    speaker: str | int = 0
    speaker_mix: str = ""
    transpose: float = 0.0
    f0_method: str = "pm"
    noise_scale: float = 0.4
    auto_predict_f0: bool = False
    block_seconds: float = 0.08
    context_seconds: float = 1.0
    gate_db: float = -50.0
    input_device: str | None = None
    output_device: str | None = None

    def argv(self, settings: ServerSettings) -> list[str]:
        """``svc-pl live`` arguments for these settings (the server's content encoder and device)."""
        if not self.model:
            raise UserFacingError("pick a voice model (or give the path of a .ckpt or G_*.pth)")
        if not Path(self.model).is_file():
            raise UserFacingError(f"{self.model}: model file not found")
        s = settings
        argv = ["live", "-m", str(self.model), "-t", str(float(self.transpose)), "--f0", self.f0_method,
                "-n", str(float(self.noise_scale)), "--block-seconds", str(float(self.block_seconds)),
                "--context-seconds", str(float(self.context_seconds)), "--gate-db", str(float(self.gate_db)),
                "--device", s.device]
        argv += ["--content-encoder", s.content_encoder] if s.content_encoder else []
        argv += ["--encoder", s.encoder] if s.encoder else []
        argv += ["--random-encoder"] if s.random_encoder else []
        if parse_speaker_mix(self.speaker_mix):  # checked here: a bad mix is a message, not a parser exit
            argv += ["--speaker-mix", self.speaker_mix]
        elif self.speaker not in (None, ""):
            argv += ["-s", str(self.speaker)]
        argv += ["--auto-predict-f0"] if self.auto_predict_f0 else []
        argv += ["--input-device", _device_number(self.input_device)] if self.input_device else []
        argv += ["--output-device", _device_number(self.output_device)] if self.output_device else []
        return argv


def _device_number(label: str) -> str:
    """``"3: USB mic (in 1, 48000 Hz)"`` (a :func:`list_devices` label) -> ``"3"``; anything else as given."""
    head = str(label).split(":", 1)[0].strip()
    return head if head.isdigit() else str(label)


def parse_live_args(argv: list[str]):
    """``argv`` (``["live", ...]``) parsed as ``svc-pl live`` parses it."""
    from svc_pl.infer.live import parse_args

    try:
        return parse_args(argv[1:])
    except SystemExit:  # argparse already printed why: say it in one line
        raise UserFacingError(f"svc-pl {' '.join(argv)}: arguments refused (see the server's log)") from None


def list_devices() -> tuple[list[str], list[str], str]:
    """The server's input and output devices as ``"N: name (in C, R Hz)"`` labels, and a one-line message that
    says what was found, or why there is nothing (no PortAudio, no devices); never raises."""
    from svc_pl.infer.live import load_sounddevice

    try:
        sd = load_sounddevice()
        devices = list(sd.query_devices())
    except UserFacingError as err:
        return [], [], str(err)
    except Exception as err:  # sd.PortAudioError and the like: no sound system
        return [], [], f"the audio devices cannot be listed: {err}"
    ins, outs = [], []
    for i, d in enumerate(devices):
        rate = int(d.get("default_samplerate") or 0)
        if d.get("max_input_channels", 0) > 0:
            ins.append(f"{i}: {d['name']} (in {d['max_input_channels']}, {rate} Hz)")
        if d.get("max_output_channels", 0) > 0:
            outs.append(f"{i}: {d['name']} (out {d['max_output_channels']}, {rate} Hz)")
    if not ins or not outs:
        missing = "input" if not ins else "output"
        return ins, outs, (f"no audio {missing} device on this server (PortAudio sees {len(devices)} device(s)): "
                           "live conversion runs on the server's sound card; use 'Stream a file' to try it")
    return ins, outs, f"{len(ins)} input and {len(outs)} output device(s) on the server"


class LiveService:
    """One live stream on the server's devices at a time, and file streams (one at a time too: they measure
    block compute times, which a second stream would disturb)."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stream = None
        self.state = "idle"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stream_file(self, audio: str, req: LiveRequest) -> tuple[Path, dict, str]:
        """``svc-pl live --input-file audio --output-file OUT --stats-json STATS --as-fast-as-possible``: returns
        ``(OUT, stats, message)``; the message says when blocks missed their deadline (the output has gaps)."""
        from svc_pl.infer import live

        if not audio:
            raise UserFacingError("no audio file given: upload or record one")
        out_dir = Path(tempfile.mkdtemp(prefix="live-", dir=self.settings.workdir))
        out, stats_path = out_dir / f"{Path(audio).stem}-live.wav", out_dir / "stats.json"
        args = parse_live_args([*req.argv(self.settings), "--input-file", str(audio), "--output-file", str(out),
                                "--stats-json", str(stats_path), "--as-fast-as-possible"])
        if self.running:
            raise UserFacingError("a live stream is running on the devices: stop it first")
        message = "streamed without a deadline miss"
        with self._lock:
            try:
                live.run(args)
            except UserFacingError as err:
                if not (out.is_file() and stats_path.is_file()):
                    raise
                message = str(err)  # missed deadlines: the output and the figures are still there
        return out, json.loads(stats_path.read_text(encoding="utf-8")), message

    def start(self, req: LiveRequest) -> str:
        """Stream from the input device to the output device until :meth:`stop` (in a thread of this server)."""
        from svc_pl.infer import live

        args = parse_live_args(req.argv(self.settings))
        with self._lock:
            if self.running:
                raise UserFacingError("live conversion is already running: stop it first")
            sd = live.load_sounddevice()  # no PortAudio: the message now, not in the thread
            if not req.input_device or not req.output_device:
                ins, outs, message = list_devices()
                if not ins or not outs:
                    raise UserFacingError(message)
            live.check_device(sd, args.input_device, "input")
            live.check_device(sd, args.output_device, "output")
            self._stop = threading.Event()
            self._stream, self.state = None, "starting (loading the model)"
            self._thread = threading.Thread(target=self._work, args=(args, self._stop), daemon=True)
            self._thread.start()
        return self.state

    def _work(self, args, stop: threading.Event) -> None:
        from svc_pl.infer import live

        def started(stream):
            self._stream, self.state = stream, "running"

        try:
            live.run_devices(args, stop=stop, on_stream=started)
            self.state = "stopped"
        except UserFacingError as err:
            self.state = f"stopped: {err}"
        except Exception as err:  # a device error mid-stream: shown in the page, the app goes on
            LOG.exception("live stream failed")
            self.state = f"failed: {type(err).__name__}: {err}"

    def stop(self) -> str:
        self._stop.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return "nothing is running"
        thread.join(timeout=30)
        return self.state

    def status(self) -> dict:
        """``{"state", "stats"}``: the stream's figures (latency, block, blocks, misses, compute p50/p95/max)."""
        stream = self._stream
        return {"state": self.state, "stats": stream.stats() if stream is not None else {}}

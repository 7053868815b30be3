"""Live conversion: a microphone (or a file, block by block, as if it came from one) through a
:class:`~svc_pl.infer.stream.StreamConverter`, with the stream's latency and block timings measured.

This is ``svc-pl live``'s engine: :func:`add_arguments` declares its flags, :func:`parse_args` reads a command line
the way the command does, :func:`run` streams. The web UI's Live tab calls the same functions, so the page streams
exactly as the command does."""


from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)

# what receives the stream's text: (line, final); the CLI prints it over one terminal line, final lines end it
Show = Callable[[str, bool], None]

# ConvertOptions fields that mean nothing to a stream: hidden from --help here (svc-pl infer documents them)
_NOT_LIVE = ("slice_db", "max_silence_kept", "min_chunk_seconds", "pad_seconds", "clip_seconds", "crossfade_seconds",
             "max_chunk_seconds", "length_bucket_seconds", "batch_size", "diffusion_model", "diffusion_config",
             "shallow_diffusion", "k_step", "diffusion_method", "diffusion_speedup", "second_encoding",
             "only_diffusion", "vocoder", "enhancer_adaptive_key", "loudness_mix")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from svc_pl.infer.flags import add_option_flags, option_groups

    p.conflict_handler = "resolve"
    groups = option_groups(p)
    io = groups["input/output"]
    io.add_argument("-m", "--model", help="svc_pl .ckpt or so-vits-svc G_*.pth")
    io.add_argument("-c", "--config", help="so-vits-svc config.json (default: beside the model)")
    io.add_argument("--content-encoder", metavar="PATH",
                    help="content-encoder weights the model was trained with (whisper-tiny.en for tiny-base models)")
    from svc_pl.data.content import ENCODERS

    io.add_argument("--encoder", choices=sorted(ENCODERS), help="content encoder name (default: the model's)")
    io.add_argument("--random-encoder", action="store_true", help="fixed random content-encoder weights (tests)")
    io.add_argument("--input-device", help="input device name or number (default: the system's)")
    io.add_argument("--output-device", help="output device name or number (default: the system's)")
    io.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    io.add_argument("--sample-rate", type=int, default=None, help="device rate (default: the input device's)")
    io.add_argument("--passthrough", action="store_true", help="play the dry input (no conversion)")
    io.add_argument("--input-file", metavar="IN", help="stream this file instead of a microphone")
    io.add_argument("--output-file", metavar="OUT", help="write the streamed output here (with --input-file)")
    io.add_argument("--as-fast-as-possible", action="store_true", help="with --input-file: do not pace in real time")
    io.add_argument("--stats-json", metavar="PATH", help="write latency and block timing figures here at the end")
    io.add_argument("--seconds", type=float, default=0.0, help="with devices: stop after this long (0: Ctrl-C)")
    spk = groups["speaker"]
    spk.add_argument("-s", "--speaker", default=None, help="target speaker name or id (default: the first)")
    spk.add_argument("--speaker-mix", metavar="NAME:W,...", help="static speaker mix, e.g. 'alto:0.7,tenor:0.3'")
    quality = groups["quality"]
    quality.add_argument("--cluster-model", metavar="PATH", help="k-means model (kmeans.pt), for --cluster-ratio")
    quality.add_argument("--feature-index", metavar="DIR", help="feature index folder, for --retrieval-ratio")
    quality.add_argument("--unit-stats", metavar="PATH",
                         help="for --match-units with a model whose checkpoint has no unit statistics (so-vits-svc "
                              "models): unit_stats.pt of svc-pl train-index, or the preprocessed dataset")
    add_option_flags(groups)
    for action in p._actions:
        if action.dest in _NOT_LIVE:
            action.help = argparse.SUPPRESS
    # pm: measured against fcpe and pesto on sung lines with a known melody, streamed in 80 ms blocks
    # (bench/bench_live.py --f0-study): the most frames right (76 %), its streamed F0 within 1 cent of its whole-file
    # F0, and 1 ms per block where fcpe and pesto cost 30-40 ms, which with tiny-base's ~50 ms misses the deadline
    p.set_defaults(speaker_keyframes=None, enhancer=None, crossfade_seconds=0.0, f0_method="pm")
    live = p.add_argument_group("stream")
    live.add_argument("--block-seconds", type=float, default=0.08,
                      help="converted block; the latency is about one block plus 40 ms (default: %(default)s)")
    live.add_argument("--context-seconds", type=float, default=1.0,
                      help="left context of the synthesizer (and of the encoder for models without a unit window) "
                           "(default: %(default)s)")
    live.add_argument("--crossfade-seconds", type=float, default=0.01, dest="stream_crossfade",
                      help="crossfade at each block join (default: %(default)s)")
    live.add_argument("--search-seconds", type=float, default=None,
                      help="join-alignment (SOLA) search span (default: 0 for DDSP models, whose blocks continue each "
                           "other's phase; 0.01 for the others)")
    live.add_argument("--lookahead-seconds", type=float, default=0.02,
                      help="audio after the block that the synthesizer sees (default: %(default)s; at 80 ms "
                           "blocks the latency is 81 ms up to 0.02 and 161 ms from 0.04 to 0.1, where the output "
                           "comes nearer the file conversion: for tiny-base 0.164 -> 0.145 log-mel)")
    live.add_argument("--gate-db", type=float, default=-50.0,
                      help="noise gate: input below this level (dBFS) stays silent (default: %(default)s)")
    live.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``svc-pl live`` arguments (``argv`` without the command name) read as the command reads them; argparse exits
    on a bad one after printing why (callers that must not exit catch ``SystemExit``)."""
    p = argparse.ArgumentParser(prog="svc-pl live")
    add_arguments(p)
    return p.parse_args(argv)


def run(args: argparse.Namespace, show: Show | None = None) -> int:
    """Stream as ``args`` say (a file, or the audio devices until ``--seconds`` or Ctrl-C); ``show(text, final)``
    receives the model line and the running status line (``final`` for the last one), for a terminal to print."""
    from svc_pl.errors import UserFacingError

    if args.input_file and not args.output_file:
        raise UserFacingError("--input-file needs --output-file OUT.wav (where the streamed output goes)")
    if args.output_file and not args.input_file:
        raise UserFacingError("--output-file needs --input-file IN.wav (devices play to --output-device)")
    if not args.model and not args.passthrough:
        raise UserFacingError("pass the voice model with -m/--model (svc_pl .ckpt or so-vits-svc G_*.pth)")
    if args.model and not args.content_encoder and not args.random_encoder:
        raise UserFacingError("pass --content-encoder PATH (whisper-tiny.en for tiny-base models)")
    if args.block_seconds <= 0 or args.context_seconds < 0 or args.stream_crossfade <= 0:
        raise UserFacingError("--block-seconds and --crossfade-seconds must be > 0, --context-seconds >= 0")
    if args.input_file:
        from svc_pl.data.audio import load_audio

        audio, rate = load_audio(args.input_file)
        stream = _build(args, rate, show)
        out = _run_file(stream, audio, rate, paced=not args.as_fast_as_possible, show=show)
        from svc_pl.data.audio import save_audio

        save_audio(args.output_file, out, rate)
    else:
        stream = run_devices(args, show=show)
    _finish(args, stream)
    return 0


def _build(args, rate: int, show: Show | None = None):
    from svc_pl.infer.stream import PassThrough, StreamConverter

    kw = dict(device_rate=rate, block_seconds=args.block_seconds, context_seconds=args.context_seconds,
              crossfade_seconds=args.stream_crossfade, search_seconds=args.search_seconds,
              lookahead_seconds=args.lookahead_seconds, gate_db=args.gate_db)
    if args.passthrough:
        return PassThrough(rate, args.block_seconds)
    from svc_pl.infer.flags import ConverterFactory, check_speaker, options_from_args

    opts = options_from_args(args)
    converter = ConverterFactory(args)(args.device)
    check_speaker(converter, opts)
    stream = StreamConverter.from_converter(converter, opts, **kw)
    stream.warm_up()  # the first blocks build the kernels: not part of the stream, so not counted as misses
    m = converter.model
    if show is not None:
        show(f"model {m.source}: {m.sampling_rate} Hz; device rate {rate} Hz, block "
             f"{stream.block_seconds * 1000:.0f} ms, latency {stream.latency_seconds * 1000:.1f} ms", True)
    return stream


def status_line(stream) -> str:
    """The stream's figures on one line: latency, block, blocks, misses, block compute p50 / p95 / max."""
    s = stream.stats()
    return (f"latency {s['latency_seconds'] * 1000:.1f} ms  block {s['block_seconds'] * 1000:.0f} ms  "
            f"blocks {s['blocks']}  misses {s['deadline_misses']}  "
            f"compute p50 {s['block_compute_p50_seconds'] * 1000:.1f}"
            f" / p95 {s['block_compute_p95_seconds'] * 1000:.1f} / max {s['block_compute_max_seconds'] * 1000:.1f} ms")


def _status(stream, show: Show | None, final: bool = False) -> None:
    if show is not None:
        show(status_line(stream), final)


def _run_file(stream, audio, rate: int, paced: bool, show: Show | None = None):
    """Stream ``audio`` through ``stream`` in device blocks (the last one padded); returns the input's length of
    output, as a device would play it."""
    import numpy as np

    d = stream.device_block
    n = len(audio)
    x = np.pad(audio.astype(np.float32), (0, -(-n // d) * d - n))
    out = np.empty(len(x), np.float32)
    t_start, shown = time.perf_counter(), 0.0
    for i in range(0, len(x), d):
        if paced:
            wait = t_start + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        out[i:i + d] = stream.process(x[i:i + d])
        if time.perf_counter() - shown > 0.5:
            _status(stream, show)
            shown = time.perf_counter()
    _status(stream, show, final=True)
    return out[:n]


def load_sounddevice():
    from svc_pl.errors import UserFacingError

    try:
        import sounddevice as sd
    except (ImportError, OSError) as err:  # OSError: the PortAudio library is missing
        raise UserFacingError(f"svc-pl live needs python-sounddevice and PortAudio ({err}): pip install "
                              "'svc_pl[live]' and apt-get install libportaudio2 (scripts/setup.sh does both)") from None
    return sd


def check_device(sd, spec, kind: str):
    from svc_pl.errors import UserFacingError

    if spec is None:
        return None
    value = int(spec) if str(spec).isdigit() else spec
    try:
        sd.query_devices(value, kind)
    except (ValueError, sd.PortAudioError) as err:
        raise UserFacingError(f"unknown {kind} device {spec!r} ({err}): see svc-pl live --list-devices") from None
    return value


def run_devices(args, stop=None, on_stream=None, show: Show | None = None):
    """Duplex device stream: the callback only copies blocks in and out; conversion runs in this thread.

    ``stop`` (a :class:`threading.Event`, the web UI's Stop button) ends the stream when set; ``on_stream`` is
    called with the stream once it is built (the web UI reads its stats while it runs)."""
    import queue

    import numpy as np

    from svc_pl.errors import UserFacingError

    sd = load_sounddevice()
    dev_in, dev_out = check_device(sd, args.input_device, "input"), check_device(sd, args.output_device, "output")
    rate = args.sample_rate or int(sd.query_devices(dev_in, "input")["default_samplerate"])
    try:
        sd.check_input_settings(device=dev_in, channels=1, samplerate=rate, dtype="float32")
        sd.check_output_settings(device=dev_out, channels=1, samplerate=rate, dtype="float32")
    except (ValueError, sd.PortAudioError) as err:
        raise UserFacingError(f"the audio device refuses {rate} Hz mono ({err}): pass --sample-rate with a rate "
                              "it supports (see --list-devices)") from None
    stream = _build(args, rate, show)
    if on_stream is not None:
        on_stream(stream)
    d = stream.device_block
    inq: queue.Queue = queue.Queue()
    outq: queue.Queue = queue.Queue()
    outq.put(np.zeros(d, np.float32))  # one block of slack while the first block converts
    late = [0]

    def callback(indata, outdata, frames, _time, _status_flags):
        inq.put(indata[:, 0].copy())
        try:
            outdata[:, 0] = outq.get_nowait()
        except queue.Empty:
            outdata.fill(0)
            late[0] += 1

    t_end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        with sd.Stream(device=(dev_in, dev_out), samplerate=rate, blocksize=d, channels=1, dtype="float32",
                       callback=callback):
            shown = 0.0
            while time.monotonic() < t_end and not (stop is not None and stop.is_set()):
                try:
                    block = inq.get(timeout=None if stop is None else 0.5)
                except queue.Empty:
                    continue
                y = stream.process(block)
                if late[0]:  # the device played silence for a block we were late with: keep the delay constant
                    late[0] -= 1
                    continue
                outq.put(y)
                if time.monotonic() - shown > 0.5:
                    _status(stream, show)
                    shown = time.monotonic()
                _check_keeps_up(stream, args)
    except KeyboardInterrupt:
        pass
    except sd.PortAudioError as err:
        raise UserFacingError(f"audio device error: {err}") from None
    _status(stream, show, final=True)
    return stream


def _suggest_block(stream) -> float:
    """A block size that would keep up: the p95 compute scaled with a fixed part, rounded up to 40 ms."""
    s = stream.stats()
    need = s["block_compute_p95_seconds"] / s["block_seconds"]
    return round(max(s["block_seconds"] * 2, s["block_seconds"] * need * 1.5) / 0.04 + 0.5) * 0.04


def _check_keeps_up(stream, args) -> None:
    from svc_pl.errors import UserFacingError

    s = stream.stats()
    if s["blocks"] >= 25 and s["deadline_misses"] > 0.2 * s["blocks"]:
        raise UserFacingError(
            f"the model cannot keep up at --block-seconds {args.block_seconds:g}: {s['deadline_misses']} of "
            f"{s['blocks']} blocks missed their deadline (p95 compute {s['block_compute_p95_seconds'] * 1000:.0f} ms "
            f"for a {s['block_seconds'] * 1000:.0f} ms block); try --block-seconds {_suggest_block(stream):.2f}")


def _finish(args, stream) -> None:
    from svc_pl.errors import UserFacingError

    s = stream.stats()
    if args.stats_json:
        with open(args.stats_json, "w", encoding="utf-8") as f:
            json.dump(s, f, indent=2)
    if s["deadline_misses"] and not args.passthrough:
        raise UserFacingError(
            f"the model did not keep up at --block-seconds {args.block_seconds:g}: {s['deadline_misses']} of "
            f"{s['blocks']} blocks missed their deadline (p95 compute {s['block_compute_p95_seconds'] * 1000:.0f} ms "
            f"for a {s['block_seconds'] * 1000:.0f} ms block; the output has gaps there); try --block-seconds "
            f"{_suggest_block(stream):.2f}")

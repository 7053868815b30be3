"""Shared pieces of the benchmarks: thread setup, quiet-machine check, peak RSS, per-run subprocesses,
test audio (espeak-ng speech with pauses), the 4.1 default model on disk, tables and JSON, and the
in-process shims needed to import the upstream so-vits-svc reference.

Nothing here is imported by svc_pl; the reference checkout is only ever put on ``sys.path`` of a
benchmark worker process, never copied.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2
MAX_LOAD = 0.7
BENCH_DIR = Path(__file__).resolve().parent
SPEAKER = "speaker0"

# the stubs actually installed into a reference worker, reported with its figures
REFERENCE_STUBS: list[str] = []


# ---------------------------------------------------------------------------------------------- process
def setup_torch(threads: int = THREADS):
    """Import torch with ``threads`` intra-op threads (and one inter-op thread)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    return torch


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_average() -> float:
    return os.getloadavg()[0]


def wait_until_quiet(max_load: float = MAX_LOAD, timeout: float = 0.0, poll: float = 15.0) -> float:
    """Wait (up to ``timeout`` s) for the 1-minute load average to drop below ``max_load``; returns it."""
    deadline = time.monotonic() + timeout
    load = load_average()
    while load >= max_load and time.monotonic() < deadline:
        time.sleep(poll)
        load = load_average()
    return load


def environment() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_name(), "cores": os.cpu_count(), "hostname": platform.node(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_hidden": HIDE_AVX512_LIB in os.environ.get("LD_PRELOAD", "")}


HIDE_AVX512_LIB = "hide_avx512.so"


def hide_avx512() -> Path:
    """Make every worker this driver starts see a CPU without AVX-512 (AVX2 + FMA): builds
    ``bench/isa/hide_avx512.c`` with gcc (once, into ``~/.cache/svc_pl_bench``) and puts it in ``LD_PRELOAD``.
    oneDNN, PyTorch's kernel dispatch and ONNX Runtime's MLAS then run their AVX2 kernels, ours and the
    reference's alike. Needs Linux CPUID faulting (the ``cpuid_fault`` flag of /proc/cpuinfo)."""
    lib = build_hide_avx512()
    env = dict(os.environ, LD_PRELOAD=f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip(), HIDE_AVX512_STRICT="1")
    seen = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          env=env, capture_output=True, text=True)
    if seen.returncode != 0 or seen.stdout.strip() != "AVX2":
        raise SystemExit(f"--hide-avx512: a test process saw {seen.stdout.strip() or 'nothing'} "
                         f"(exit {seen.returncode}): {seen.stderr.strip()[-500:]}")
    os.environ.update(LD_PRELOAD=env["LD_PRELOAD"], HIDE_AVX512_STRICT="1")
    return lib


def rerun_hiding_avx512(script: str, argv: list[str]) -> int | None:
    """For a benchmark that measures in its own process: unless AVX-512 is already hidden from this process, run
    ``script argv`` again in a new process that sees no AVX-512 (:func:`hide_avx512`) and return its exit code;
    None when this process is that one (measure here)."""
    if HIDE_AVX512_LIB in os.environ.get("LD_PRELOAD", ""):
        return None
    hide_avx512()
    return subprocess.call([sys.executable, script, *argv])


def build_hide_avx512() -> Path:
    """``bench/isa/hide_avx512.c`` built (once per change of the source) into ``~/.cache/svc_pl_bench``."""
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        raise SystemExit("--hide-avx512 needs CPUID faulting (the cpuid_fault flag in /proc/cpuinfo), which this "
                         "machine lacks: run on a real AVX2 CPU instead")
    src = BENCH_DIR / "isa" / "hide_avx512.c"
    lib = Path.home() / ".cache" / "svc_pl_bench" / HIDE_AVX512_LIB
    if not lib.is_file() or lib.stat().st_mtime < src.stat().st_mtime:
        if shutil.which("gcc") is None:
            raise SystemExit("--hide-avx512 builds a small C library: install gcc (apt-get install -y gcc)")
        lib.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_name(lib.name + ".tmp")
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)], check=True)
        os.replace(tmp, lib)
    return lib


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_busy_seconds() -> float:
    """Seconds of busy CPU time of the whole machine since boot, summed over cores (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_measured(script: Path, args: list[str], max_load: float = MAX_LOAD, wait: float = 600.0,
                 retries: int = 1, max_foreign: float = 0.25) -> dict:
    """:func:`run_worker` on a quiet machine.

    Before the run: wait (up to ``wait`` s) for the 1-minute load average to fall below ``max_load``.
    During the run: "foreign" CPU = machine busy time (/proc/stat) minus the worker's own CPU time,
    in cores; above ``max_foreign`` the run was disturbed and is repeated (up to ``retries`` times).
    The result gets ``quiet`` = {load1_before, foreign_cores, attempts, ok}.
    """
    attempt = 0
    while True:
        attempt += 1
        load = wait_until_quiet(max_load, wait)
        busy0, child0, t0 = _cpu_busy_seconds(), _children_cpu_seconds(), time.monotonic()
        result = run_worker(script, args)
        wall = time.monotonic() - t0
        foreign = max(0.0, (_cpu_busy_seconds() - busy0) - (_children_cpu_seconds() - child0)) / max(wall, 1e-9)
        ok = load < max_load and foreign <= max_foreign
        result["quiet"] = {"load1_before": round(load, 2), "foreign_cores": round(foreign, 2), "attempts": attempt,
                           "ok": ok}
        if ok or attempt > retries:
            if not ok:
                print(f"  warning: machine was busy (load {load:.2f}, foreign CPU {foreign:.2f} cores)", flush=True)
            return result
        print(f"  busy (load {load:.2f}, foreign CPU {foreign:.2f} cores): measuring again", flush=True)


def run_worker(script: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> dict:
    """Run ``script --worker-out FILE args`` in a fresh Python and return the JSON it wrote to FILE.

    A fresh process per measurement makes ``ru_maxrss`` a per-run peak. The worker's stdout (upstream
    prints a lot) is discarded; its stderr is shown when it fails.
    """
    with tempfile.TemporaryDirectory(prefix="svc_bench_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--worker-out", str(out), *args]
        full_env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), **(env or {}))
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env,
                              timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise RuntimeError(f"worker failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
        return json.loads(out.read_text())


def worker_result(path: str | os.PathLike, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=2))


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def write_json(path: str | os.PathLike | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------- tables
def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")


# ---------------------------------------------------------------------------------------------- audio
PHRASES = [
    ("The quick brown fox jumps over the lazy dog.", "en", 50, 150),
    ("Singing voice conversion keeps the melody and changes the voice.", "en+f3", 70, 140),
    ("She sells sea shells by the sea shore, all summer long.", "en+m3", 35, 160),
    ("A journey of a thousand miles begins with a single step.", "en+f2", 80, 130),
    ("Over the hills and far away, the river sings its song.", "en", 60, 120),
    ("Die Gedanken sind frei, wer kann sie erraten?", "de", 45, 140),
]


def _espeak(text: str, voice: str, pitch: int, speed: int, tmp: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wav = tmp / "p.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
                   check=True, capture_output=True)
    y, sr = sf.read(wav, dtype="float32")
    return y, sr


def _tone(seconds: float, f0: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))  # vibrato
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)
    return (0.3 * y * env).astype(np.float32)


def test_speech(seconds: float, sr: int = 44100, seed: int = 0) -> tuple[np.ndarray, str]:
    """``seconds`` of espeak-ng phrases (several voices and pitches) at ``sr``, separated by 0.3-1.2 s pauses
    of -70 dBFS noise, repeated to length. Falls back to harmonic tones with gaps without espeak-ng.
    Returns (audio float32, description)."""
    from svc_pl.data.audio import resample

    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    if shutil.which("espeak-ng"):
        kind = "espeak-ng speech (6 phrases, 5 voices) with 0.3-1.2 s pauses"
        with tempfile.TemporaryDirectory() as tmp:
            for text, voice, pitch, speed in PHRASES:
                y, esr = _espeak(text, voice, pitch, speed, Path(tmp))
                y = resample(y, esr, sr)
                pieces.append(0.7 * y / max(1e-3, float(np.abs(y).max())))
    else:
        kind = "harmonic tones with vibrato (espeak-ng missing) with 0.3-1.2 s pauses"
        pieces = [_tone(d, f, sr) for d, f in ((2.5, 220), (3.0, 330), (1.8, 262), (2.2, 196))]
    n = int(seconds * sr)
    out, i = [], 0
    total = 0
    while total < n:
        p = pieces[i % len(pieces)]
        gap = (10 ** (-70 / 20) * rng.standard_normal(int(rng.uniform(0.3, 1.2) * sr))).astype(np.float32)
        out += [p, gap]
        total += len(p) + len(gap)
        i += 1
    return np.concatenate(out)[:n].astype(np.float32), kind


# ---------------------------------------------------------------------------------------------- model
def make_default_model(directory: Path, seed: int = 1234) -> tuple[Path, Path]:
    """The so-vits-svc 4.1 default model (TEMPLATE_41 model block, 44.1 kHz) with random weights:
    ``G_0.pth`` written by :func:`svc_pl.compat.save_sovits` and its ``config.json``."""
    import torch

    from svc_pl.compat import save_sovits, sovits_config_for, write_json_atomic
    from svc_pl.compat.config import TEMPLATE_41
    from svc_pl.synthesizer import Synthesizer

    directory.mkdir(parents=True, exist_ok=True)
    model_kwargs = {k: v for k, v in TEMPLATE_41["model"].items()}
    cfg = sovits_config_for(dict(model_kwargs, sampling_rate=TEMPLATE_41["data"]["sampling_rate"]), {SPEAKER: 0},
                            hop_length=TEMPLATE_41["data"]["hop_length"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Synthesizer(**cfg.synthesizer_kwargs())
    g_path, c_path = directory / "G_0.pth", directory / "config.json"
    save_sovits(net, g_path)
    write_json_atomic(c_path, cfg.to_dict())
    return g_path, c_path


# ---------------------------------------------------------------------------------------------- reference
class UpstreamEncoderAdapter:
    """What upstream's ``Svc`` calls on its speech encoder: ``.encoder(wav16k)`` with a 1-D 16 kHz tensor,
    returning (1, 768, T) units as ``vencoder.ContentVec768L12`` does, but computed by our (random-weight)
    content encoder, so both implementations pay the same encoder cost."""

    def __init__(self, encoder, timer: dict[str, float] | None = None):
        self.model = encoder
        self.timer = timer

    def encoder(self, wav):
        import torch

        t0 = time.perf_counter()
        self.model.to(wav.device)  # upstream hands the wave on its device
        with torch.no_grad():
            feats = wav.view(1, -1) if wav.dim() == 1 else wav.mean(-1).view(1, -1)
            units = self.model(feats.float())
        if wav.is_cuda:
            torch.cuda.synchronize()
        if self.timer is not None:
            self.timer["units"] = self.timer.get("units", 0.0) + time.perf_counter() - t0
        return units


def add_run_arguments(p, workers: tuple[str, ...] = ("ours", "reference")) -> None:
    """The options every benchmark shares: ``--json``, the quiet-machine wait (``--max-load``, ``--wait``) and the
    hidden worker-process switches."""
    import argparse

    p.add_argument("--json", help="write all figures to this JSON file")
    p.add_argument("--max-load", type=float, default=MAX_LOAD, help="wait for the 1-min load to be below this")
    p.add_argument("--wait", type=float, default=600, help="longest wait for a quiet machine per run, s")
    p.add_argument("--hide-avx512", action="store_true",
                   help="run every worker (ours and the reference) as on an AVX2 CPU: AVX-512 hidden from CPUID "
                        "(bench/isa/hide_avx512.c; Linux with CPUID faulting)")
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=list(workers), help=argparse.SUPPRESS)


def announce(args) -> None:
    """Driver start: torch threads set, the machine printed, and a note when there is no reference to run."""
    if getattr(args, "hide_avx512", False):
        print(f"AVX-512 hidden from the workers' CPUID ({hide_avx512()}): they run AVX2 kernels", flush=True)
    setup_torch()
    print(f"machine: {environment()}")
    if not args.reference:
        print("no --reference given: printing svc_pl figures only")


def import_reference(path: str | os.PathLike):
    """Put the so-vits-svc checkout on sys.path (first) and install the minimal shims this environment needs.

    Shims (recorded in ``REFERENCE_STUBS``, printed with the figures):
    - ``torchaudio.set_audio_backend``: removed from recent torchaudio; upstream calls it with "soundfile".
      Replaced by a no-op.
    - ``torchaudio.load``: recent torchaudio needs torchcodec (not installed here). Replaced by a
      soundfile reader returning what torchaudio's soundfile backend returned: (C, T) float32 tensor, sr.
    - ``faiss`` (imported at the top of upstream's ``utils.py``, used only to train a feature index), where it
      is not installed (a GPU image): an empty module.
    fairseq (for upstream's ContentVec) is not imported at all: callers patch ``utils.get_speech_encoder``.
    """
    import torch
    import torchaudio

    ref = str(Path(path).resolve())
    if not (Path(ref) / "inference" / "infer_tool.py").is_file():
        raise SystemExit(f"{ref}: not a so-vits-svc checkout (no inference/infer_tool.py); see bench/README.md")
    if ref not in sys.path:
        sys.path.insert(0, ref)
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
        REFERENCE_STUBS.append("torchaudio.set_audio_backend -> no-op (absent in this torchaudio)")
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        import soundfile as sf

        def _load(src, *args, **kwargs):
            data, sr = sf.read(src, dtype="float32", always_2d=True)
            return torch.from_numpy(np.ascontiguousarray(data.T)), sr

        torchaudio.load = _load
        REFERENCE_STUBS.append("torchaudio.load -> soundfile reader (torchaudio here needs torchcodec)")
    try:
        import faiss  # noqa: F401
    except ImportError:
        import types

        sys.modules["faiss"] = types.ModuleType("faiss")
        REFERENCE_STUBS.append("faiss -> empty module (not installed; upstream uses it only for feature indexes)")
    return ref

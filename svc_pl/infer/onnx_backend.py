"""The synthesizer run by ONNX Runtime on the CPU (``--backend onnxruntime``), with the same audio as PyTorch fp32.

:class:`OrtSynthesizer` has :meth:`Synthesizer.infer`'s signature. The network runs as two ONNX graphs, the random
draws stay in PyTorch, drawn in the order ``infer`` draws them, so a seeded conversion equals the PyTorch one:

- ``prior``: units, F0, voicing, speaker conditioning, prior noise (and volume) -> the flow's output ``z``
  (B, inter, T) for the so-vits-svc decoder, or the DDSP decoder's controls (amplitudes, noise gains). Batch and
  frame axes are dynamic: the converter pads clips to a few length buckets, so ONNX Runtime sees few shapes.
- ``decoder`` (NSF-HiFiGAN): ``z``, the NSF excitation (computed by PyTorch, with its random phases and noise) and
  the speaker -> audio; frame axis dynamic. With ``decode_window`` it decodes a clip in windows of equal size (at
  most the window, :meth:`NSFHiFiGAN.decode_windowed` ``balanced``): no window is shifted inwards to keep one shape,
  which costs ONNX Runtime nothing (a 10 s clip at window 256: 957 frames decoded instead of a fixed-shape
  graph's 1152, 20 % less time, measured in docs/benchmarks.md).

The content encoder, when it is a HuBERT/ContentVec :class:`~svc_pl.data.content.ContentEncoder`, runs as a third
graph (``content``, :class:`OrtContentEncoder`) under the same ``--backend`` choice.

What stays in PyTorch: the speaker embedding, the random draws, the NSF excitation, the DDSP decoder's additive
and noise synthesis (float64 phase, STFT filtering) and, with ``auto_predict_f0``, the whole synthesizer.

Graphs are exported on first use into the cache folder (:func:`cache_dir`) under a name made from the model
file's sha256 and a digest of everything else they depend on (this exporter's version, torch, onnx, opset,
settings), written atomically; a graph made for other versions or settings of the same model is stale and
replaced. If exporting, building or running a graph fails, conversion continues in PyTorch after one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from svc_pl.infer.options import DECODE_WINDOW
from svc_pl.layers.commons import randn_rows, rows_seeded
from svc_pl.synthesizer import Synthesizer

LOG = logging.getLogger(__name__)

EXPORTER_VERSION = 1  # bump when the graphs below change: cached graphs of older versions are re-exported
OPSET = 17
BACKENDS = ("auto", "torch", "onnxruntime")


# ================================================================================================ choosing
def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, precision: str, device: str | torch.device,
                    decoder: str = "nsf-hifigan") -> tuple[str, str]:
    """("torch" or "onnxruntime", why) for ``backend`` ("auto", "torch" or "onnxruntime").

    ``auto`` is torch on GPUs and on CPUs with native bf16 when the precision resolves to bf16 (bf16 torch
    is about twice as fast as fp32 there), and onnxruntime for fp32 on the CPU (about 1.4x faster than torch fp32
    on the 4.1 synthesizer, ``bench/bench_infer.py --backend``); torch if onnxruntime is not installed, and torch
    for a DDSP ``decoder`` (``tiny`` voices: their synthesizer is a sixth of a conversion and ONNX Runtime runs it
    no faster, 1.30 s against 1.15 s for 60 s of ``tiny-base``, while its sessions add a second to loading).
    ``onnxruntime`` on a GPU device falls back to torch (only the CPU provider is used).
    """
    from svc_pl.infer.runtime import resolve_precision

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    if backend == "torch":
        return "torch", "asked for"
    if device.type != "cpu":
        return "torch", f"onnxruntime runs the synthesizer on the CPU only, the device is {device}"
    if not onnxruntime_available():
        return "torch", "onnxruntime is not installed (pip install onnxruntime)"
    if backend == "onnxruntime":
        return "onnxruntime", "asked for"
    if decoder == "ddsp":
        return "torch", "a DDSP voice, which ONNX Runtime does not run faster"
    if resolve_precision(precision, device) == "bf16":
        return "torch", "bf16 on a CPU that computes it natively"
    return "onnxruntime", "fp32 on the CPU"


# ================================================================================================ cache
def cache_dir() -> Path:
    """Where exported graphs live: ``$SVC_PL_CACHE/onnx``, else ``$XDG_CACHE_HOME/svc_pl/onnx``, else
    ``~/.cache/svc_pl/onnx``."""
    root = os.environ.get("SVC_PL_CACHE")
    if root:
        return Path(root) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "svc_pl" / "onnx"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def state_sha256(module: nn.Module) -> str:
    """Digest of a module's tensors (for a model that did not come from a file)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _versions() -> dict:
    """What a cached graph depends on besides the model. The onnx version is read from the installed package's
    metadata: importing onnx (and ml_dtypes with it) costs about a second, which a cached graph never needs."""
    from importlib import metadata

    try:
        onnx_version = metadata.version("onnx")
    except metadata.PackageNotFoundError:
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx") from None
    try:  # the cached graph is ONNX Runtime's optimisation of the export (contrib ops of this version)
        ort_version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort_version = None
    return {"exporter": EXPORTER_VERSION, "torch": torch.__version__, "onnx": onnx_version, "opset": OPSET,
            "onnxruntime": ort_version}


# ================================================================================================ graphs
class PriorGraph(nn.Module):
    """The prior encoder with its sample given, then the flow (so-vits-svc decoder) or the DDSP controls.

    forward(c (B, ssl, T), f0 (B, T), uv (B, T), g (B, gin, T), noise (B, inter, T) standard normal, noise_scale
    () [, vol (B, T)]) -> z (B, inter, T); for DDSP (amps (B, K, T), gains (B, M, T)) and ``noise`` unused.
    """

    def __init__(self, synth: Synthesizer):
        super().__init__()
        self.synth = synth
        self.ddsp = synth.decoder == "ddsp"

    def forward(self, c, f0, uv, g, noise, noise_scale, vol=None):
        s = self.synth
        x_mask = torch.ones_like(f0).unsqueeze(1)
        m_p, logs_p = s.prior_stats(c, f0, uv, x_mask, vol)
        if self.ddsp:
            return s.dec.controls(m_p, f0, uv, g)
        z_p = (m_p + noise * torch.exp(logs_p) * noise_scale) * x_mask  # PriorEncoder.forward's sample
        return s.flow(z_p, x_mask, g=g, reverse=True)


class DecoderGraph(nn.Module):
    """NSFHiFiGAN.decode: z (B, inter, N), har_source (B, 1, N * hop), g (B, gin, N) -> audio (B, 1, N * hop)."""

    def __init__(self, synth: Synthesizer):
        super().__init__()
        self.dec = synth.dec

    def forward(self, z, har_source, g):
        return self.dec.decode(z, har_source, g)


def _example(synth: Synthesizer, graph: str, frames: int) -> tuple[list[str], tuple, list[str]]:
    """(input names, example inputs, output names) of ``graph`` at ``frames`` frames, batch 1."""
    gen = torch.Generator().manual_seed(0)
    gin = synth.emb_g.weight.shape[1]
    g = torch.randn(1, gin, frames, generator=gen)
    if graph == "prior":
        f0 = 100 + 300 * torch.rand(1, frames, generator=gen)
        uv = (torch.rand(1, frames, generator=gen) > 0.2).float()
        names = ["c", "f0", "uv", "g", "noise", "noise_scale"]
        args = [torch.randn(1, synth.ssl_dim, frames, generator=gen), f0 * uv, uv, g,
                torch.randn(1, synth.enc_p.out_channels, frames, generator=gen), torch.tensor(0.4)]
        if synth.vol_embedding:
            names.append("vol")
            args.append(torch.rand(1, frames, generator=gen))
        outputs = ["amps", "gains"] if synth.decoder == "ddsp" else ["z"]
        return names, tuple(args), outputs
    hop = synth.dec.upp
    har = torch.rand(1, 1, frames * hop, generator=gen) * 0.2 - 0.1
    z = torch.randn(1, synth.enc_p.out_channels, frames, generator=gen)
    return ["z", "har_source", "g"], (z, har, g), ["audio"]


def export_graph(synth: Synthesizer, graph: str, path: str | os.PathLike) -> Path:
    """Export ``graph`` ("prior" or "decoder") of ``synth`` to ``path``, atomically; batch and time axes dynamic."""
    module = PriorGraph(synth) if graph == "prior" else DecoderGraph(synth)
    names, args, outputs = _example(synth, graph, 64)
    time_axis = {"c": 2, "f0": 1, "uv": 1, "g": 2, "noise": 2, "vol": 1, "z": 2, "amps": 2, "gains": 2,
                 "har_source": 2, "audio": 2}
    axes = {}
    for n in names + outputs:
        if n != "noise_scale":
            axes[n] = {0: "batch", time_axis[n]: "samples" if n in ("har_source", "audio") else "frames"}
    return _export(module, args, path, names, outputs, axes)


def _export(module: nn.Module, args: tuple, path: str | os.PathLike, names: list[str], outputs: list[str],
            axes: dict) -> Path:
    """``torch.onnx.export`` (TorchScript exporter, :data:`OPSET`) to ``path`` atomically, its chatter silenced."""
    from svc_pl.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*Constant folding.*")
        torch.onnx.export(module.eval(), args, str(tmp), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return path


def cached_session(path: Path, export, what: str, threads: int | None = None) -> tuple[object, bool]:
    """(session, exported): the ONNX Runtime session of the cached graph ``path``, made first by ``export(path)``
    when the cache has no loadable copy; other copies of the same graph (same name up to the last ``-``: other
    versions or settings) are removed then. ``what`` names the graph in the log."""
    if path.is_file():
        try:
            return build_session(path, threads), False
        except Exception as err:  # a damaged cache file: export it again
            LOG.warning("cached ONNX graph %s does not load (%s): exporting it again", path, err)
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.onnx"):
        if stale != path:
            stale.unlink(missing_ok=True)
    LOG.info("exporting %s for onnxruntime to %s", what, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export(path)
    optimise_in_place(path)
    return build_session(path, threads), True


def optimise_in_place(path: Path) -> None:
    """Replace the exported graph ``path`` (atomically) by ONNX Runtime's "extended" optimisation of it: constant
    folding and operator fusions, no hardware-specific layouts, so the file still loads on any CPU. Every later
    session skips those passes: 0.18 s less to load the 4.1 model's three graphs on a 2-core Xeon (content encoder
    0.46 -> 0.41 s, prior 0.22 -> 0.12 s, decoder 0.09 -> 0.06 s), the same outputs. If ONNX Runtime cannot, the
    plain export stays."""
    import onnxruntime as ort

    from svc_pl.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(tmp)
            so.log_severity_level = 3
            ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - an optimisation only
        LOG.info("ONNX graph %s kept as exported (ONNX Runtime could not optimise it: %s)", path, err)


def build_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: torch's, i.e. the
    physical cores), sequential execution, all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


# ================================================================================================ backend
class OrtSynthesizer:
    """A :class:`Synthesizer`'s :meth:`~Synthesizer.infer` with the network in ONNX Runtime.

    Args:
        synth: the synthesizer (inference-prepared, on the CPU); PyTorch still draws the random numbers and
            computes what is listed in the module docstring.
        model_digest: sha256 of the model file (default: of ``synth``'s tensors).
        cache: folder of exported graphs (default :func:`cache_dir`).
        threads: ONNX Runtime intra-op threads (default: torch's thread count).
    """

    def __init__(self, synth: Synthesizer, model_digest: str | None = None, cache: str | os.PathLike | None = None,
                 threads: int | None = None):
        self.synth = synth
        self.digest = model_digest or state_sha256(synth)
        self.cache = Path(cache) if cache is not None else cache_dir()
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self.exported: list[Path] = []  # graphs this object exported (not found in the cache)

    # ------------------------------------------------------------------ graphs and sessions
    def graph_path(self, graph: str) -> Path:
        """The cache file of ``graph`` for this model and these versions."""
        key = {**_versions(), "graph": graph, "model": self.digest}
        tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache / f"{self.digest[:16]}-{graph}-{tag}.onnx"

    def session(self, graph: str):
        """The session of ``graph``, exported first if the cache has no current copy (stale copies of the same
        model's graph are removed)."""
        if graph in self._sessions:
            return self._sessions[graph]
        path = self.graph_path(graph)
        sess, exported = cached_session(path, lambda p: export_graph(self.synth, graph, p),
                                        f"the synthesizer's {graph} graph", self.threads)
        if exported:
            self.exported.append(path)
        self._sessions[graph] = sess
        return sess

    def prepare(self) -> OrtSynthesizer:
        """Export (if not cached) and load every graph a conversion uses, so that the first conversion does not
        pay for it."""
        self.session("prior")
        if self.synth.decoder != "ddsp":
            self.session("decoder")
        return self

    @staticmethod
    def _run(sess, **inputs) -> list[torch.Tensor]:
        feeds = {i.name: inputs[i.name].detach().float().contiguous().numpy() for i in sess.get_inputs()}
        return [torch.from_numpy(o) for o in sess.run(None, feeds)]

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def infer(self, c, f0, uv, speaker, noise_scale: float = 0.35, seed: int | None = 52468, predict_f0: bool = False,
              vol=None, decode_window: int = 0, decode_frames: tuple[int, int] | None = None):
        """:meth:`Synthesizer.infer` (same arguments and results); ``predict_f0`` runs PyTorch."""
        import contextlib

        s = self.synth
        if predict_f0 and s.use_automatic_f0_prediction:
            return s.infer(c, f0, uv, speaker, noise_scale, seed, predict_f0, vol, decode_window, decode_frames)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast(device_type="cpu", enabled=False))
            if seed is not None:
                stack.enter_context(torch.random.fork_rng(devices=[]))
                torch.manual_seed(seed)
                if c.size(0) > 1:
                    stack.enter_context(rows_seeded(seed, c.size(0)))
            return self._infer(c.float(), f0.float(), uv.float(), speaker, noise_scale, vol, decode_window,
                               decode_frames)

    def _infer(self, c, f0, uv, speaker, noise_scale, vol, decode_window, decode_frames):
        s = self.synth
        b, t = c.size(0), c.size(-1)
        g = s.speaker_embedding(speaker, batch=b, device=c.device).float()
        g = g.expand(b, -1, t) if g.size(-1) == 1 else g
        # the draws Synthesizer.infer makes, in its order: prior noise, then the decoder's
        noise = randn_rows(torch.empty(b, s.enc_p.out_channels, t))
        feeds = {"c": c, "f0": f0, "uv": uv, "g": g, "noise": noise, "noise_scale": torch.tensor(float(noise_scale))}
        if s.vol_embedding:
            feeds["vol"] = vol.float() if vol is not None else torch.zeros_like(f0)
        if s.decoder == "ddsp":
            amps, gains = self._run(self.session("prior"), **feeds)
            audio = (s.dec.harmonics(amps, f0) + s.dec.noise(gains, t * s.hop_length)).unsqueeze(1)
            if decode_frames is not None:
                lo, hi = decode_frames
                audio = audio[..., lo * s.hop_length:hi * s.hop_length]
            return audio, f0
        (z,) = self._run(self.session("prior"), **feeds)
        har_source = s.dec.m_source(f0, s.dec.upp)
        if decode_window > 0:
            return s.dec.decode_windowed(z, har_source, g, window=decode_window, frames=decode_frames,
                                         decode=self._decode, balanced=True), f0
        if decode_frames is not None:
            raise ValueError("decode_frames needs decode_window > 0")
        return self._decode(z, har_source, g), f0

    def _decode(self, z, har_source, g) -> torch.Tensor:
        """The decoder graph."""
        (audio,) = self._run(self.session("decoder"), z=z, har_source=har_source, g=g)
        return audio


class OrtContentEncoder:
    """A HuBERT/ContentVec :class:`svc_pl.data.content.ContentEncoder` run by ONNX Runtime: ``(B, T)`` 16 kHz audio ->
    ``(B, dim, frames)`` units, the same as the module's to float rounding (1e-6 relative on vec768l12).

    Measured on the 2-core EPYC: 1.15-1.17x faster than torch fp32 (10 s: 1.22 -> 1.05 s; 60 s: 9.46 -> 8.11 s), the
    graph exported once per encoder (about 5 s) into the same cache as the synthesizer's, keyed by a digest of the
    encoder's tensors (hashed once per converter) and the exporter's versions.
    """

    def __init__(self, encoder: nn.Module, cache: str | os.PathLike | None = None, threads: int | None = None):
        self.encoder = encoder
        self.cache = Path(cache) if cache is not None else cache_dir()
        self.threads = threads
        self._session = None
        self.exported: list[Path] = []

    def session(self):
        if self._session is None:
            digest = state_sha256(self.encoder)
            key = {**_versions(), "graph": "content", "name": getattr(self.encoder, "name", ""), "model": digest}
            tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            path = self.cache / f"{digest[:16]}-content-{tag}.onnx"
            wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
            axes = {"wav": {0: "batch", 1: "samples"}, "units": {0: "batch", 2: "frames"}}
            self._session, exported = cached_session(
                path, lambda p: _export(self.encoder, (wav,), p, ["wav"], ["units"], axes),
                "the content encoder's graph", self.threads)
            if exported:
                self.exported.append(path)
        return self._session

    @torch.inference_mode()
    def __call__(self, wav16k: torch.Tensor) -> torch.Tensor:
        if wav16k.dim() != 2 or wav16k.shape[-1] < 400:  # the module's own checks and messages
            return self.encoder(wav16k)
        (units,) = OrtSynthesizer._run(self.session(), wav=wav16k.float())
        return units


class SynthesizerBackends:
    """What runs a converter's synthesizer for each ``ConvertOptions.backend``: the choice is made (and logged)
    once per (backend, precision); after an ONNX Runtime failure, PyTorch for the rest of the converter's life.

    Args:
        model: the :class:`svc_pl.infer.loading.VoiceModel` (its ``source`` file's sha256 keys the graph cache).
        device: the converter's device.
    """

    def __init__(self, model, device: torch.device):
        self.model = model
        self.device = torch.device(device)
        self._chosen: dict[tuple[str, str], str] = {}
        self._ort: OrtSynthesizer | None = None
        self._ort_encoders: dict[int, OrtContentEncoder] = {}
        self.failed: str | None = None  # why ONNX Runtime was given up, once it was
        self.encoder_failed: str | None = None  # the same for the content encoder

    def resolve(self, backend: str, precision: str) -> str:
        """"torch" or "onnxruntime" for these options (logged the first time)."""
        key = (backend, precision)
        if key not in self._chosen:
            name, why = resolve_backend(backend, precision, self.device,
                                       getattr(self.model.net, "decoder", "nsf-hifigan"))
            LOG.info("synthesizer backend: %s (%s%s)", name, "" if backend == "auto" else "--backend ", why)
            self._chosen[key] = name
        return self._chosen[key]

    def decode_window(self, opts) -> int:
        """``opts.decode_window``, or when it is None the default of the backend that runs the synthesizer:
        :data:`DECODE_WINDOW` (after an ONNX Runtime failure, torch's)."""
        if opts.decode_window is not None:
            return int(opts.decode_window)
        ort = self.failed is None and self.resolve(opts.backend, opts.precision) == "onnxruntime"
        return DECODE_WINDOW["onnxruntime" if ort else "torch"]

    def ort(self) -> OrtSynthesizer:
        if self._ort is None:
            source = Path(str(self.model.source))
            digest = file_sha256(source) if source.is_file() else None
            self._ort = OrtSynthesizer(self.model.net, digest)
        return self._ort

    def encode(self, opts, encoder: nn.Module, wav16k: torch.Tensor) -> torch.Tensor:
        """``encoder(wav16k)`` on the backend ``opts`` asks for: ONNX Runtime runs HuBERT/ContentVec encoders (the
        :class:`~svc_pl.data.content.ContentEncoder` class itself; Whisper and windowed encoders stay in torch)."""
        from svc_pl.data.content import ContentEncoder

        if (type(encoder) is ContentEncoder and self.encoder_failed is None and wav16k.device.type == "cpu"
                and self.resolve(opts.backend, opts.precision) == "onnxruntime"):
            try:
                ort = self._ort_encoders.setdefault(id(encoder), OrtContentEncoder(encoder))
                return ort(wav16k)
            except Exception as err:  # export, session or run: encode on with PyTorch, say why once
                text = str(err).strip()
                self.encoder_failed = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
                LOG.warning("onnxruntime content encoder failed (%s); encoding with torch instead", self.encoder_failed)
        return encoder(wav16k)

    def infer(self, opts, *args, **kwargs):
        """``Synthesizer.infer(*args, **kwargs)`` on the backend ``opts`` asks for."""
        net = self.model.net
        if self.failed is None and self.resolve(opts.backend, opts.precision) == "onnxruntime":
            try:
                return self.ort().infer(*args, **kwargs)
            except Exception as err:  # export, session or run: convert on with PyTorch, say why once
                self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                LOG.warning("onnxruntime backend failed (%s); converting with torch instead", self.failed)
        return net.infer(*args, **kwargs)

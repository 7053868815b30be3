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

Graphs are exported on first use into a cache, keyed by the model's digest and the versions they depend on
(:mod:`svc_pl.infer.ort_graphs`). If exporting, building or running a graph fails, conversion continues in PyTorch
after one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from svc_pl.infer.options import DECODE_WINDOW
from svc_pl.infer.ort_graphs import (  # noqa: F401  (file_sha256: part of this module's API)
    _export,
    _versions,
    build_session,
    cache_dir,
    cached_session,
    export_graph,
    file_sha256,
    planar_min_channels,
    state_sha256,
)
from svc_pl.layers.commons import randn_rows, rows_seeded
from svc_pl.synthesizer import Synthesizer

LOG = logging.getLogger(__name__)

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
    converts 2.3-2.8x faster than fp32 there), and onnxruntime for fp32 on the CPU (with AVX2 kernels
    1.40-1.50x / 1.54-1.57x the reference at 10 / 60 s against torch fp32's 1.09x / 1.31x,
    ``bench/bench_infer.py --backend``); torch if onnxruntime is not installed, and torch for a DDSP ``decoder``
    (``tiny`` voices: their synthesizer is a sixth of a conversion and ONNX Runtime runs it no faster, 1.30 s
    against 1.15 s for 60 s of ``tiny-base``, while its sessions add a second to loading).
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


# ================================================================================================ backend
class OrtSynthesizer:
    """A :class:`Synthesizer`'s :meth:`~Synthesizer.infer` with the network in ONNX Runtime.

    Args:
        synth: the synthesizer (inference-prepared, on the CPU); PyTorch still draws the random numbers and
            computes what is listed in the module docstring.
        model_digest: sha256 of the model file (default: of ``synth``'s tensors).
        cache: folder of exported graphs (default :func:`cache_dir`).
        threads: ONNX Runtime intra-op threads (default: torch's thread count).
        planar_channels: decoder stages with at least this many channels are exported as 2-D convolutions
            ("auto": what suits this CPU, :func:`~svc_pl.infer.ort_graphs.planar_min_channels`; ``None``: 1-D).
    """

    def __init__(self, synth: Synthesizer, model_digest: str | None = None, cache: str | os.PathLike | None = None,
                 threads: int | None = None, planar_channels: int | str | None = "auto"):
        self.synth = synth
        self.planar_channels = planar_min_channels() if planar_channels == "auto" else planar_channels
        self.digest = model_digest or state_sha256(synth)
        self.cache = Path(cache) if cache is not None else cache_dir()
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self.exported: list[Path] = []  # graphs this object exported (not found in the cache)

    # ------------------------------------------------------------------ graphs and sessions
    def graph_path(self, graph: str) -> Path:
        """The cache file of ``graph`` for this model and these versions."""
        key = {**_versions(), "graph": graph, "model": self.digest}
        if graph == "decoder" and self.planar_channels is not None:
            key["planar_channels"] = self.planar_channels
        tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache / f"{self.digest[:16]}-{graph}-{tag}.onnx"

    def session(self, graph: str):
        """The session of ``graph``, exported first if the cache has no current copy (stale copies of the same
        model's graph are removed)."""
        if graph in self._sessions:
            return self._sessions[graph]
        path = self.graph_path(graph)
        sess, exported = cached_session(path, lambda p: export_graph(self.synth, graph, p, self.planar_channels),
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
                "the content encoder's graph", self.threads, prepack=False)  # its weights once: see build_session
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

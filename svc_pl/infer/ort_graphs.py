"""The ONNX graphs behind ``--backend onnxruntime``: what is exported, where it is cached, how a session is built.

- :class:`PriorGraph` / :class:`DecoderGraph`: the synthesizer's two graphs (:func:`export_graph`; the decoder's
  stages with many channels as 2-D convolutions, :class:`PlanarStage`, :func:`planar_min_channels`); the content
  encoder's graph is exported by :class:`svc_pl.infer.onnx_backend.OrtContentEncoder` through :func:`_export`.
- The cache (:func:`cache_dir`): a graph is exported on first use under a name made from the model's sha256
  (:func:`file_sha256`, :func:`state_sha256`) and a digest of everything else it depends on (:func:`_versions`:
  this exporter's version, torch, onnx, onnxruntime, opset), written atomically and replaced by ONNX Runtime's
  hardware-independent optimisation of it (:func:`optimise_in_place`); a copy made for other versions or
  settings of the same model is stale and removed (:func:`cached_session`).
- :func:`build_session`: a CPU session with the thread settings conversion uses.

The backend that runs these sessions, and falls back to PyTorch when one fails, is
:mod:`svc_pl.infer.onnx_backend`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from svc_pl.layers.nsf_planar import planar_block
from svc_pl.synthesizer import Synthesizer

LOG = logging.getLogger(__name__)

EXPORTER_VERSION = 1  # bump when the graphs below change: cached graphs of older versions are re-exported
OPSET = 17


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
    """NSFHiFiGAN.decode: z (B, inter, N), har_source (B, 1, N * hop), g (B, gin, N) -> audio (B, 1, N * hop).

    ``planar_channels``: the residual blocks of stages with at least this many channels are exported as 2-D
    convolutions (:class:`PlanarStage`); ``None``: all 1-D."""

    def __init__(self, synth: Synthesizer, planar_channels: int | None = None):
        super().__init__()
        self.dec = synth.dec
        self.stages = nn.ModuleList([PlanarStage.of(self.dec.stage_blocks(i), planar_channels) or nn.Identity()
                                     for i in range(self.dec.num_upsamples)])
        self.planar = [not isinstance(st, nn.Identity) for st in self.stages]

    def forward(self, z, har_source, g):
        return self.dec.decode(z, har_source, g, [st if p else None for st, p in zip(self.stages, self.planar)])


def planar_min_channels() -> int | None:
    """Channel count from which a decoder stage's convolutions run faster in ONNX Runtime as (1, k) 2-D
    convolutions on (B, C, 1, T) than as 1-D ones: ONNX Runtime turns 2-D convolutions into its blocked NCHWc
    kernels (blocks of 16 channels with AVX-512, 8 with AVX2), which win from 8 blocks up. Measured on a 2-core
    Xeon per stage of the 4.1 decoder (3 residual blocks, kernels 3/7/11, 502 frames; docs/benchmarks.md): with
    AVX-512, 2-D takes 0.66-0.84x the time at 256 channels, 0.75-0.79x at 128, 0.92-1.37x at 64, 0.98-1.68x
    below; with AVX2 (AVX-512 hidden), 0.82-1.01x at 256, 0.50-0.85x at 128, 0.76-0.84x at 64, 1.32-1.44x
    below. Elsewhere (no AVX2, ARM) ``None``: the blocked kernels are x86's."""
    return {"AVX512": 128, "AVX2": 64}.get(torch.backends.cpu.get_cpu_capability())


class PlanarStage(nn.Module):
    """One upsampling stage's residual blocks on (B, C, 1, T): copies of the blocks whose ``nn.Conv1d`` layers
    are replaced by the equivalent ``(1, k)`` ``nn.Conv2d`` (same weights), averaged like
    :func:`svc_pl.layers.nsf.mean_of_blocks`. (B, C, T) in and out; the same numbers to float rounding."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @classmethod
    def of(cls, blocks: nn.ModuleList, min_channels: int | None) -> PlanarStage | None:
        """The planar form of ``blocks``, or None where it does not apply (below ``min_channels``, or blocks
        with other layers than plain convolutions, e.g. depthwise-separable ones)."""
        if min_channels is None:
            return None
        convs = [m for b in blocks for m in b.modules() if isinstance(m, nn.Conv1d)]
        if not convs or convs[0].in_channels < min_channels:
            return None
        planar = [planar_block(block) for block in blocks]
        return None if any(b is None for b in planar) else cls(planar)

    def forward(self, x):
        from svc_pl.layers.nsf import mean_of_blocks

        return mean_of_blocks(self.blocks, x.unsqueeze(2)).squeeze(2)


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


def export_graph(synth: Synthesizer, graph: str, path: str | os.PathLike, planar_channels: int | None = None) -> Path:
    """Export ``graph`` ("prior" or "decoder") of ``synth`` to ``path``, atomically; batch and time axes dynamic.
    ``planar_channels``: see :class:`DecoderGraph`."""
    module = PriorGraph(synth) if graph == "prior" else DecoderGraph(synth, planar_channels)
    names, args, outputs = _example(synth, graph, 64)
    # the DDSP gains come noise_steps per frame (net.ddsp_noise_steps): their time axis has its own name
    time_axis = {"c": 2, "f0": 1, "uv": 1, "g": 2, "noise": 2, "vol": 1, "z": 2, "amps": 2, "gains": 2,
                 "har_source": 2, "audio": 2}
    axes = {}
    for n in names + outputs:
        if n != "noise_scale":
            axes[n] = {0: "batch", time_axis[n]: {"har_source": "samples", "audio": "samples",
                                                   "gains": "gain_steps"}.get(n, "frames")}
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


def cached_session(path: Path, export, what: str, threads: int | None = None,
                   prepack: bool = True) -> tuple[object, bool]:
    """(session, exported): the ONNX Runtime session of the cached graph ``path``, made first by ``export(path)``
    when the cache has no loadable copy; other copies of the same graph (same name up to the last ``-``: other
    versions or settings) are removed then. ``what`` names the graph in the log."""
    if path.is_file():
        try:
            return build_session(path, threads, prepack), False
        except Exception as err:  # a damaged cache file: export it again
            LOG.warning("cached ONNX graph %s does not load (%s): exporting it again", path, err)
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.onnx"):
        if stale != path:
            stale.unlink(missing_ok=True)
    LOG.info("exporting %s for onnxruntime to %s", what, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export(path)
    optimise_in_place(path)
    return build_session(path, threads, prepack), True


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


def build_session(path: str | os.PathLike, threads: int | None = None, prepack: bool = True):
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: torch's, i.e. the
    physical cores), sequential execution, all graph optimisations. ``prepack=False`` keeps ONNX Runtime from
    holding a second, pre-packed copy of the matrix-product weights: for the HuBERT-base content encoder 226 MiB
    less resident memory (the session holds 373 instead of 599 MiB) at the same speed with AVX-512 (10 s encoded in 0.673 s both
    ways) and within 3 % with AVX2 kernels (1.13-1.20 s -> 1.20-1.22 s) on the 2-core Xeon."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

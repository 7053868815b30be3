"""Export the synthesizer's inference path to ONNX with dynamic batch and frame axes.

:class:`OnnxSynthesizer` reuses the synthesizer's sub-modules and only re-expresses what is random
in :meth:`Synthesizer.infer` (the prior sample and the NSF source's initial phases and additive
noise) as explicit inputs, so the exported graph is deterministic and a runtime can reproduce any
seeded PyTorch conversion by feeding it the same draws (see :func:`infer_noise`).

Graph inputs (B: batch, T: frames, S: speakers, H: hop length):

- ``c`` (B, ssl_dim, T) float32 content units
- ``f0`` (B, T) float32 Hz; ``uv`` (B, T) float32 voiced flags
- ``sid`` (B,) int64 speaker ids, or with ``speaker_mix`` (B, S) float32 mix weights
- ``noise`` (B, inter_channels, T) prior noise, already scaled (``noise_scale * randn``)
- ``phase`` (B, harmonics) initial phases of the source harmonics in [0, 1) (column 0 is ignored: the
  fundamental starts at phase 0, as in PyTorch)
- ``sine_noise`` (B, T * H, harmonics) standard normal noise of the source
- ``vol`` (B, T) volume, only for models with ``vol_embedding``

Output: ``audio`` (B, 1, T * H).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from svc_pl.errors import UserFacingError
from svc_pl.synthesizer import Synthesizer

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 17
MIN_OPSET = (
    13  # integer Clip (f0_to_coarse's clamp) needs 12+, and opset 11 graphs fail to load in onnxruntime
)


class OnnxSynthesizer(nn.Module):
    """Deterministic inference graph of a :class:`Synthesizer` (F0 given, not predicted).

    Args:
        synth: the synthesizer; its weight norm is folded in place (as ``prepare_for_inference``).
        speaker_mix: take (B, S) float mix weights instead of (B,) int64 speaker ids.
    """

    def __init__(self, synth: Synthesizer, speaker_mix: bool = False):
        super().__init__()
        if synth.dec.m_source.l_sin_gen.mode != "sample":
            raise ValueError(
                "OnnxSynthesizer expects the so-vits-svc decoder (sample-rate phase integration)"
            )
        synth.prepare_for_inference()
        self.synth = synth
        self.speaker_mix = speaker_mix
        self.vol_embedding = synth.vol_embedding
        sine_gen = synth.dec.m_source.l_sin_gen
        self.hop_length = synth.dec.upp
        self.harmonics = sine_gen.dim
        self.register_buffer(
            "harmonic_numbers",
            torch.arange(1, sine_gen.dim + 1, dtype=torch.float32).view(1, 1, -1),
            persistent=False,
        )
        # zeroes the fundamental's initial phase, as SineGen does
        self.register_buffer(
            "phase_mask", (torch.arange(sine_gen.dim) > 0).float().view(1, -1), persistent=False
        )

    @property
    def input_names(self) -> list[str]:
        return ["c", "f0", "uv", "sid", "noise", "phase", "sine_noise"] + (
            ["vol"] if self.vol_embedding else []
        )

    def forward(
        self,
        c: torch.Tensor,
        f0: torch.Tensor,
        uv: torch.Tensor,
        sid: torch.Tensor,
        noise: torch.Tensor,
        phase: torch.Tensor,
        sine_noise: torch.Tensor,
        vol: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inputs as in the module docstring. Returns audio (B, 1, T * hop)."""
        s = self.synth
        if self.speaker_mix:
            g = (sid.to(s.emb_g.weight.dtype) @ s.emb_g.weight).unsqueeze(-1)
        else:
            g = s.emb_g(sid).unsqueeze(-1)
        x_mask = torch.ones_like(f0).unsqueeze(1)
        m_p, logs_p = s.prior_stats(c, f0, uv, x_mask, vol)  # PriorEncoder.forward with the sample given
        z_p = (m_p + noise * torch.exp(logs_p)) * x_mask
        z = s.flow(z_p, x_mask, g=g, reverse=True)
        return self._decode(z, f0, g, phase, sine_noise)

    def _source(self, f0: torch.Tensor, phase: torch.Tensor, sine_noise: torch.Tensor) -> torch.Tensor:
        """SineGen + SourceModuleHnNSF with given randomness. f0 (B, T) -> excitation (B, 1, T*hop)."""
        m_source = self.synth.dec.m_source
        sg = m_source.l_sin_gen
        f0_up = f0.float().unsqueeze(-1).expand(-1, -1, self.hop_length).flatten(1).unsqueeze(-1)  # (B, L, 1)
        rad = (f0_up * self.harmonic_numbers / sg.sampling_rate) % 1  # (B, L, dim)
        rad = torch.cat([rad[:, :1] + (phase * self.phase_mask).unsqueeze(1), rad[:, 1:]], dim=1)
        wrapped = torch.cumsum(rad, 1) % 1
        wraps = (wrapped[:, 1:] - wrapped[:, :-1] < 0).to(rad.dtype) * -1.0
        shift = torch.cat([torch.zeros_like(rad[:, :1]), wraps], dim=1)
        sines = torch.sin(torch.cumsum(rad + shift, dim=1) * 2 * math.pi) * sg.sine_amp
        uv = (f0_up > sg.voiced_threshold).float()
        noise_amp = uv * sg.noise_std + (1 - uv) * sg.sine_amp / 3
        excitation = sines * uv + noise_amp * sine_noise
        return m_source.l_tanh(m_source.l_linear(excitation)).transpose(1, 2)

    def _decode(self, z, f0, g, phase, sine_noise) -> torch.Tensor:
        """NSFHiFiGAN.forward with the source from :meth:`_source`. z (B, inter, T) -> (B, 1, T*hop)."""
        return self.synth.dec.decode(z, self._source(f0, phase, sine_noise), g)


def infer_noise(
    synth: Synthesizer, batch: int, frames: int, noise_scale: float = 0.35, seed: int | None = 52468
) -> dict[str, torch.Tensor]:
    """The random draws :meth:`Synthesizer.infer` makes with ``seed``, as graph inputs.

    Returns ``noise`` (B, inter, T) already scaled, ``phase`` (B, harmonics) and ``sine_noise``
    (B, T*hop, harmonics). The caller's random state is left alone.
    """
    harmonics = synth.dec.m_source.l_sin_gen.dim
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        noise = torch.randn(batch, synth.enc_p.out_channels, frames) * noise_scale
        phase = torch.rand(batch, harmonics)
        phase[:, 0] = 0
        sine_noise = torch.randn(batch, frames * synth.hop_length, harmonics)
    return {"noise": noise, "phase": phase, "sine_noise": sine_noise}


def example_inputs(
    wrapper: OnnxSynthesizer, batch: int = 1, frames: int = 64, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes and dtypes for ``wrapper`` (for tracing and tests)."""
    s = wrapper.synth
    gen = torch.Generator().manual_seed(seed)
    f0 = 100 + 300 * torch.rand(batch, frames, generator=gen)
    uv = (torch.rand(batch, frames, generator=gen) > 0.2).float()
    inputs = {
        "c": torch.randn(batch, s.ssl_dim, frames, generator=gen),
        "f0": f0 * uv,
        "uv": uv,
        "sid": (
            torch.full((batch, s.n_speakers), 1.0 / s.n_speakers)
            if wrapper.speaker_mix
            else torch.randint(0, s.n_speakers, (batch,), generator=gen)
        ),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inputs.update(infer_noise(s, batch, frames, seed=None))
    if wrapper.vol_embedding:
        inputs["vol"] = torch.rand(batch, frames, generator=gen)
    return inputs


def export_onnx(
    synth: Synthesizer,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    speaker_mix: bool = False,
    example_frames: int = 64,
) -> Path:
    """Write the inference graph of ``synth`` (weight norm folded in place) to ``path``.

    Batch and frame axes are dynamic. Uses the TorchScript-based exporter (``dynamo=False``): the
    torch.export-based one needs ``onnxscript``, which svc_pl does not depend on, and the traced graph
    already keeps every frame-derived size symbolic. Returns the path written.
    """
    if opset < MIN_OPSET:
        raise UserFacingError(
            f"ONNX opset {opset} is too old for this graph: use {MIN_OPSET} or newer "
            f"(default {DEFAULT_OPSET})"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = OnnxSynthesizer(synth, speaker_mix=speaker_mix).eval()
    inputs = example_inputs(wrapper, batch=1, frames=example_frames)
    names = wrapper.input_names
    axes = {
        "c": {0: "batch", 2: "frames"},
        "f0": {0: "batch", 1: "frames"},
        "uv": {0: "batch", 1: "frames"},
        "sid": {0: "batch"},
        "noise": {0: "batch", 2: "frames"},
        "phase": {0: "batch"},
        "sine_noise": {0: "batch", 1: "samples"},
        "vol": {0: "batch", 1: "frames"},
        "audio": {0: "batch", 2: "samples"},
    }
    with torch.no_grad(), warnings.catch_warnings():
        # Known and harmless: the self-attention shape checks are traced as constants (t_s == t_t always),
        # and the relative-window arithmetic stays symbolic (tests run the graph at several lengths).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*Constant folding.*")
        torch.onnx.export(
            wrapper,
            tuple(inputs[n] for n in names),
            str(path),
            input_names=names,
            output_names=["audio"],
            dynamic_axes={k: v for k, v in axes.items() if k in names + ["audio"]},
            opset_version=opset,
            dynamo=False,
        )
    LOG.info("wrote %s (opset %d)", path, opset)
    return path

"""The so-vits-svc 4.1 generator (upstream ``models.SynthesizerTrn``), with a named training output,
seeded inference that leaves the caller's random state alone, and static or time-varying speaker mixes.

Sub-module names (``pre``, ``enc_p``, ``enc_q``, ``flow``, ``dec``, ``f0_decoder``, ``emb_g``, ``emb_uv``,
``emb_vol``) are upstream's, so state dicts map one to one (see :mod:`svc_pl.compat`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from svc_pl.errors import UserFacingError
from svc_pl.layers.commons import (
    rand_slice_segments_with_pitch,
    rows_seeded,
    sequence_mask,
    slice_pitch_segments,
    slice_segments,
)
from svc_pl.layers.conv import remove_all_weight_norm
from svc_pl.layers.ddsp import DDSPDecoder
from svc_pl.layers.encoders import F0Decoder, PosteriorEncoder, PriorEncoder
from svc_pl.layers.f0 import CoarsePitch, f0_to_coarse, f0_to_lf0, lf0_to_f0, normalize_f0
from svc_pl.layers.flow import ResidualCouplingBlock, TransformerCouplingBlock
from svc_pl.layers.nsf import NSFHiFiGAN
from svc_pl.layers.nsf_planar import planar_decoder


class SynthesizerOutput(NamedTuple):
    """What a training forward returns (upstream returns these as a positional 7-tuple).

    audio: (B, 1, segment_size * hop) generated waveform of the random segment.
    ids_slice: (B,) start frame of each segment.
    spec_mask: (B, 1, T) valid spectrogram frames.
    z, z_p, m_p, logs_p, m_q, logs_q: (B, inter, T) posterior sample, its flowed version, prior and posterior stats.
    pred_lf0, norm_lf0, lf0: (B, 1, T) F0-decoder prediction, its target, and the raw log-F0 (None without the F0 decoder).
    """

    audio: torch.Tensor
    ids_slice: torch.Tensor
    spec_mask: torch.Tensor
    z: torch.Tensor | None  # None (as z_p, m_q, logs_q) for the DDSP decoder, which has no posterior
    z_p: torch.Tensor | None
    m_p: torch.Tensor
    logs_p: torch.Tensor
    m_q: torch.Tensor | None
    logs_q: torch.Tensor | None
    pred_lf0: torch.Tensor | None
    norm_lf0: torch.Tensor | None
    lf0: torch.Tensor | None


SpeakerSpec = int | Sequence[float] | torch.Tensor


class DecoderHopMismatchError(UserFacingError):
    """An NSF-HiFiGAN decoder whose upsampling (samples per frame) is not the dataset's hop length."""

    def __init__(self, net: NetConfig, hop_length: int, sampling_rate: int):
        self.upsampling, self.hop_length, self.sampling_rate = net.upsampling, hop_length, sampling_rate
        rates = " x ".join(str(int(r)) for r in net.upsample_rates)
        super().__init__(
            f"the decoder makes {self.upsampling} samples per frame (upsample_rates {rates}) but the dataset's "
            f"hop_length is {hop_length} ({sampling_rate} Hz): preprocess the data with --hop-length "
            f"{self.upsampling} (and the sampling rate the config was made for), or use a config whose "
            f"upsample_rates multiply to {hop_length}")


@dataclass
class NetConfig:
    """The synthesizer's architecture: everything about it that the data does not decide.

    Defaults are the ``model`` block of so-vits-svc 4.1's ``config_template.json``; ``decoder`` and the
    ``ddsp_*`` fields are svc_pl's (``decoder: ddsp`` replaces NSF-HiFiGAN, the posterior encoder and the
    flow by a harmonic-plus-noise decoder, whose hop is the dataset's). What the data decides (sample
    rate, hop, FFT size, unit dimension, speaker count) comes from the dataset: see :data:`DATA_KEYS`.
    This is the ``model.net`` block of the YAML configs and of a checkpoint's ``hyper_parameters``.

    ``source_sampling_rate`` is the rate NSF-HiFiGAN's sine source is computed at; None (svc_pl's own models):
    the data's. so-vits-svc calls it ``sampling_rate`` in its ``model`` block and, where that is absent,
    computes the source at 44100 Hz whatever the data's rate: a model it trained at another rate learned that
    source, so :mod:`svc_pl.compat` sets this field when it reads such a config.
    """

    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4, 4])
    gin_channels: int = 768
    vol_embedding: bool = False
    use_depthwise_conv: bool = False
    use_automatic_f0_prediction: bool = True
    flow_share_parameter: bool = False
    n_flow_layer: int = 4
    n_layers_trans_flow: int = 3
    use_transformer_flow: bool = False
    decoder: Literal["nsf-hifigan", "ddsp"] = "nsf-hifigan"
    ddsp_hidden: int = 256
    n_harmonics: int = 64
    n_noise_bands: int = 65
    ddsp_envelope_bins: int = 0
    ddsp_noise_steps: int = 1
    source_sampling_rate: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | NetConfig | None, *, strict: bool = True) -> NetConfig:
        """A config from a ``net`` mapping (a YAML block, a checkpoint's hyper-parameters); keys not given keep
        their defaults. ``strict=False`` ignores keys that are not fields (a so-vits-svc ``model`` block)."""
        if isinstance(values, NetConfig):
            return values
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ValueError(f"unknown synthesizer setting(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: copy.deepcopy(v) for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def upsampling(self) -> int | None:
        """Samples per frame the NSF-HiFiGAN decoder produces (product of ``upsample_rates``); None for DDSP,
        which follows the dataset's hop."""
        return None if self.decoder == "ddsp" else math.prod(int(r) for r in self.upsample_rates)


# What the synthesizer takes from the dataset (the keys of a dataset's ``dataset_info``).
DATA_KEYS = ("sampling_rate", "hop_length", "filter_length", "unit_dim", "n_speakers")
_NET = NetConfig()


def synthesizer_kwargs(net: Mapping[str, Any] | NetConfig | None, data: Mapping[str, Any],
                       segment_frames: int = 20) -> dict[str, Any]:
    """The :class:`Synthesizer` arguments for an architecture and a dataset: the one translation between the
    configs (YAML ``model.net``, checkpoint hyper-parameters, so-vits-svc ``config.json``) and the constructor.

    Args:
        net: architecture settings (:class:`NetConfig` or its dict).
        data: at least :data:`DATA_KEYS` (sampling_rate, hop_length, filter_length, unit_dim, n_speakers).
        segment_frames: frames of the random training segment the decoder generates.
    """
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise ValueError(f"dataset settings {missing} missing (have: {sorted(data)})")
    kwargs = NetConfig.from_dict(net).to_dict()
    kwargs["resblock"] = str(kwargs["resblock"])
    kwargs.update(spec_channels=int(data["filter_length"]) // 2 + 1, segment_size=int(segment_frames),
                  ssl_dim=int(data["unit_dim"]), n_speakers=int(data["n_speakers"]),
                  sampling_rate=int(data["sampling_rate"]), hop_length=int(data["hop_length"]))
    return kwargs


class Synthesizer(nn.Module):
    """so-vits-svc 4.1 synthesizer.

    Build it from a config with :meth:`from_config`. The keyword arguments are :class:`NetConfig`'s fields
    (defaults: so-vits-svc 4.1) plus what the data decides: ``spec_channels`` (filter_length // 2 + 1),
    ``ssl_dim`` (unit dimension), ``n_speakers``, ``sampling_rate``, ``hop_length`` (used by the DDSP
    decoder; NSF-HiFiGAN's hop is the product of ``upsample_rates``) and ``segment_size``, the training
    segment in frames. ``source_sampling_rate`` (None: ``sampling_rate``) is the rate of NSF-HiFiGAN's sine
    source, see :class:`NetConfig`. ``vocoder_name`` is so-vits-svc's, and only ``nsf-hifigan`` is implemented.
    """

    #: so-vits-svc's F0 -> pitch-embedding index mapping (:func:`svc_pl.layers.f0.f0_to_coarse`): "4.1", or
    #: "4.0", which :func:`svc_pl.compat.load_sovits` sets for a 4.0 config.json so 4.0 models sound as in 4.0
    coarse_pitch: CoarsePitch = "4.1"

    def __init__(self, spec_channels: int = 1025, segment_size: int = 20,
                 inter_channels: int = _NET.inter_channels, hidden_channels: int = _NET.hidden_channels,
                 filter_channels: int = _NET.filter_channels, n_heads: int = _NET.n_heads,
                 n_layers: int = _NET.n_layers, kernel_size: int = _NET.kernel_size,
                 p_dropout: float = _NET.p_dropout, resblock: Literal["1", "2"] = _NET.resblock,
                 resblock_kernel_sizes: Sequence[int] = tuple(_NET.resblock_kernel_sizes),
                 resblock_dilation_sizes: Sequence[Sequence[int]] = tuple(map(tuple, _NET.resblock_dilation_sizes)),
                 upsample_rates: Sequence[int] = tuple(_NET.upsample_rates),
                 upsample_initial_channel: int = _NET.upsample_initial_channel,
                 upsample_kernel_sizes: Sequence[int] = tuple(_NET.upsample_kernel_sizes),
                 gin_channels: int = _NET.gin_channels, ssl_dim: int = 768, n_speakers: int = 200,
                 sampling_rate: int = 44100, vol_embedding: bool = _NET.vol_embedding,
                 vocoder_name: Literal["nsf-hifigan"] = "nsf-hifigan",
                 use_depthwise_conv: bool = _NET.use_depthwise_conv,
                 use_automatic_f0_prediction: bool = _NET.use_automatic_f0_prediction,
                 flow_share_parameter: bool = _NET.flow_share_parameter, n_flow_layer: int = _NET.n_flow_layer,
                 n_layers_trans_flow: int = _NET.n_layers_trans_flow,
                 use_transformer_flow: bool = _NET.use_transformer_flow,
                 decoder: Literal["nsf-hifigan", "ddsp"] = _NET.decoder, hop_length: int | None = None,
                 ddsp_hidden: int = _NET.ddsp_hidden, n_harmonics: int = _NET.n_harmonics,
                 n_noise_bands: int = _NET.n_noise_bands, ddsp_envelope_bins: int = _NET.ddsp_envelope_bins,
                 ddsp_noise_steps: int = _NET.ddsp_noise_steps, source_sampling_rate: int | None = None):
        super().__init__()
        if decoder not in ("nsf-hifigan", "ddsp"):
            raise ValueError(f"decoder {decoder!r} is not one of 'nsf-hifigan', 'ddsp'")
        if vocoder_name != "nsf-hifigan":
            raise ValueError(f"vocoder_name {vocoder_name!r} is not supported; svc_pl implements 'nsf-hifigan' "
                             "(the 4.1 default). 'nsf-snake-hifigan' models cannot be loaded yet.")
        self.segment_size = segment_size
        self.decoder = decoder
        self.hop_length = 1
        for r in upsample_rates:
            self.hop_length *= int(r)
        if decoder == "ddsp" and hop_length:
            self.hop_length = int(hop_length)
        self.sampling_rate = sampling_rate
        # the NSF source's rate (so-vits-svc's model.sampling_rate); the DDSP decoder's oscillators use the data's
        self.source_sampling_rate = int(source_sampling_rate or sampling_rate)
        self.gin_channels = gin_channels
        self.n_speakers = n_speakers
        self.ssl_dim = ssl_dim
        self.vol_embedding = vol_embedding
        self.use_automatic_f0_prediction = use_automatic_f0_prediction

        self.emb_g = nn.Embedding(n_speakers, gin_channels)
        if vol_embedding:
            self.emb_vol = nn.Linear(1, hidden_channels)
        self.pre = nn.Conv1d(ssl_dim, hidden_channels, kernel_size=5, padding=2)
        self.enc_p = PriorEncoder(inter_channels, hidden_channels, kernel_size, n_layers, filter_channels, n_heads,
                                    p_dropout)
        if decoder == "ddsp":
            # DDSP decoder on the prior's mean: no posterior encoder and no flow (trained by spectral losses)
            self.dec = DDSPDecoder(inter_channels, sampling_rate, self.hop_length, hidden=ddsp_hidden,
                                   n_harmonics=n_harmonics, n_noise_bands=n_noise_bands, gin_channels=gin_channels,
                                   envelope_bins=ddsp_envelope_bins, noise_steps=ddsp_noise_steps)
            if use_automatic_f0_prediction:
                self.f0_decoder = F0Decoder(1, hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                                            p_dropout, spk_channels=gin_channels)
            self.emb_uv = nn.Embedding(2, hidden_channels)
            return
        self.dec = NSFHiFiGAN(inter_channels, self.source_sampling_rate, upsample_rates, upsample_kernel_sizes,
                              upsample_initial_channel, resblock, resblock_kernel_sizes, resblock_dilation_sizes,
                              gin_channels=gin_channels, padding="sovits", source="sample")
        self.enc_q = PosteriorEncoder(spec_channels, inter_channels, hidden_channels, 5, 1, 16, gin_channels=gin_channels,
                                      depthwise=use_depthwise_conv)
        if use_transformer_flow:
            self.flow = TransformerCouplingBlock(inter_channels, hidden_channels, filter_channels, n_heads,
                                                 n_layers_trans_flow, 5, p_dropout, n_flow_layer,
                                                 gin_channels=gin_channels, share_parameter=flow_share_parameter)
        else:
            self.flow = ResidualCouplingBlock(inter_channels, hidden_channels, 5, 1, n_flow_layer,
                                              gin_channels=gin_channels, share_parameter=flow_share_parameter,
                                              depthwise=use_depthwise_conv)
        if use_automatic_f0_prediction:
            self.f0_decoder = F0Decoder(1, hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout,
                                        spk_channels=gin_channels)
        self.emb_uv = nn.Embedding(2, hidden_channels)

    @classmethod
    def from_config(cls, net: Mapping[str, Any] | NetConfig | None, data: Mapping[str, Any],
                    segment_frames: int = 20) -> Synthesizer:
        """The synthesizer of an architecture (``net``) for a dataset (``data``: at least :data:`DATA_KEYS`).

        The one builder: the training module, the ``.ckpt`` loader, the so-vits-svc loader and the shipped
        bases all build through it. Raises :class:`DecoderHopMismatchError` when an NSF-HiFiGAN decoder's
        upsampling is not the dataset's hop.
        """
        config = NetConfig.from_dict(net)
        hop = int(data["hop_length"])
        if config.upsampling is not None and config.upsampling != hop:
            raise DecoderHopMismatchError(config, hop, int(data["sampling_rate"]))
        return cls(**synthesizer_kwargs(config, data, segment_frames))

    # ----------------------------------------------------------------------------------------------
    def speaker_embedding(self, speaker: SpeakerSpec, batch: int = 1, device=None) -> torch.Tensor:
        """Speaker conditioning g (B, gin, 1) or (B, gin, T).

        ``speaker`` may be an id (int or long tensor (B,)), or float mix weights over the speaker
        table: (S,) or (B, S) for a static mix, (B, S, T) for a mix that changes per frame. Weights
        are used as given (normalise them yourself if they should sum to one).
        """
        device = device or self.emb_g.weight.device
        if not torch.is_tensor(speaker):
            speaker = torch.as_tensor(speaker, device=device)
        speaker = speaker.to(device)
        if not speaker.is_floating_point():
            ids = speaker.reshape(-1)
            if ids.numel() == 1 and batch > 1:
                ids = ids.expand(batch)
            if bool(((ids < 0) | (ids >= self.n_speakers)).any()):
                raise ValueError(f"speaker id {ids.tolist()} out of range: this model has {self.n_speakers} speakers")
            return self.emb_g(ids).unsqueeze(-1)
        weights = speaker.to(self.emb_g.weight.dtype)
        if weights.dim() == 1:
            weights = weights.unsqueeze(0)
        if weights.size(1) != self.n_speakers:
            raise ValueError(f"speaker mix has {weights.size(1)} weights but the model has {self.n_speakers} speakers")
        if weights.dim() == 2:
            return (weights @ self.emb_g.weight).unsqueeze(-1).expand(batch, -1, -1)
        return torch.einsum("bst,sh->bht", weights, self.emb_g.weight)

    def prior_stats(self, c: torch.Tensor, f0: torch.Tensor, uv: torch.Tensor, x_mask: torch.Tensor,
                    vol: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's mean and log-std, each (B, inter_channels, T), before its draw: what ``enc_p`` computes,
        for the exporters that take the noise as an input (ONNX export and the ONNX Runtime backend)."""
        x = self._prior_input(c, uv, x_mask, vol)
        enc = self.enc_p
        x = x + enc.f0_emb(f0_to_coarse(f0, self.coarse_pitch)).transpose(1, 2)
        x = enc.enc_(x * x_mask, x_mask)
        stats = enc.proj(x) * x_mask
        m_p, logs_p = torch.split(stats, enc.out_channels, dim=1)
        return m_p, logs_p

    def _prior_input(self, c: torch.Tensor, uv: torch.Tensor, x_mask: torch.Tensor, vol: torch.Tensor | None):
        x = self.pre(c) * x_mask + self.emb_uv(uv.long()).transpose(1, 2)
        if vol is not None and self.vol_embedding:
            x = x + self.emb_vol(vol[:, :, None]).transpose(1, 2)
        return x

    def _speaker_slice(self, g: torch.Tensor, ids_slice: torch.Tensor) -> torch.Tensor:
        """The training segment of a per-frame speaker conditioning; a static one (B, gin, 1) as it is."""
        return g if g.size(-1) == 1 else slice_segments(g, ids_slice, self.segment_size)

    def forward(self, c: torch.Tensor, f0: torch.Tensor, uv: torch.Tensor, spec: torch.Tensor, g: torch.Tensor,
                c_lengths: torch.Tensor, spec_lengths: torch.Tensor, vol: torch.Tensor | None = None) -> SynthesizerOutput:
        """Training pass.

        Args:
            c: (B, ssl_dim, T) content units at the frame rate.
            f0: (B, T) Hz (unvoiced interpolated); uv: (B, T) voiced flags.
            spec: (B, spec_channels, T) linear magnitude spectrogram.
            g: (B,) speaker ids (or mix weights, see :meth:`speaker_embedding`).
            c_lengths, spec_lengths: (B,) valid frames.
            vol: (B, T) volume, used when the model has ``vol_embedding``.
        """
        g = self.speaker_embedding(g, batch=c.size(0))
        x_mask = sequence_mask(c_lengths, c.size(2)).unsqueeze(1).to(c.dtype)
        x = self._prior_input(c, uv, x_mask, vol)
        pred_lf0 = norm_lf0 = lf0 = None
        if self.use_automatic_f0_prediction:
            lf0 = f0_to_lf0(f0)
            norm_lf0 = normalize_f0(lf0, x_mask, uv)
            pred_lf0 = self.f0_decoder(x, norm_lf0, x_mask, spk_emb=g)
        _, m_p, logs_p, _ = self.enc_p(x, x_mask, f0_to_coarse(f0, self.coarse_pitch))
        if self.decoder == "ddsp":
            h_slice, pitch_slice, ids_slice = rand_slice_segments_with_pitch(m_p, f0, c_lengths, self.segment_size)
            uv_slice = slice_pitch_segments(uv, ids_slice, self.segment_size)
            audio = self.dec(h_slice, pitch_slice, uv_slice, g=self._speaker_slice(g, ids_slice))
            return SynthesizerOutput(audio, ids_slice, x_mask, None, None, m_p, logs_p, None, None, pred_lf0, norm_lf0,
                                     lf0)
        z, m_q, logs_q, spec_mask = self.enc_q(spec, spec_lengths, g=g)
        z_p = self.flow(z, spec_mask, g=g)
        z_slice, pitch_slice, ids_slice = rand_slice_segments_with_pitch(z, f0, spec_lengths, self.segment_size)
        audio = self.dec(z_slice, f0=pitch_slice, g=self._speaker_slice(g, ids_slice))
        return SynthesizerOutput(audio, ids_slice, spec_mask, z, z_p, m_p, logs_p, m_q, logs_q, pred_lf0, norm_lf0, lf0)

    @torch.no_grad()
    def infer(self, c: torch.Tensor, f0: torch.Tensor, uv: torch.Tensor, speaker: SpeakerSpec,
              noise_scale: float = 0.35, seed: int | None = 52468, predict_f0: bool = False,
              vol: torch.Tensor | None = None, decode_window: int = 0,
              decode_frames: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert content + pitch to audio in the voice of ``speaker``.

        Args:
            c: (B, ssl_dim, T) units; f0: (B, T) Hz; uv: (B, T) voiced flags.
            speaker: id(s) or mix weights (see :meth:`speaker_embedding`).
            noise_scale: std multiplier of the prior sample.
            seed: as upstream, the random state is seeded with this at the start, so the same inputs
                give the same audio; the caller's random state is restored afterwards. Each row of a batch draws
                the numbers it would draw alone (CPU and CUDA), so batching does not change a clip's audio.
                None: not seeded.
            predict_f0: replace ``f0`` by the F0 decoder's prediction.
            vol: (B, T) volume for models with ``vol_embedding``.
            decode_window: if > 0, run the decoder in windows of this many frames (plus its receptive
                field on both sides, see :meth:`NSFHiFiGAN.decode_windowed`): the same audio up to float
                rounding, one kernel shape for every input length, and a small working set.
            decode_frames: with ``decode_window``, decode only frames ``(lo, hi)``: the audio returned is
                that slice of the full result, (B, 1, (hi - lo) * hop), and the rest is not computed.
        Returns:
            (audio (B, 1, T * hop), the f0 used (B, T)).
        """
        rng = torch.random.fork_rng(devices=[c.device] if c.device.type == "cuda" else [], enabled=seed is not None)
        with rng if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            # batched: each row draws what it would alone, so batching never changes a clip's audio
            rows = rows_seeded(seed, c.size(0)) if seed is not None and c.size(0) > 1 else contextlib.nullcontext()
            with rows:
                return self._infer(c, f0, uv, speaker, noise_scale, predict_f0, vol, decode_window, decode_frames)

    def _infer(self, c, f0, uv, speaker, noise_scale, predict_f0, vol, decode_window=0, decode_frames=None):
        g = self.speaker_embedding(speaker, batch=c.size(0), device=c.device)
        x_mask = torch.ones(c.size(0), 1, c.size(2), dtype=c.dtype, device=c.device)
        x = self._prior_input(c, uv, x_mask, vol)
        if self.use_automatic_f0_prediction and predict_f0:
            norm_lf0 = normalize_f0(f0_to_lf0(f0), x_mask, uv, random_scale=False)
            f0 = lf0_to_f0(self.f0_decoder(x, norm_lf0, x_mask, spk_emb=g))
        z_p, m_p, _, _ = self.enc_p(x, x_mask, f0_to_coarse(f0, self.coarse_pitch), noise_scale=noise_scale)
        if self.decoder == "ddsp":
            audio = self.dec(m_p, f0, uv.to(m_p.dtype), g=g)
            if decode_frames is not None:
                lo, hi = decode_frames
                audio = audio[..., lo * self.hop_length:hi * self.hop_length]
            return audio, f0
        z = self.flow(z_p, x_mask, g=g, reverse=True)
        decode = self.inference_decoder(z)
        har_source = self.dec.m_source(f0, self.dec.upp)
        if decode_window > 0:
            return self.dec.decode_windowed(z, har_source, g, window=decode_window, frames=decode_frames,
                                            decode=decode), f0
        if decode_frames is not None:
            raise ValueError("decode_frames needs decode_window > 0")
        return decode(z, har_source, g), f0

    def inference_decoder(self, z: torch.Tensor):
        """What decodes ``z`` at inference: on a CPU, the channels-last 2-D copy of the NSF-HiFiGAN generator
        (:class:`~svc_pl.layers.nsf_planar.PlanarDecoder`, 1.3-2.9x faster there) in the precision in force
        (bfloat16 under CPU autocast, else the weights'); elsewhere, or while training, ``dec.decode``. The copy is
        made on first use and again whenever the generator's weights have changed since."""
        if self.training or z.device.type != "cpu" or torch.is_grad_enabled():
            return self.dec.decode
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else self.dec.conv_pre.weight.dtype
        planar = planar_decoder(self.dec, dtype) if dtype in (torch.float32, torch.bfloat16) else None
        return planar if planar is not None else self.dec.decode

    def prepare_for_inference(self) -> Synthesizer:
        """Eval mode with weight norm folded into plain weights (same outputs, less work per call)."""
        self.eval()
        remove_all_weight_norm(self)
        return self

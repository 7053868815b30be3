"""Whole-file voice conversion, pure and in memory: array in, array out.

The input is resampled once to the model rate and once to the content encoder's 16 kHz, split at
silences (the seed's slicer), and every voiced chunk is converted with ``pad_seconds`` of silence on
both sides and trimmed back; silent chunks stay silent, so the output has the input's duration.
Long voiced chunks are cut into clips of at most ``clip_seconds`` (or ``max_chunk_seconds`` when
no forced clip length is set) that overlap by ``crossfade_seconds`` and are cross-faded, so time
stays linear in length. Clips are padded to a few bucket lengths, decoded in fixed windows and
emitted in time order as soon as they are final (:meth:`Converter.iter_convert`), so peak memory
does not grow with the input beyond the input itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from svc_pl.errors import UserFacingError
from svc_pl.infer.loading import VoiceModel
from svc_pl.infer.options import DECODE_WINDOW, OPTION_GROUPS, ConvertOptions  # noqa: F401  (part of this module's API)
from svc_pl.infer.runtime import release_free_heap, resolve_precision, warn_if_bf16_is_emulated
from svc_pl.infer.speakers import Speakers
from svc_pl.infer.speakers import per_frame as speaker_per_frame
from svc_pl.infer.speakers import stack as stack_speakers
from svc_pl.infer.unit_match import UnitMatcher

LOG = logging.getLogger(__name__)
PathLike = str | os.PathLike
_SILENCE_BLOCK = 1 << 20  # samples of silence emitted at a time between converted pieces


@dataclass
class _Piece:
    start: int  # in model-rate samples
    end: int
    overlap: int  # samples at its start that overlap the previous piece (cross-faded)


class _PieceInputs(NamedTuple):
    """What the synthesizer takes for one padded piece of T frames."""

    units: torch.Tensor  # (C, T)
    f0: torch.Tensor  # (T,) Hz, transposed
    voiced: torch.Tensor  # (T,) 0/1
    volume: torch.Tensor  # (T,)
    speaker: int | torch.Tensor  # an id, (S,) mix weights or (1, S, T) keyframed weights


class Converter:
    """Converts whole recordings with a loaded :class:`VoiceModel` and content encoder.

    Args:
        model: the voice model.
        content_encoder: a :class:`svc_pl.data.content.ContentEncoder` matching the model's units.
        device: where the synthesizer and encoder run.
        enhancer: optional :class:`svc_pl.infer.enhancer.Enhancer`.
        cluster: optional :class:`svc_pl.infer.retrieval.ClusterModel`.
        index: optional :class:`svc_pl.infer.retrieval.FeatureIndex`.
        diffusion: optional :class:`svc_pl.infer.diffusion.DiffusionStage`, used with ``shallow_diffusion`` or
            ``only_diffusion`` (then ``model`` is its :meth:`~svc_pl.infer.diffusion.DiffusionStage.voice_model`).
        unit_stats: per-speaker unit statistics for ``match_units`` (default: the model's own, when it has them).
    """

    def __init__(self, model: VoiceModel, content_encoder, device: str | torch.device = "cpu", enhancer=None,
                 cluster=None, index=None, diffusion=None, unit_stats: dict | None = None):
        self.model = model
        self.speakers = Speakers(model)
        self.diffusion = diffusion
        self.encoder = model.wrap_encoder(content_encoder).to(device).eval()
        self.device = torch.device(device)
        self.enhancer = enhancer
        self.cluster = cluster
        self.index = index
        stats = unit_stats if unit_stats is not None else model.unit_stats
        self.unit_matcher = UnitMatcher(stats, "the unit statistics given" if unit_stats is not None else
                                        model.source) if stats else None
        self._f0 = {}
        self._precision_checked: set[str] = set()
        from svc_pl.infer.onnx_backend import SynthesizerBackends

        self.backends = SynthesizerBackends(model, self.device)
        self.timings: dict[str, float] = defaultdict(float)

    @classmethod
    def from_files(cls, model: PathLike | None, content_encoder: PathLike | None = None, *, encoder: str | None = None,
                   random_encoder: bool = False, config: PathLike | None = None, device: str | torch.device = "cpu",
                   options: ConvertOptions | None = None, enhancer: PathLike | None = None,
                   cluster_model: PathLike | None = None, feature_index: PathLike | None = None,
                   unit_stats: PathLike | None = None) -> Converter:
        """The front door: a converter from files, with everything a conversion needs loaded and checked before any
        audio is read (the voice model, its content encoder and their unit sizes, the diffusion stage, the enhancer,
        the cluster model and the feature index). ``svc-pl infer``, ``svc-pl live`` and the web UI build theirs here
        (as :func:`svc_pl.infer.build.build_converter`, the same callable).

        Example::

            conv = Converter.from_files("runs/tiny/.../last.ckpt", "whisper-tiny.en.pt")
            out = conv.convert(audio, sr, ConvertOptions(speaker="alto", transpose=2))
            # audio (T,) at any rate sr -> out (T',) float32 at conv.model.sampling_rate, of the same duration

        Args:
            model: svc_pl ``.ckpt`` or so-vits-svc ``G_*.pth`` (None only with ``options.only_diffusion``).
            content_encoder: weights of the content encoder the model was trained with (see
                :func:`svc_pl.data.content.load_content_encoder`); unused with ``random_encoder``.
            encoder: content-encoder name (default: the model's ``speech_encoder``).
            random_encoder: fixed random encoder weights (models trained with ``--random-encoder``, tests).
            config: so-vits-svc ``config.json`` (default: beside the model).
            options: the conversion settings; those that pick files (diffusion model, vocoder) and the speakers the
                diffusion stage must know are read here.
            enhancer, cluster_model, feature_index: optional openvpi vocoder folder, k-means file, index folder.
            unit_stats: the ``unit_stats.pt`` of ``svc-pl train-index``, or a dataset made by ``svc-pl preprocess``:
                the per-speaker unit statistics ``match_units`` uses for models whose checkpoint has none
                (so-vits-svc models, checkpoints from before they were stored).

        Raises:
            UserFacingError: a file is missing or unsafe, or the model and the encoder give different unit sizes.
        """
        from svc_pl.data.content import load_content_encoder, random_content_encoder
        from svc_pl.infer.diffusion import diffusion_stage
        from svc_pl.infer.loading import load_voice_model

        opts = options or ConvertOptions()
        device = torch.device(device)
        if opts.only_diffusion:  # no synthesizer: the diffusion model's yaml names the encoder
            from svc_pl.compat.diffusion import read_diffusion_config
            from svc_pl.infer.diffusion import diffusion_config_path

            voice = None
            name = encoder or read_diffusion_config(diffusion_config_path(opts)).encoder
        else:
            voice = load_voice_model(model, config, device=device)
            name = encoder or voice.content_encoder
        units = random_content_encoder(name) if random_encoder else load_content_encoder(name, content_encoder,
                                                                                         device=device)
        if voice is not None and int(units.dim) != int(voice.net.ssl_dim):
            raise UserFacingError(
                f"{model}: the model takes {voice.net.ssl_dim}-d units ({voice.content_encoder}) but the content "
                f"encoder {content_encoder or name!r} gives {units.dim}-d units: pass the encoder the model was "
                "trained with (--content-encoder, and --encoder if the name differs)")
        diffusion = diffusion_stage(opts, voice, int(units.dim), device, enhancer=enhancer)
        voice = diffusion.voice_model() if voice is None else voice
        enhancer_net = cluster = index = None
        if enhancer and diffusion is None:
            from svc_pl.infer.enhancer import Enhancer

            enhancer_net = Enhancer.from_pretrained(enhancer, device=device)
        if cluster_model:
            from svc_pl.infer.cluster import ClusterModel

            cluster = ClusterModel.load(cluster_model)
        if feature_index:
            from svc_pl.infer.retrieval import FeatureIndex

            index = FeatureIndex.load(feature_index)
        stats = None
        if unit_stats:
            from svc_pl.data.unit_stats import read_unit_stats

            stats = read_unit_stats(unit_stats)
        return cls(voice, units, device=device, enhancer=enhancer_net, cluster=cluster, index=index,
                   diffusion=diffusion, unit_stats=stats)

    # ------------------------------------------------------------------ helpers
    def _f0_extractor(self, opts: ConvertOptions):
        key = (opts.f0_method, opts.f0_threshold, opts.f0_model_path)
        if key not in self._f0:
            from svc_pl.data.pitch import get_f0_extractor

            self._f0[key] = get_f0_extractor(opts.f0_method, sample_rate=self.model.sampling_rate,
                                             hop_length=self.model.hop_length, device=self.device,
                                             model_path=opts.f0_model_path, threshold=opts.f0_threshold)
        return self._f0[key]

    def _pieces(self, start: int, end: int, opts: ConvertOptions) -> list[_Piece]:
        sr = self.model.sampling_rate
        clip = opts.clip_seconds if opts.clip_seconds > 0 else opts.max_chunk_seconds
        per = max(int(clip * sr), self.model.hop_length)
        fade = opts.crossfade_seconds if opts.clip_seconds > 0 else max(opts.crossfade_seconds, 0.2)
        lg = min(int(fade * sr), per // 2)
        if end - start <= per and opts.clip_seconds <= 0:
            return [_Piece(start, end, 0)]
        pieces = []
        for s in range(start, end, per):
            a = max(start, s - lg) if s > start else s
            pieces.append(_Piece(a, min(end, s + per), s - a))
        return pieces

    # ------------------------------------------------------------------ conversion
    @torch.inference_mode()
    def convert(self, audio: np.ndarray, sr: int, opts: ConvertOptions | None = None) -> np.ndarray:
        """Convert ``audio`` (T,) float at ``sr`` (any rate). Returns float32 audio at the model rate,
        of the input's duration."""
        opts = opts or ConvertOptions()
        y, y16, pieces = self._prepare(audio, sr, opts)
        out = np.empty(len(y), dtype=np.float32)
        pos = 0
        for block in self._blocks(y, y16, pieces, opts):
            out[pos:pos + len(block)] = block
            pos += len(block)
        return out

    @torch.inference_mode()
    def iter_convert(self, audio: np.ndarray, sr: int, opts: ConvertOptions | None = None) -> Iterator[np.ndarray]:
        """:meth:`convert` as consecutive float32 blocks at the model rate, in time order (their
        concatenation is what :meth:`convert` returns). The output is never held whole, so a writer
        that takes the blocks as they come keeps memory flat however long the recording."""
        opts = opts or ConvertOptions()
        y, y16, pieces = self._prepare(audio, sr, opts)
        yield from self._blocks(y, y16, pieces, opts)

    def _prepare(self, audio: np.ndarray, sr: int, opts: ConvertOptions):
        """Resample once to the model rate and once to 16 kHz, slice, and cut voiced chunks into pieces."""
        from svc_pl.data.audio import resample
        from svc_pl.data.slicer import Slicer

        if opts.precision not in self._precision_checked:
            warn_if_bf16_is_emulated(opts.precision, self.device)
            self._precision_checked.add(opts.precision)
        msr = self.model.sampling_rate
        t0 = time.perf_counter()
        y = resample(np.asarray(audio, dtype=np.float32), sr, msr)
        y16 = resample(np.asarray(audio, dtype=np.float32), sr, 16000)
        self.timings["resample"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        kept_ms = max(20, int(opts.max_silence_kept * 1000))
        slicer = Slicer(msr, threshold=opts.slice_db, max_sil_kept=kept_ms,
                        min_length=max(300, int(opts.min_chunk_seconds * 1000)))
        chunks = slicer.slice(y) if len(y) > 0 else []
        pieces = [p for c in chunks if not c.silent for p in self._pieces(c.start, c.end, opts)]
        self.timings["slicing"] += time.perf_counter() - t0
        if opts.match_units > 0:
            self.check_match_units(opts)
            self.unit_matcher.reset()  # a new input: its own statistics
        return y, y16, pieces

    def check_match_units(self, opts: ConvertOptions) -> None:
        """Raise a :class:`UserFacingError` saying what to pass when ``opts.match_units`` cannot be honoured."""
        if opts.match_units <= 0:
            return
        if self.unit_matcher is None:
            raise UserFacingError(
                f"{self.model.source}: --match-units needs the unit statistics of the speakers' training data, "
                "which this model does not store (a so-vits-svc model, or a checkpoint from before svc_pl "
                "stored them): pass --unit-stats with the unit_stats.pt of `svc-pl train-index` or the dataset made by "
                "`svc-pl preprocess` it was trained on")
        self.unit_matcher.target(self.speakers.target(opts))

    def _blocks(self, y: np.ndarray, y16: np.ndarray, pieces: list[_Piece],
                opts: ConvertOptions) -> Iterator[np.ndarray]:
        """Synthesise the pieces in time order and yield the output as soon as it is final.

        Consecutive pieces with the same padded length share a batch (up to ``batch_size``). A piece's
        first ``overlap`` samples are cross-faded with the previous piece's tail, so the output is final
        up to the start of the next piece; silence between pieces is emitted in bounded blocks."""
        msr, hop = self.model.sampling_rate, self.model.hop_length
        pad = int(round(opts.pad_seconds * msr / hop)) * hop
        bucket = max(1, int(round(opts.length_bucket_seconds * msr / hop))) * hop
        batch = opts.batch_size if opts.batch_size > 0 else (1 if self.device.type == "cpu" else 8)

        def padded(p: _Piece) -> int:
            return -(-(p.end - p.start + 2 * pad) // bucket) * bucket

        emitted = 0  # samples yielded so far
        buf = np.zeros(0, dtype=np.float32)  # the output from ``emitted`` on that is not final yet
        i = 0
        while i < len(pieces):
            total = padded(pieces[i])
            j = i + 1
            while j < len(pieces) and j - i < batch and padded(pieces[j]) == total:
                j += 1
            group = pieces[i:j]
            segs = self._synthesize_group(group, y, y16, pad, total, opts)
            release_free_heap()
            for p, seg in zip(group, segs):
                # silence before the piece goes out in bounded blocks, the piece goes into ``buf``
                while not len(buf) and p.start - emitted > _SILENCE_BLOCK:
                    yield np.zeros(_SILENCE_BLOCK, dtype=np.float32)
                    emitted += _SILENCE_BLOCK
                if p.end - emitted > len(buf):
                    buf = np.concatenate([buf, np.zeros(p.end - emitted - len(buf), dtype=np.float32)])
                region = buf[p.start - emitted:p.end - emitted]
                if p.overlap:
                    ramp = np.linspace(0.0, 1.0, p.overlap, dtype=np.float32)
                    region[: p.overlap] = region[: p.overlap] * (1 - ramp) + seg[: p.overlap] * ramp
                region[p.overlap:] = seg[p.overlap:]
            final = pieces[j].start if j < len(pieces) else len(y)  # the next piece may fade into the rest
            take = min(len(buf), final - emitted)
            if take > 0:
                yield buf[:take]
                buf, emitted = buf[take:], emitted + take
            i = j
        if len(buf):
            yield buf
            emitted += len(buf)
        while emitted < len(y):
            n = min(_SILENCE_BLOCK, len(y) - emitted)
            yield np.zeros(n, dtype=np.float32)
            emitted += n

    def _synthesize_group(self, group: list[_Piece], y: np.ndarray, y16: np.ndarray, pad: int, total: int,
                          opts: ConvertOptions) -> list[np.ndarray]:
        """Convert pieces whose padded length is ``total`` samples (``pad`` of silence before, the rest
        after) as one batch; returns each piece's audio (its length).

        Per piece: F0 (:meth:`_pitch`), units with cluster/index mixing (:meth:`_units`), volume and
        speaker; then for the batch: synthesis (:meth:`_decode`), shallow diffusion (:meth:`_diffuse`) or the
        optional enhancer (:meth:`_enhance`), and trimming with loudness matching (:meth:`_trim`). With
        ``only_diffusion`` the diffusion model and vocoder replace the synthesizer."""
        inputs = [self._piece_inputs(p, y, y16, pad, total, opts) for p in group]
        t0 = time.perf_counter()
        if self._diffusion_on(opts) and opts.only_diffusion:
            audio, f0_used, offset = self._diffuse(None, None, inputs, opts), None, pad
        else:
            audio, f0_used, offset = self._decode(inputs, group, pad, opts)
            if self._diffusion_on(opts):
                audio = self._diffuse(audio, f0_used, inputs, opts)
            elif self.enhancer is not None:
                audio = self._enhance(audio, f0_used, opts)
        audio = audio.cpu().numpy()
        self.timings["synthesis"] += time.perf_counter() - t0
        return [self._trim(audio[i], p, offset, y, opts) for i, p in enumerate(group)]

    def _piece_inputs(self, p: _Piece, y: np.ndarray, y16: np.ndarray, pad: int, total: int,
                      opts: ConvertOptions) -> _PieceInputs:
        """The synthesizer's inputs for piece ``p`` padded to ``total`` samples (``pad`` before)."""
        from svc_pl.data.audio import frame_volume

        hop = self.model.hop_length
        n_frames = total // hop
        seg = np.zeros(total, np.float32)
        seg[pad:pad + p.end - p.start] = y[p.start:p.end]
        f0, voiced = self._pitch(seg, n_frames, opts)
        units = self._units(p, y16, pad, total, n_frames, opts)
        return _PieceInputs(units=units, f0=f0, voiced=voiced,
                            volume=torch.from_numpy(frame_volume(seg, hop, n_frames)),
                            speaker=self.speakers.for_piece(opts, p.start - pad, n_frames))

    def _pitch(self, seg: np.ndarray, n_frames: int, opts: ConvertOptions) -> tuple[torch.Tensor, torch.Tensor]:
        """F0 of the padded segment ``seg`` (samples,), transposed, and its voiced flags: both (n_frames,)."""
        t0 = time.perf_counter()
        track = self._f0_extractor(opts).compute(seg, n_frames=n_frames)
        f0 = torch.from_numpy(track.f0).float() * 2 ** (opts.transpose / 12)
        self.timings["f0"] += time.perf_counter() - t0
        return f0, torch.from_numpy(track.voiced).float()

    def _units(self, p: _Piece, y16: np.ndarray, pad: int, total: int, n_frames: int,
               opts: ConvertOptions) -> torch.Tensor:
        """Content units (C, n_frames) of piece ``p``: the same padded span cut from the 16 kHz audio, encoded,
        stretched to the model's frames, then mixed with cluster centres / retrieved features."""
        from svc_pl.data.content import units_to_frames
        from svc_pl.data.unit_window import HOP16

        msr = self.model.sampling_rate
        t0 = time.perf_counter()
        a16, b16 = int(p.start * 16000 / msr), int(p.end * 16000 / msr)
        pad16 = int(pad * 16000 / msr)
        n16 = int(total * 16000 / msr)
        # windowed units: encode from the last chunk boundary of the recording's grid at or before the padded
        # span, so a piece's units are the ones a stream of the same recording makes (chunk k of the stream is
        # samples [k C, (k+1) C) of the input; a grid that started at the padding would give other windows)
        window = getattr(self.encoder, "window", None)
        lead = (a16 - pad16) % (window.chunk_frames * HOP16) if window is not None else 0
        seg16 = np.zeros(lead + n16, np.float32)
        part = y16[a16:b16][: n16 - pad16]
        seg16[lead + pad16:lead + pad16 + len(part)] = part
        with self._autocast(opts):
            c = self.backends.encode(opts, self.encoder, torch.from_numpy(seg16).to(self.device).unsqueeze(0)).float()
        c = units_to_frames(c[..., lead // HOP16:], n_frames, mode=self.model.unit_interpolate_mode)
        if opts.match_units > 0:  # the piece's own frames (not its padding) join the input's statistics
            hop = self.model.hop_length
            self.unit_matcher.observe(c[0, :, pad // hop:(pad + p.end - p.start) // hop])
            c = self.unit_matcher.apply(c, self.speakers.target(opts), opts.match_units)
        c = self._mix_units(c, opts)
        self.timings["units"] += time.perf_counter() - t0
        return c[0]

    def _mix_units(self, c: torch.Tensor, opts: ConvertOptions) -> torch.Tensor:
        """Blend units (1, C, T) with the target speaker's k-means centres and/or retrieved features."""
        name = self.speakers.name(opts)
        if self.cluster is not None and opts.cluster_ratio > 0:
            c = self.cluster.mix(c, name, opts.cluster_ratio)
        if self.index is not None and opts.retrieval_ratio > 0:
            c = self.index.mix(c[0], name, opts.retrieval_ratio).unsqueeze(0)
        return c

    def _decode(self, inputs: list[_PieceInputs], group: list[_Piece], pad: int,
                opts: ConvertOptions) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Run the synthesizer on the batch.

        Returns:
            audio (B, samples) fp32, the F0 it used (B, T), and the sample of ``audio`` where each piece
            starts (``pad``, or 0 when only the piece's frames were decoded).
        """
        hop, net, dev = self.model.hop_length, self.model.net, self.device
        c, f0, uv, vol = (torch.stack([getattr(x, k) for x in inputs]).to(dev)
                          for k in ("units", "f0", "voiced", "volume"))
        speaker = stack_speakers([x.speaker for x in inputs]).to(dev)
        # with windowed decoding only the frames kept are decoded (the padding is not: the decoder's
        # receptive field is a fraction of it); the enhancer wants the whole padded clip
        frames = None
        offset = pad
        window = self.backends.decode_window(opts)
        if window > 0 and self.enhancer is None and not self._diffusion_on(opts):
            frames = (pad // hop, min(c.size(-1), -(-(pad + max(p.end - p.start for p in group)) // hop)))
            offset = 0
        with self._autocast(opts):
            audio, f0_used = self.backends.infer(opts, c, f0, uv, speaker, noise_scale=opts.noise_scale,
                                                 seed=opts.seed, predict_f0=opts.auto_predict_f0,
                                                 vol=vol if net.vol_embedding else None,
                                                 decode_window=window, decode_frames=frames)
        return audio[:, 0].float(), f0_used, offset

    def _enhance(self, audio: torch.Tensor, f0_used: torch.Tensor, opts: ConvertOptions) -> torch.Tensor:
        """Re-vocode each row of ``audio`` (B, samples) with the enhancer, back at the model rate."""
        msr, hop = self.model.sampling_rate, self.model.hop_length
        enhanced = []
        for i in range(audio.shape[0]):
            # its NSF source draws noise: seeded per clip as the synthesizer is, so a conversion repeats exactly
            with torch.random.fork_rng(devices=[audio.device] if audio.device.type == "cuda" else [],
                                       enabled=opts.seed is not None):
                if opts.seed is not None:
                    torch.manual_seed(opts.seed)
                e, esr = self.enhancer.enhance(audio[i:i + 1], msr, f0_used[i:i + 1, :, None], hop,
                                               adaptive_key=opts.enhancer_adaptive_key)
            if esr != msr:
                from svc_pl.data.audio import resample

                e = torch.from_numpy(resample(e.cpu().numpy()[0], esr, msr)).unsqueeze(0)
            enhanced.append(e[0, : audio.shape[1]].to(audio))
        return torch.stack(enhanced)

    def _diffusion_on(self, opts: ConvertOptions) -> bool:
        return self.diffusion is not None and opts.uses_diffusion

    def _diffuse(self, audio: torch.Tensor | None, f0_used: torch.Tensor | None, inputs: list[_PieceInputs],
                 opts: ConvertOptions) -> torch.Tensor:
        """Shallow diffusion of the synthesizer's ``audio`` (B, samples) with the F0 it used (B, T), or with
        ``audio`` None diffusion from noise on the source's F0; rendered by the vocoder: (B, samples) fp32.
        The volume is the source's, or the synthesized audio's for a synthesizer without ``vol_embedding``
        (as so-vits-svc 4.1; :mod:`svc_pl.infer.diffusion`)."""
        from svc_pl.infer.diffusion import frame_volumes, reencode

        dev, n = self.device, inputs[0].f0.shape[-1]
        units, f0, vol = (torch.stack([getattr(x, k) for x in inputs]).to(dev) for k in ("units", "f0", "volume"))
        if audio is not None and not self.model.net.vol_embedding:
            vol = frame_volumes(audio, self.model.hop_length, n)
        if audio is not None and opts.second_encoding:
            units = reencode(audio, self.model.sampling_rate, self.encoder, n, self.model.unit_interpolate_mode)
        speaker = torch.cat([speaker_per_frame(x.speaker, self.model.net.n_speakers, n) for x in inputs]).to(dev)
        return self.diffusion.render(units, f0_used.float() if f0_used is not None else f0, vol, speaker,
                                     k_step=opts.k_step, method=opts.diffusion_method, speedup=opts.diffusion_speedup,
                                     seed=opts.seed, audio=audio, autocast=self._autocast(opts),
                                     decode_window=DECODE_WINDOW["torch"] if opts.decode_window is None
                                     else opts.decode_window)

    def _trim(self, audio: np.ndarray, p: _Piece, offset: int, y: np.ndarray, opts: ConvertOptions) -> np.ndarray:
        """Piece ``p``'s samples out of its padded output ``audio`` (samples,), loudness-matched to the input."""
        seg = audio[offset:offset + (p.end - p.start)]
        if opts.loudness_mix != 1:
            seg = match_loudness(y[p.start:p.end], seg, self.model.sampling_rate, opts.loudness_mix)
        return seg.astype(np.float32, copy=False)

    def _autocast(self, opts: ConvertOptions):
        bf16 = resolve_precision(opts.precision, self.device) == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16)


def match_loudness(source: np.ndarray, output: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Impose the source's RMS envelope on the output: ``rate`` 1 keeps the output's, 0 takes the source's
    (so-vits-svc's loudness envelope adjustment, 0.5 s frames)."""
    import librosa

    frame = sr // 2 * 2
    n = len(output)
    rms1 = librosa.feature.rms(y=source, frame_length=frame, hop_length=sr // 2)[0]
    rms2 = librosa.feature.rms(y=output, frame_length=frame, hop_length=sr // 2)[0]
    x = np.linspace(0, 1, n)
    rms1 = np.interp(x, np.linspace(0, 1, len(rms1)), rms1)
    rms2 = np.maximum(np.interp(x, np.linspace(0, 1, len(rms2)), rms2), 1e-6)
    return output * (rms1 ** (1 - rate)) * (rms2 ** (rate - 1))

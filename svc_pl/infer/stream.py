"""Live conversion: :class:`StreamConverter`, a pure ``process(block) -> block`` object with its state inside.

Time runs on three clocks that are kept *index-aligned*: device samples, model-rate samples and 16 kHz samples
(the stateful resamplers of :mod:`svc_pl.infer.resample` add no delay, they only wait for their filter's
support). The model-rate stream is converted in fixed blocks of ``N`` samples (whole model frames). Block ``k``
covers model samples ``[k N, (k+1) N)``; it is converted once the input has arrived up to ``(k+1) N`` plus a
short look-ahead (the crossfade and alignment span, a F0 margin and, for windowed units, the unit window's
look-ahead). The output sample made from input sample ``n`` leaves :meth:`StreamConverter.process` at device
index ``n + L``, where ``L`` is the smallest constant delay at which the output is always ready: the object
computes it once from the sample counts and reports it as :attr:`StreamConverter.latency_seconds`.

Per block: F0 only for the frames not yet final (plus a left margin), cached; units
(:mod:`svc_pl.infer.stream_units`) from :class:`~svc_pl.data.unit_window.StreamingUnits` for models trained on
windowed units (the same units as offline), else from one encoder call on a left context window (so-vits-svc models
were not trained for that: their units differ from the offline ones at the newest frames); retrieval/cluster mixing
for new frames only; the synthesizer
renders the block, the crossfade and the alignment-search span and ``lookahead_seconds`` more (the synthesizer's
convolutions see a few frames ahead) with ``context_seconds`` of left context for its prior; a DDSP synthesizer's
harmonics continue the phase of the previous render, as one offline render's do. Joins are aligned by normalised
cross-correlation over ``search_seconds`` (SOLA) and cross-faded: equal power where the two renders are
uncorrelated, equal gain where they agree (mixed by the correlation found).
A block that takes longer than its duration is a deadline miss: the next blocks are dropped (the output fades
out over the crossfade and stays silent, the stale input is never converted), so no backlog builds and the delay
never changes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
import torch

from svc_pl.errors import UserFacingError
from svc_pl.infer.converter import Converter, ConvertOptions
from svc_pl.infer.loading import VoiceModel
from svc_pl.infer.options import DECODE_WINDOW
from svc_pl.infer.resample import StreamResampler
from svc_pl.infer.speakers import stack as stack_speakers
from svc_pl.infer.stream_units import LiveUnits, Track

LOG = logging.getLogger(__name__)
_F0_LEFT_SECONDS = 0.08  # audio before the first new frame that the F0 tracker sees
_F0_RIGHT_SECONDS = 0.02  # audio after a frame before its F0 is final


class StreamConverter:
    """Converts a live stream block by block with the voice, encoder and options a :class:`Converter` takes.

    Args:
        model: the voice model (``model.unit_window`` set: units as trained, else a left-context window).
        content_encoder: the content encoder the model was trained with.
        options: the conversion settings (:class:`ConvertOptions`; the slicer, clip and diffusion settings do not
            apply to a stream).
        device_rate: the rate of the blocks given to :meth:`process` and returned by it.
        block_seconds: converted block (rounded to whole model frames, and to whole unit chunks when the model's
            frames are the units' 20 ms).
        context_seconds: left context of the synthesizer's prior and, for models without a unit window, of the
            content encoder.
        crossfade_seconds: the crossfade at each join.
        search_seconds: the span of the join-alignment (SOLA) search, centred on no shift. None: 0 for DDSP
            synthesizers (their renders continue each other's phase, so joins need no shift, and a shift would move
            the block: measured on tiny-base, SOLA's shifts of up to 5 ms delayed the output by 2-4 ms on average),
            10 ms for the others.
        lookahead_seconds: frames rendered after the block and the crossfade (their F0 is final, their units are
            the newest held), so the block's last frames see some of their future as offline; within the default
            80 ms block's latency.
        gate_db: blocks whose input is below this level (dBFS, per frame) are silent; None: no gate.
        drop_late: drop the blocks after a deadline miss (live use); False converts every block (offline checks).
        device: where the models run.
        cluster, index: optional k-means model / feature index, as for :class:`Converter`.
    """

    def __init__(self, model: VoiceModel, content_encoder, options: ConvertOptions | None = None, *,
                 device_rate: int, block_seconds: float = 0.08, context_seconds: float = 1.0,
                 crossfade_seconds: float = 0.01, search_seconds: float | None = None, lookahead_seconds: float = 0.02,
                 gate_db: float | None = -50.0, drop_late: bool = True, device: str | torch.device = "cpu",
                 cluster=None, index=None):
        opts = options or ConvertOptions()
        if opts.uses_diffusion:
            raise UserFacingError("live conversion does not run shallow or only diffusion (it does not fit a "
                                  "block's deadline on a CPU): convert files with svc-pl infer for that")
        self.converter = Converter(model, content_encoder, device=device, cluster=cluster, index=index)
        self.model, self.opts = model, opts
        self.device = torch.device(device)
        self.device_rate = int(device_rate)
        self.gate_db = gate_db
        self.drop_late = drop_late
        msr, hop = model.sampling_rate, model.hop_length
        self.sr, self.hop = msr, hop
        from svc_pl.data.unit_window import HOP16, UnitWindow, WindowedEncoder

        enc = self.converter.encoder
        self.window = enc.window if isinstance(enc, WindowedEncoder) else UnitWindow.from_dict(model.unit_window)
        self.units_per_frame = hop * 16000 / (msr * HOP16)  # unit frames (20 ms) per model frame
        frames = max(1, round(block_seconds * msr / hop))
        # blocks of whole unit chunks where a chunk is a whole number of model frames (4 at hop 320, 8 at hop 160,
        # both 16 kHz): each block's units are then exactly the file's
        chunk = 0.0 if self.window is None else self.window.chunk_frames / self.units_per_frame
        if chunk >= 1 and abs(chunk - round(chunk)) < 1e-9:
            frames = max(round(chunk), round(frames / chunk) * round(chunk))
        self.block_frames = frames
        self.N = frames * hop
        self.cf = max(1, round(crossfade_seconds * msr))
        if search_seconds is None:
            search_seconds = 0.0 if getattr(model.net, "decoder", None) == "ddsp" else 0.01
        self.S2 = max(0, round(search_seconds / 2 * msr))
        self.tail = self.cf + self.S2
        self.f0_right = round(_F0_RIGHT_SECONDS * msr)
        self.ahead_frames = max(0, round(lookahead_seconds * msr / hop))
        # frames rendered after the block: the crossfade and alignment span, and the synthesizer's look-ahead
        self.render_after = -(-self.tail // hop) + self.ahead_frames
        # model samples after the block needed to convert it: the rendered frames after it, and a F0 margin
        self.lookahead = self.render_after * hop + self.f0_right
        self.ctx_frames = max(0, round(context_seconds * msr / hop))
        self.ctx16 = max(HOP16, round(context_seconds * 16000))
        self._units = LiveUnits(self.converter, self.window, sampling_rate=msr, hop=hop, context16=self.ctx16,
                                device=self.device)
        self.device_block = -(-self.N * self.device_rate // msr)  # device samples per block (a device's blocksize)
        self._latency = self._compute_latency()
        self.reset()

    @classmethod
    def from_converter(cls, converter: Converter, options: ConvertOptions | None = None, **kwargs) -> StreamConverter:
        """A stream with the voice, encoder, cluster model and index of a loaded :class:`Converter`."""
        return cls(converter.model, converter.encoder, options, device=converter.device, cluster=converter.cluster,
                   index=converter.index, **kwargs)

    # ------------------------------------------------------------------ public
    @property
    def latency_seconds(self) -> float:
        """The delay between an input sample and the output sample made from it (exact, constant)."""
        return self._latency / self.device_rate

    @property
    def latency_samples(self) -> int:
        return self._latency

    @property
    def block_seconds(self) -> float:
        return self.N / self.sr

    def reset(self) -> None:
        """Forget the stream (buffers, caches, counters); the settings stay."""
        self._rs_model = StreamResampler(self.device_rate, self.sr)
        self._rs16 = StreamResampler(self.device_rate, 16000)
        self._rs_out = StreamResampler(self.sr, self.device_rate)
        self._units.reset()
        self._y = Track()
        self._f0, self._uv = Track(), Track()
        self._phase = Track((), np.float64)  # DDSP harmonics: phase (cycles) before each frame, as last rendered
        self._f0_final = 0  # frames [0, _f0_final) have final F0
        self._out = Track()
        self._received = 0  # device samples in
        self._returned = 0  # device samples out
        self._k = 0  # next block
        self._tail = np.zeros(self.cf, np.float32)  # the previous render after its block, for the crossfade
        if self.opts.match_units > 0:
            self.converter.check_match_units(self.opts)
            self.converter.unit_matcher.reset()
        self._drop = 0
        self.blocks = 0
        self.deadline_misses = 0
        self.dropped_blocks = 0
        self.underruns = 0
        self.compute_seconds: list[float] = []
        self._pending_opts: dict = {}

    def warm_up(self, blocks: int = 3) -> None:
        """Run ``blocks`` blocks of a quiet 220 Hz tone through every stage, then forget them (:meth:`reset`): the
        first calls build the networks' kernels, so without this the first real block misses its deadline."""
        t = np.arange(self.device_block * blocks) / self.device_rate
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        for i in range(blocks):
            self.process(tone[i * self.device_block:(i + 1) * self.device_block])
        self.reset()

    def set(self, **changes) -> None:
        """Change conversion options (any :class:`ConvertOptions` field, or ``gate_db``) from the next block on."""
        names = {f.name for f in dataclasses.fields(ConvertOptions)} | {"gate_db"}
        bad = sorted(set(changes) - names)
        if bad:
            raise UserFacingError(f"unknown option(s) {', '.join(bad)}; settable: {', '.join(sorted(names))}")
        if "speaker" in changes and not isinstance(changes["speaker"], dict):
            self.model.speaker_id(changes["speaker"])
        self._pending_opts.update(changes)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Convert the next input ``block`` (T,) float at the device rate; returns (T,) float32 at the device rate:
        the output from ``latency_seconds`` ago."""
        x = np.asarray(block, np.float32).reshape(-1)
        if self._pending_opts:
            changes = dict(self._pending_opts)
            self._pending_opts.clear()
            self.gate_db = changes.pop("gate_db", self.gate_db)
            self.opts = dataclasses.replace(self.opts, **changes)
        self._received += len(x)
        self._y.append(self._rs_model.push(x))
        self._units.push(self._rs16.push(x))
        while self._ready_blocks(self._y.end, self._rs16.emitted) > self._k:
            self._step()
        a, b = self._returned - self._latency, self._returned - self._latency + len(x)
        if b > self._out.end:
            self.underruns += 1
        out = self._out.get(a, b)
        self._returned += len(x)
        self._out.trim(b)
        return out

    def stats(self) -> dict:
        """The figures ``svc-pl live --stats-json`` writes."""
        t = np.array(self.compute_seconds or [0.0])
        return {"latency_seconds": self.latency_seconds, "block_seconds": self.block_seconds, "blocks": self.blocks,
                "deadline_misses": self.deadline_misses, "dropped_blocks": self.dropped_blocks,
                "block_compute_p50_seconds": float(np.percentile(t, 50)),
                "block_compute_p95_seconds": float(np.percentile(t, 95)),
                "block_compute_max_seconds": float(t.max()), "underruns": self.underruns,
                "device_rate": self.device_rate, "model_rate": self.sr}

    # ------------------------------------------------------------------ timing
    def _ready_blocks(self, n_model: int, n16: int) -> int:
        """Blocks that can be converted once ``n_model`` model-rate and ``n16`` 16 kHz samples have arrived."""
        k = max(0, (n_model - self.lookahead) // self.N)
        if self.window is not None:
            w = self.window
            pad = (w.window_frames - w.chunk_frames - w.lookahead_frames) * 320
            chunks = max(0, (pad + n16 - w.window_frames * 320) // (w.chunk_frames * 320) + 1)
            units = chunks * w.chunk_frames
            # the last frame of block k needs unit floor(((k+1) F - 1) r) < units
            while k > 0 and math.floor(((k * self.block_frames) - 1) * self.units_per_frame + 1e-9) >= units:
                k -= 1
        else:
            while k > 0 and n16 * self.sr < (k * self.N + self.tail) * 16000:
                k -= 1
        return k

    def _compute_latency(self) -> int:
        """The smallest constant delay (device samples) at which every output sample is ready when it is due,
        for blocks of :attr:`device_block` samples: simulated on the sample counts the stream itself uses."""
        d = self.device_block
        rs_m, rs16, rs_o = (StreamResampler(self.device_rate, self.sr), StreamResampler(self.device_rate, 16000),
                            StreamResampler(self.sr, self.device_rate))
        worst = 0
        period = max(64, 4 * (self.sr // math.gcd(self.sr, self.device_rate)) // max(1, self.N // 64) + 64)
        for j in range(1, min(period, 4000) + 1):
            e = j * d
            k = self._ready_blocks(rs_m.available(e), rs16.available(e))
            worst = max(worst, e - rs_o.available(k * self.N))
        return worst

    # ------------------------------------------------------------------ one block
    def _step(self) -> None:
        k = self._k
        self._k += 1
        self.blocks += 1
        if self._drop > 0:
            self._drop -= 1
            self.dropped_blocks += 1
            seg = self._faded_out()
            self._skip_features(k)
        else:
            t0 = time.perf_counter()
            seg = self._convert_block(k)
            dt = time.perf_counter() - t0
            self.compute_seconds.append(dt)
            budget = self.N / self.sr
            if dt > budget:
                self.deadline_misses += 1
                if self.drop_late:
                    self._drop = math.ceil((dt - budget) / budget)
        self._out.append(self._rs_out.push(seg))
        keep = k * self.N - (self.ctx_frames + 8) * self.hop - self.S2 - round(_F0_LEFT_SECONDS * self.sr)
        self._y.trim(keep)
        self._units.trim(keep)
        self._f0.trim(keep // self.hop)
        self._uv.trim(keep // self.hop)
        self._phase.trim(keep // self.hop)

    def _faded_out(self) -> np.ndarray:
        """A block of silence that the previous render's tail fades into."""
        seg = np.zeros(self.N, np.float32)
        n = min(self.cf, self.N)
        seg[:n] = self._tail[:n] * np.cos(np.linspace(0, np.pi / 2, n, dtype=np.float32))
        self._tail = np.zeros(self.cf, np.float32)
        return seg

    def _skip_features(self, k: int) -> None:
        """A dropped block: its audio is passed by without running the encoder or the F0 tracker."""
        self._units.skip()
        end = (k + 1) * self.block_frames
        if end > self._f0_final:
            last = self._f0.get(self._f0_final - 1, self._f0_final)
            self._f0.put(self._f0_final, np.repeat(last, end - self._f0_final))
            self._uv.put(self._f0_final, np.zeros(end - self._f0_final, np.float32))
            self._f0_final = end

    def _gains(self, start: int, n: int) -> np.ndarray | None:
        """Noise-gate gains (n,) for output samples from model sample ``start``: 1 where the input frame is above
        ``gate_db``, 0 below, linear between frame centres; None when the gate is off."""
        if self.gate_db is None:
            return None
        hop = self.hop
        f0, f1 = start // hop - 1, (start + n) // hop + 2
        y = self._y.get(f0 * hop, f1 * hop)
        rms = np.sqrt(np.mean(y.reshape(-1, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
        open_ = (20 * np.log10(rms) >= self.gate_db).astype(np.float32)
        centres = (np.arange(f0, f1) + 0.5) * hop
        return np.interp(np.arange(start, start + n), centres, open_).astype(np.float32)

    def _convert_block(self, k: int) -> np.ndarray:
        """Model-rate output samples ``[k N, (k+1) N)``, joined to the previous block."""
        base, hop, cf, S2 = k * self.N, self.hop, self.cf, self.S2
        gains = self._gains(base - S2, self.N + self.tail + S2)
        if gains is not None and not gains.any() and not self._tail.any():
            self._skip_features(k)
            return np.zeros(self.N, np.float32)
        lo_f = max(0, (base - S2) // hop)
        hi_f = (base + self.N) // hop + self.render_after
        r0, audio = self._render(max(0, lo_f - self.ctx_frames), lo_f, hi_f, k)
        if gains is not None:
            audio = audio * np.interp(np.arange(r0, r0 + len(audio)), np.arange(base - S2, base - S2 + len(gains)),
                                      gains, left=0, right=0).astype(np.float32)

        def take(a: int, n: int) -> np.ndarray:
            out = np.zeros(n, np.float32)
            lo, hi = max(a, r0), min(a + n, r0 + len(audio))
            if hi > lo:
                out[lo - a:hi - a] = audio[lo - r0:hi - r0]
            return out

        shift, rho = self._align(take(base - S2, cf + 2 * S2))
        seg = take(base + shift, self.N + cf)
        w = np.linspace(0.0, 1.0, cf + 2, dtype=np.float64)[1:-1]
        fade_in = rho * w + (1 - rho) * np.sin(np.pi / 2 * w)
        fade_out = rho * (1 - w) + (1 - rho) * np.cos(np.pi / 2 * w)
        n = min(cf, self.N)
        seg[:n] = (seg[:n] * fade_in[:n] + self._tail[:n] * fade_out[:n]).astype(np.float32)
        self._tail = seg[self.N:self.N + cf].copy()
        return seg[: self.N]

    def _align(self, head: np.ndarray) -> tuple[int, float]:
        """SOLA: the shift in ``[-S2, S2]`` of the new render whose start best matches the previous tail (largest
        normalised cross-correlation), and that correlation clipped to [0, 1]."""
        prev = self._tail.astype(np.float64)
        if self.S2 == 0 or not prev.any():
            return 0, 0.0 if not prev.any() else 1.0
        h = head.astype(np.float64)
        num = np.correlate(h, prev, mode="valid")  # (2 S2 + 1,)
        energy = np.convolve(h * h, np.ones(len(prev)), mode="valid")
        rho = num / np.sqrt(np.maximum(energy * np.dot(prev, prev), 1e-30))
        i = int(np.argmax(rho))
        return i - self.S2, float(np.clip(rho[i], 0.0, 1.0))

    # ------------------------------------------------------------------ synthesis
    def _render(self, a: int, lo: int, hi: int, k: int) -> tuple[int, np.ndarray]:
        """Synthesize frames ``[lo, hi)`` with frames ``[a, lo)`` as left context; returns (first model sample,
        audio). Test doubles replace this method."""
        from svc_pl.data.audio import frame_volume

        conv, opts, hop, n = self.converter, self.opts, self.hop, hi - a
        f0, uv = self._pitch(a, hi)
        c = self._units.frames(a, hi, opts)
        vol = frame_volume(self._y.get(a * hop, hi * hop), hop, n)
        speaker = stack_speakers([conv.speakers.for_piece(opts, a * hop, n)]).to(self.device)
        net, dev = self.model.net, self.device
        seed = None if opts.seed is None else opts.seed + k  # deterministic, but no noise pattern repeated per block
        f0t = torch.from_numpy(f0 * 2 ** (opts.transpose / 12)).unsqueeze(0).to(dev)
        c_t, uv_t = torch.from_numpy(c).unsqueeze(0).to(dev), torch.from_numpy(uv).unsqueeze(0).to(dev)
        vol_t = torch.from_numpy(vol).unsqueeze(0).to(dev) if net.vol_embedding else None
        if getattr(net, "decoder", None) == "ddsp" and not opts.auto_predict_f0:
            audio = self._render_ddsp(a, lo, c_t, f0t, uv_t, speaker, vol_t, seed)
            return lo * hop, audio
        window = conv.backends.decode_window(opts) or DECODE_WINDOW["torch"]  # a block is always windowed
        with torch.inference_mode(), conv._autocast(opts):
            # the backend the offline converter uses (--backend: ONNX Runtime exports during warm_up, not in a block)
            audio, _ = conv.backends.infer(opts, c_t, f0t, uv_t, speaker, noise_scale=opts.noise_scale, seed=seed,
                                           predict_f0=opts.auto_predict_f0, vol=vol_t, decode_window=window,
                                           decode_frames=(lo - a, n))
        return lo * hop, audio[0, 0].float().cpu().numpy()

    def _render_ddsp(self, a: int, lo: int, c, f0, uv, speaker, vol, seed) -> np.ndarray:
        """A DDSP synthesizer's frames ``[lo, a + T)`` from inputs (1, ., T) of frames ``[a, a + T)``, with the
        harmonics' phase continued from the previous render (offline, the phase runs on from the clip's start;
        a render that restarted it at its own first frame would join the previous one out of phase)."""
        from svc_pl.layers.ddsp import harmonic_phase, upsample_frames

        net, dec, hop = self.model.net, self.model.net.dec, self.hop
        with torch.inference_mode(), self.converter._autocast(self.opts):
            g = net.speaker_embedding(speaker, batch=1, device=c.device)
            m_p, _ = net.prior_stats(c, f0, uv, torch.ones_like(f0).unsqueeze(1), vol)
            amps, gains = dec.controls(m_p.float(), f0.float(), uv.float(), g.float())
        phase0 = float(self._phase.get(a, a + 1)[0]) if self._phase.start <= a < self._phase.end else 0.0
        cycles = harmonic_phase(f0.float(), hop, self.sr).double()[0] + phase0  # (T * hop,) cycles
        # phase before each frame's first sample, for the next render that starts there
        starts = np.concatenate([[phase0], cycles[hop - 1:-1:hop].numpy()]) % 1.0
        self._phase.put(a, starts)
        skip = (lo - a) * hop
        ph = torch.frac(cycles[skip:]).float().unsqueeze(0)
        k = torch.arange(1, dec.n_harmonics + 1, dtype=torch.float32).view(1, -1, 1)
        harm = (torch.sin(2 * math.pi * torch.frac(ph * k)) * upsample_frames(amps, hop)[..., skip:]).sum(1)
        rng = torch.random.fork_rng(devices=[], enabled=seed is not None)
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            noise = dec.noise(gains, amps.shape[-1] * hop)[..., skip:]
        return (harm + noise)[0].numpy().astype(np.float32)

    def _pitch(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """F0 (Hz, not transposed) and voiced flags of frames ``[a, b)``, computing only frames not yet final."""
        hop = self.hop
        avail = self._y.end
        if b > self._f0_final:
            s = max(0, max(self._f0_final, a) - round(_F0_LEFT_SECONDS * self.sr / hop))
            s = max(s, self._y.start // hop + (self._y.start % hop > 0))
            seg = self._y.get(s * hop, avail)
            n = len(seg) // hop
            t0 = time.perf_counter()
            track = self.converter._f0_extractor(self.opts).compute(seg[: n * hop], n_frames=n)
            self.converter.timings["f0"] += time.perf_counter() - t0
            first = max(self._f0_final, a)
            f0 = track.f0[first - s:].astype(np.float32)
            if not f0.any():  # no voiced frame in the segment (the track is all 0 Hz, else interpolated and held
                f0[:] = self._f0.get(first - 1, first)[0]  # at its edges): hold the last F0, as a file would
            self._f0.put(first, f0)
            self._uv.put(first, track.voiced[first - s:].astype(np.float32))
            self._f0_final = max(self._f0_final, min(s + n, (avail - self.f0_right) // hop))
        return self._f0.get(a, b, hold=True), self._uv.get(a, b, hold=True)


class PassThrough:
    """The dry input, with the interface of :class:`StreamConverter` (``svc-pl live --passthrough``)."""

    def __init__(self, device_rate: int, block_seconds: float):
        self.device_rate = int(device_rate)
        self.device_block = max(1, round(block_seconds * device_rate))
        self.block_seconds = self.device_block / self.device_rate
        self.latency_seconds = 0.0
        self.blocks = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        self.blocks += 1
        return np.asarray(block, np.float32).reshape(-1).copy()

    def stats(self) -> dict:
        return {"latency_seconds": 0.0, "block_seconds": self.block_seconds, "blocks": self.blocks,
                "deadline_misses": 0, "block_compute_p50_seconds": 0.0, "block_compute_p95_seconds": 0.0,
                "block_compute_max_seconds": 0.0}

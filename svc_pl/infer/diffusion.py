"""The shallow-diffusion stage of conversion (so-vits-svc 4.1's ``--shallow_diffusion`` / ``--only_diffusion``).

Shallow diffusion takes the synthesizer's output for a piece, turns it into the NSF-HiFiGAN vocoder's log-mel,
noises that mel to step ``k_step`` and denoises it with the diffusion model (conditioned on the piece's units, the
F0 the synthesizer used, a volume and the speaker), then renders it with the vocoder. Diffusion-only conversion
starts from noise and needs no synthesizer.

The volume is so-vits-svc 4.1's (``inference/infer_tool.py``, ``Svc.infer``): a synthesizer with ``vol_embedding``
was driven by the source's frame volume, and the diffusion model gets that same volume; a synthesizer without it
chose its own loudness, and the diffusion model gets the frame volume of the synthesized audio
(:func:`frame_volumes`), so the mel it refines and the volume it is told agree. Diffusion-only conversion has no
synthesized audio and takes the source's.

Everything that can go wrong with the files (k_step above the model's ``k_step_max``, unit sizes, speakers, a
shallow-only model asked to generate, a vocoder of another mel size, rate or hop) is checked when the stage is
loaded, before any audio is processed. Pieces come from the converter's slicer, so the denoiser's cached
condition projections (about 80 KB a frame at the 4.1 default size) stay bounded by the piece length.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from svc_pl.data.spectral import LogMelSpectrogram
from svc_pl.diffusion.model import MelDiffusion
from svc_pl.errors import UserFacingError
from svc_pl.infer.enhancer import VocoderConfig, load_openvpi_vocoder
from svc_pl.infer.loading import VoiceModel
from svc_pl.layers.commons import rows_seeded
from svc_pl.layers.nsf import NSFHiFiGAN

LOG = logging.getLogger(__name__)


class DiffusionStage:
    """A loaded, checked diffusion model with its vocoder, turning pieces into audio.

    Args:
        model: the diffusion model (from :func:`svc_pl.compat.load_sovits_diffusion`).
        vocoder: openvpi NSF-HiFiGAN vocoder.
        vocoder_config: its config (mel front end).
        speaker_map: (S_voice, S_diffusion) 0/1 matrix taking the voice model's speaker weights to the diffusion
            model's (by name); None for a single-speaker diffusion model.
        source: the diffusion model's path, for messages.
    """

    def __init__(self, model: MelDiffusion, vocoder: NSFHiFiGAN, vocoder_config: VocoderConfig,
                 speaker_map: torch.Tensor | None, source: str):
        self.model = model
        self.vocoder = vocoder
        self.vocoder_config = vocoder_config
        self.mel = LogMelSpectrogram.from_config(vocoder_config).to(next(vocoder.parameters()).device)
        self.speaker_map = speaker_map
        self.source = source

    @property
    def sampling_rate(self) -> int:
        return self.vocoder_config.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.vocoder_config.hop_size

    def voice_model(self) -> VoiceModel:
        """A :class:`VoiceModel` standing for the diffusion model in diffusion-only conversion (rate, hop, speakers,
        content encoder, unit interpolation from its ``diffusion.yaml``; ``net`` is the diffusion model)."""
        cfg = self.model.sovits_config
        mode = str(cfg.raw.get("data", {}).get("unit_interpolate_mode") or "left")
        return VoiceModel(self.model, cfg.sampling_rate, cfg.hop_length, dict(cfg.speakers), cfg.encoder, mode,
                          self.source)

    def render(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, speaker: torch.Tensor,
               k_step: int, method: str, speedup: int, seed: int | None, audio: torch.Tensor | None = None,
               autocast=None, decode_window: int = 0) -> torch.Tensor:
        """Diffuse one batch of pieces and vocode it.

        Args:
            units: (B, D, N) content units.
            f0: (B, N) F0 in Hz (the synthesizer's, or the transposed source F0).
            volume: (B, N) frame RMS volume: the synthesized audio's for a synthesizer without ``vol_embedding``,
                else the source's (see the module docstring).
            speaker: (B, N, S_voice) speaker weights per frame in the voice model's speaker order.
            k_step: shallow depth (ignored without ``audio``).
            method: sampler.
            speedup: sampler speed-up.
            seed: seed of each row's initial noise (None: unseeded).
            audio: (B, N * hop) synthesizer output to refine, or None to generate from noise.
            autocast: context manager the diffusion network runs under (bf16), or None.
            decode_window: if > 0, the vocoder renders in windows of this many frames
                (:meth:`NSFHiFiGAN.decode_windowed`): the same audio up to float rounding, one kernel shape for
                every piece length and a working set that does not grow with the piece.

        Returns:
            (B, N * hop) fp32 audio.
        """
        dev = f0.device
        n = f0.shape[-1]
        gt_mel = None
        if audio is not None:
            mel = self.mel(audio.float())  # (B, M, frames)
            mel = torch.nn.functional.pad(mel, (0, max(0, n - mel.shape[-1])), mode="replicate")[..., :n]
            gt_mel = mel.transpose(1, 2)
        spk = None
        if self.speaker_map is not None:
            spk = speaker.float() @ self.speaker_map.to(dev)
        generators = None
        if seed is not None:  # one per row: a piece gets the same noise whatever else shares its batch
            generators = [torch.Generator(device=dev).manual_seed(int(seed)) for _ in range(f0.shape[0])]
        # the vocoder's sine source draws from the global generator: seeded here, the caller's state kept
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            with autocast if autocast is not None else contextlib.nullcontext():
                mel = self.model.infer(units.transpose(1, 2), f0.unsqueeze(-1), volume.unsqueeze(-1), spk,
                                       gt_mel=gt_mel, k_step=k_step, method=method, speedup=speedup,
                                       generator=generators)
            rows = rows_seeded(int(seed), f0.shape[0]) if seed is not None and f0.shape[0] > 1 else None
            with rows or contextlib.nullcontext():  # the vocoder's source too draws per row
                mel, f0 = mel.float().transpose(1, 2), f0.float()
                if decode_window > 0:
                    source = self.vocoder.m_source(f0, self.vocoder.upp)
                    wav = self.vocoder.decode_windowed(mel, source, window=decode_window)
                else:
                    wav = self.vocoder(mel, f0)
                return wav.reshape(f0.shape[0], -1)


def diffusion_config_path(opts) -> Path:
    """The ``diffusion.yaml`` of :class:`~svc_pl.infer.converter.ConvertOptions`: ``diffusion_config``, else beside
    ``diffusion_model``."""
    if not opts.diffusion_model:
        raise UserFacingError("--shallow-diffusion and --only-diffusion need the diffusion model: pass "
                              "--diffusion-model PATH (so-vits-svc's logs/44k/diffusion/model_<step>.pt)")
    return Path(opts.diffusion_config) if opts.diffusion_config else Path(opts.diffusion_model).with_name(
        "diffusion.yaml")


def load_diffusion_stage(model_path: str | os.PathLike, config_path: str | os.PathLike | None,
                         vocoder_dir: str | os.PathLike | None, *, voice: VoiceModel | None, unit_dim: int | None,
                         k_step: int, only_diffusion: bool, speakers: list[str | int] = (),
                         method: str = "dpm-solver++", speedup: int = 10, device: str | torch.device = "cpu"
                         ) -> DiffusionStage:
    """Load and check the diffusion model and vocoder against the voice model and options (before any audio).

    Args:
        model_path: so-vits-svc diffusion ``model_*.pt``.
        config_path: its ``diffusion.yaml`` (None: ``diffusion.yaml`` beside the model).
        vocoder_dir: openvpi NSF-HiFiGAN folder (or its ``model`` file).
        voice: the synthesizer for shallow diffusion; None for diffusion-only conversion.
        unit_dim: size of the content encoder's units (None: not checked here).
        k_step: requested shallow depth.
        only_diffusion: generate from noise (needs a model trained on all steps).
        speakers: the speakers (names or ids) the conversion asks for.
        method: sampler (the solvers need ``speedup`` at most the number of steps).
        speedup: sampler speed-up.
        device: where the diffusion model and vocoder run.

    Raises:
        UserFacingError: naming the files and what to do, for every mismatch.
    """
    from svc_pl.compat.diffusion import load_sovits_diffusion

    model_path = Path(model_path)
    config_path = Path(config_path) if config_path else model_path.with_name("diffusion.yaml")
    if not model_path.is_file():
        raise UserFacingError(f"{model_path}: diffusion model not found (so-vits-svc writes logs/44k/diffusion/"
                              "model_<step>.pt)")
    if not config_path.is_file():
        raise UserFacingError(f"{config_path}: diffusion config not found; pass the diffusion.yaml the model was "
                              "trained with (--diffusion-config)")
    if not vocoder_dir:
        raise UserFacingError("diffusion needs the NSF-HiFiGAN vocoder it was trained with: pass --vocoder DIR "
                              "(openvpi's folder holding 'model' and 'config.json', e.g. pretrain/nsf_hifigan)")
    model = load_sovits_diffusion(model_path, config_path, device=device)
    cfg = model.sovits_config
    where = f"{model_path} ({config_path})"
    if only_diffusion and model.shallow_only:
        raise UserFacingError(f"{where}: trained for shallow diffusion only (k_step_max {model.k_step_max} < "
                              f"timesteps {model.timesteps}), it cannot generate from noise: use --shallow-diffusion "
                              "with a voice model (-m), or a diffusion model trained with k_step_max 0")
    if not only_diffusion and not 0 <= k_step <= model.k_step_max:
        raise UserFacingError(f"--k-step {k_step} is out of range for {where}: it was trained up to k_step_max "
                              f"{model.k_step_max}; pass --k-step between 0 and {model.k_step_max}")
    steps = model.k_step_max if only_diffusion else k_step
    if method in ("dpm-solver", "dpm-solver++", "unipc") and speedup > 1 and 0 < steps < speedup:
        raise UserFacingError(f"--diffusion-method {method} with --diffusion-speedup {speedup} over {steps} steps "
                              f"leaves no solver step: pass --diffusion-speedup {steps} or less")
    if unit_dim is not None and model.unit_dim != unit_dim:
        raise UserFacingError(f"{where}: takes {model.unit_dim}-d units (encoder_out_channels) but the content "
                              f"encoder gives {unit_dim}-d units: use the diffusion model trained on the same content "
                              "encoder as the voice model")
    vocoder, vcfg = load_openvpi_vocoder(vocoder_dir, device=device)
    rate, hop = (voice.sampling_rate, voice.hop_length) if voice is not None else (cfg.sampling_rate, cfg.hop_length)
    problems = []
    if vcfg.num_mels != model.n_mels:
        problems.append(f"the vocoder has {vcfg.num_mels} mel bins, the diffusion model {model.n_mels}")
    if (vcfg.sampling_rate, vcfg.hop_size) != (rate, hop):
        problems.append(f"the vocoder runs at {vcfg.sampling_rate} Hz with hop {vcfg.hop_size}, the "
                        f"{'voice model' if voice is not None else 'diffusion model'} at {rate} Hz with hop {hop}")
    if voice is not None and (cfg.sampling_rate, cfg.hop_length) != (rate, hop):
        problems.append(f"{config_path} gives {cfg.sampling_rate} Hz with hop {cfg.hop_length}, the voice model "
                        f"{voice.source} {rate} Hz with hop {hop}")
    if problems:
        raise UserFacingError(f"{vocoder_dir} does not fit {where}: {'; '.join(problems)}. Pass the NSF-HiFiGAN "
                              "vocoder folder the diffusion model was trained with (--vocoder)")
    speaker_map = _speaker_map(model, voice, speakers, where) if model.n_speakers > 1 else None
    LOG.info("diffusion %s: k_step_max %d, %d speaker(s); vocoder %s", model_path, model.k_step_max,
             model.n_speakers, vocoder_dir)
    return DiffusionStage(model, vocoder, vcfg, speaker_map, str(model_path))


def diffusion_stage(opts, voice: VoiceModel | None, unit_dim: int | None, device: str | torch.device,
                    enhancer: str | os.PathLike | None = None) -> DiffusionStage | None:
    """The checked diffusion stage that conversion options ask for (shallow or only diffusion), else None; loaded
    before any audio.

    Args:
        opts: the :class:`~svc_pl.infer.options.ConvertOptions` (diffusion model, config, vocoder, sampler, depth).
        voice: the loaded :class:`~svc_pl.infer.loading.VoiceModel`, or None with ``opts.only_diffusion``.
        unit_dim: the content encoder's unit size (None: not checked).
        enhancer: the enhancer folder, the vocoder diffusion renders with when ``opts.vocoder`` is not set.
    """
    if not opts.uses_diffusion:
        if opts.diffusion_model:
            LOG.warning("--diffusion-model is not used without --shallow-diffusion or --only-diffusion")
        return None
    if not opts.diffusion_model:
        raise UserFacingError("--shallow-diffusion and --only-diffusion need the diffusion model: pass "
                              "--diffusion-model PATH (so-vits-svc's logs/44k/diffusion/model_<step>.pt)")
    if enhancer and not opts.vocoder:
        LOG.info("diffusion renders with the --enhancer vocoder %s (the enhancer itself is not applied)", enhancer)
    elif enhancer:
        LOG.info("diffusion replaces the enhancer: --enhancer is not applied")
    return load_diffusion_stage(opts.diffusion_model, opts.diffusion_config, opts.vocoder or enhancer,
                                voice=voice, unit_dim=unit_dim, k_step=opts.k_step, only_diffusion=opts.only_diffusion,
                                speakers=[] if voice is None else requested_speakers(opts),
                                method=opts.diffusion_method, speedup=opts.diffusion_speedup, device=device)


def _speaker_map(model: MelDiffusion, voice: VoiceModel | None, wanted: list[str | int], where: str) -> torch.Tensor:
    """(S_voice, S_diffusion) matrix sending the voice model's speakers to the diffusion model's of the same name
    (by id where one of them names none); raises for a wanted speaker the diffusion model lacks."""
    names = dict(model.sovits_config.speakers)
    n = model.n_speakers
    if voice is None:
        return torch.eye(n)
    by_id = {v: k for k, v in voice.speakers.items()}
    m = torch.zeros(voice.net.n_speakers, n)
    for i in range(voice.net.n_speakers):
        name = by_id.get(i)
        j = names.get(name) if name is not None and names else i  # by name where both name it, else by id
        if j is not None and 0 <= j < n:
            m[i, j] = 1.0
    for spk in wanted:
        sid = voice.speaker_id(spk)
        if m[sid].sum() == 0:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(names.items(), key=lambda kv: kv[1])) or "none named"
            raise UserFacingError(f"speaker {by_id.get(sid, sid)!r} of {voice.source} is not in the diffusion model "
                                  f"{where}, which has: {known}; convert to one of those, or use a diffusion model "
                                  "trained on this speaker")
    return m


def requested_speakers(opts) -> list[str | int]:
    """Every speaker name or id a :class:`~svc_pl.infer.converter.ConvertOptions` asks for."""
    names = list(opts.speaker) if isinstance(opts.speaker, dict) else [opts.speaker]
    for _, weights in opts.speaker_keyframes or []:
        names += list(weights)
    return names


def frame_volumes(audio: torch.Tensor, hop: int, n_frames: int) -> torch.Tensor:
    """Frame RMS volume of each row of ``audio`` (B, samples), centred as so-vits-svc's volume extractor
    (:func:`svc_pl.data.preprocess.frame_volume`, the volume the data were trained on): (B, n_frames) on
    ``audio``'s device."""
    from svc_pl.data.audio import frame_volume

    rows = audio.detach().float().cpu().numpy()
    return torch.stack([torch.from_numpy(frame_volume(r, hop, n_frames)) for r in rows]).to(audio.device)


def reencode(audio: torch.Tensor, rate: int, encoder, n_frames: int, mode: str) -> torch.Tensor:
    """``--second-encoding``: content units of the synthesized ``audio`` (B, samples) at ``rate``, re-encoded at
    16 kHz and stretched to ``n_frames``: (B, D, n_frames)."""
    from svc_pl.data.audio import resample
    from svc_pl.data.content import units_to_frames

    out = []
    for row in audio.float().cpu().numpy():
        a16 = torch.from_numpy(np.ascontiguousarray(resample(row, rate, 16000))).to(audio.device)
        out.append(units_to_frames(encoder(a16.unsqueeze(0)).float(), n_frames, mode=mode))
    return torch.cat(out)

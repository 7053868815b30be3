"""The front door from files to a :class:`Converter`: the voice model, its content encoder (with the unit-size
check), the shallow-diffusion stage, the enhancer, the cluster model and the feature index, loaded and checked
in one place. ``svc-pl infer`` and ``svc-pl webui`` both build their converters here."""

from __future__ import annotations

import logging
import os

import torch

from svc_pl.errors import UserFacingError
from svc_pl.infer.converter import Converter
from svc_pl.infer.options import ConvertOptions

LOG = logging.getLogger(__name__)

PathLike = str | os.PathLike


def build_converter(model: PathLike | None, content_encoder: PathLike | None = None, *, encoder: str | None = None,
                    random_encoder: bool = False, config: PathLike | None = None,
                    device: str | torch.device = "cpu", options: ConvertOptions | None = None,
                    enhancer: PathLike | None = None, cluster_model: PathLike | None = None,
                    feature_index: PathLike | None = None) -> Converter:
    """Load and check everything a conversion needs, before any audio is read.

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

    Raises:
        UserFacingError: a file is missing or unsafe, or the model and the encoder give different unit sizes.
    """
    from svc_pl.data.content import load_content_encoder, random_content_encoder
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
    return Converter(voice, units, device=device, enhancer=enhancer_net, cluster=cluster, index=index,
                     diffusion=diffusion)


def diffusion_stage(opts: ConvertOptions, voice, unit_dim: int | None, device, enhancer: PathLike | None = None):
    """The checked diffusion stage for shallow / only diffusion, else None (before any audio).

    Args:
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
    from svc_pl.infer.diffusion import load_diffusion_stage, requested_speakers

    if enhancer and not opts.vocoder:
        LOG.info("diffusion renders with the --enhancer vocoder %s (the enhancer itself is not applied)", enhancer)
    elif enhancer:
        LOG.info("diffusion replaces the enhancer: --enhancer is not applied")
    return load_diffusion_stage(opts.diffusion_model, opts.diffusion_config, opts.vocoder or enhancer,
                                voice=voice, unit_dim=unit_dim, k_step=opts.k_step, only_diffusion=opts.only_diffusion,
                                speakers=[] if voice is None else requested_speakers(opts),
                                method=opts.diffusion_method, speedup=opts.diffusion_speedup, device=device)


def check_speakers(voice, opts: ConvertOptions) -> None:
    """Raise the model's unknown-speaker error for any speaker ``opts`` names (target, mix or keyframes)."""
    spk = opts.speaker
    names = list(spk) if isinstance(spk, dict) else [spk]
    for frame in opts.speaker_keyframes or []:
        names += list(frame[1])
    for name in names:
        voice.speaker_id(name)

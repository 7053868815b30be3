"""Reading and writing so-vits-svc ``config.json`` files (4.0 and 4.1)."""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from svc_pl.errors import ConfigError
from svc_pl.synthesizer import DecoderHopMismatchError, NetConfig, Synthesizer, synthesizer_kwargs

LOG = logging.getLogger(__name__)

# svc_pl's own architecture settings, which so-vits-svc's model block does not have (source_sampling_rate is
# there as "sampling_rate")
SVC_PL_NET_KEYS = ("decoder", "ddsp_hidden", "n_harmonics", "n_noise_bands", "ddsp_envelope_bins",
                   "ddsp_noise_steps", "source_sampling_rate")
# model-block keys the synthesizer reads: the architecture (NetConfig) and what upstream keeps beside it
MODEL_KEYS = (*(f.name for f in fields(NetConfig) if f.name not in SVC_PL_NET_KEYS), "ssl_dim", "n_speakers",
              "vocoder_name", "sampling_rate")
# so-vits-svc's SynthesizerTrn computes its NSF source at model.sampling_rate, this when the key is absent
UPSTREAM_SOURCE_RATE = 44100
# keys upstream writes but its model never reads (or reads elsewhere): accepted, not used by the synthesizer
DEAD_MODEL_KEYS = ("n_layers_q", "use_spectral_norm", "speaker_embedding", "speech_encoder")
REQUIRED_MODEL_KEYS = ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
                       "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
                       "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels", "ssl_dim", "n_speakers")

# The so-vits-svc 4.1 config_template.json values (44.1 kHz, vec768l12), used by write_sovits_config
TEMPLATE_41: dict[str, Any] = {
    "train": {
        "log_interval": 200, "eval_interval": 800, "seed": 1234, "epochs": 10000, "learning_rate": 0.0001,
        "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 6, "fp16_run": False, "half_type": "fp16",
        "lr_decay": 0.999875, "segment_size": 10240, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45,
        "c_kl": 1.0, "use_sr": True, "max_speclen": 512, "port": "8001", "keep_ckpts": 3, "all_in_mem": False,
        "vol_aug": False,
    },
    "data": {
        "training_files": "filelists/train.txt", "validation_files": "filelists/val.txt", "max_wav_value": 32768.0,
        "sampling_rate": 44100, "filter_length": 2048, "hop_length": 512, "win_length": 2048, "n_mel_channels": 80,
        "mel_fmin": 0.0, "mel_fmax": 22050, "unit_interpolate_mode": "nearest",
    },
    # NetConfig's defaults are the template's; then what upstream keeps in the same block
    "model": {k: v for k, v in NetConfig().to_dict().items() if k not in SVC_PL_NET_KEYS} | {
        "ssl_dim": 768, "n_speakers": 200, "vocoder_name": "nsf-hifigan", "speech_encoder": "vec768l12",
        "speaker_embedding": False, "n_layers_q": 3, "use_spectral_norm": False,
    },
    "spk": {},
}


@dataclass
class SovitsConfig:
    """A so-vits-svc config.json: its four blocks as plain dicts, plus where it came from."""

    train: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    spk: dict[str, int] = field(default_factory=dict)
    path: str | None = None

    @property
    def speech_encoder(self) -> str:
        """The content encoder the model was trained on. 4.0 configs name none: 4.0 used vec256l9, and its
        768-dim "4.0 v2" models ContentVec's layer 12 without the projection, which is vec768l12."""
        if "speech_encoder" in self.model:
            return self.model["speech_encoder"]
        return "vec768l12" if int(self.model.get("ssl_dim", 256)) == 768 else "vec256l9"

    @property
    def release(self) -> str:
        """The so-vits-svc release that wrote this config: "4.0" when the model block names no ``speech_encoder``
        (4.1's preprocessing always writes one), else "4.1"."""
        return "4.1" if "speech_encoder" in self.model else "4.0"

    @property
    def sampling_rate(self) -> int:
        return int(self.data["sampling_rate"])

    @property
    def hop_length(self) -> int:
        return int(self.data["hop_length"])

    @property
    def source_sampling_rate(self) -> int:
        """The rate so-vits-svc computes this model's NSF sine source at, so the one it was trained with:
        ``model.sampling_rate``, else 44100 (upstream's ``SynthesizerTrn`` never reads ``data.sampling_rate``)."""
        return int(self.model.get("sampling_rate", UPSTREAM_SOURCE_RATE))

    def net_config(self) -> NetConfig:
        """The synthesizer's architecture in this config's model block."""
        vocoder = self.model.get("vocoder_name", "nsf-hifigan")
        if vocoder != "nsf-hifigan":
            raise ConfigError(f"{self.path or 'config'}: vocoder_name {vocoder!r} is not supported; svc_pl implements "
                              "'nsf-hifigan' (the 4.1 default), so this model cannot be loaded")
        net = {k: self.model[k] for k in MODEL_KEYS if k in self.model and k not in ("ssl_dim", "n_speakers")}
        net = NetConfig.from_dict(net, strict=False)
        if self.source_sampling_rate != self.sampling_rate:
            net.source_sampling_rate = self.source_sampling_rate
        return net

    def data_settings(self) -> dict[str, int]:
        """What the synthesizer takes from the data (:data:`svc_pl.synthesizer.DATA_KEYS`)."""
        return {"sampling_rate": self.sampling_rate, "hop_length": self.hop_length,
                "filter_length": int(self.data["filter_length"]), "unit_dim": int(self.model["ssl_dim"]),
                "n_speakers": int(self.model["n_speakers"])}

    @property
    def segment_frames(self) -> int:
        return int(self.train.get("segment_size", 10240)) // self.hop_length

    def synthesizer_kwargs(self) -> dict[str, Any]:
        """Arguments of :class:`svc_pl.synthesizer.Synthesizer` for this config."""
        return synthesizer_kwargs(self.net_config(), self.data_settings(), self.segment_frames)

    def build(self) -> Synthesizer:
        """The synthesizer this config describes (random weights), through :meth:`Synthesizer.from_config`.

        A 4.0 config gives a synthesizer that maps F0 to pitch embeddings as 4.0 did (``coarse_pitch="4.0"``).
        """
        try:
            model = Synthesizer.from_config(self.net_config(), self.data_settings(), self.segment_frames)
        except DecoderHopMismatchError as err:
            raise ConfigError(f"{self.path or 'config'}: model.upsample_rates multiply to {err.upsampling} but "
                              f"data.hop_length is {err.hop_length}: the config does not describe a working model "
                              "(use the config.json the model was trained with)") from None
        model.coarse_pitch = "4.0" if self.release == "4.0" else "4.1"
        if self.source_sampling_rate != self.sampling_rate:
            given = ("model.sampling_rate" if "sampling_rate" in self.model
                     else "so-vits-svc's default, the config has no model.sampling_rate")
            LOG.info("%s: NSF source at %d Hz (%s), not the data's %d Hz, as so-vits-svc trained and renders this "
                     "model", self.path or "config", self.source_sampling_rate, given, self.sampling_rate)
        return model

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train, "data": self.data, "model": self.model, "spk": self.spk}


def read_sovits_config(path: str | os.PathLike) -> SovitsConfig:
    """Parse a so-vits-svc 4.0/4.1 ``config.json``; errors name the file and the missing keys."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass the config.json that came with the model)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a valid JSON config ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object with train/data/model/spk blocks")
    missing_blocks = [b for b in ("data", "model") if not isinstance(raw.get(b), dict)]
    if missing_blocks:
        raise ConfigError(f"{path}: missing block(s) {missing_blocks}: is this a so-vits-svc config.json?")
    model = raw["model"]
    missing = [k for k in REQUIRED_MODEL_KEYS if k not in model]
    missing += [f"data.{k}" for k in ("sampling_rate", "hop_length", "filter_length") if k not in raw["data"]]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {missing}")
    known = set(MODEL_KEYS) | set(DEAD_MODEL_KEYS)
    unknown = sorted(set(model) - known)
    if unknown:
        LOG.warning("%s: model key(s) %s are not so-vits-svc 4.1 keys and are ignored", path, unknown)
    spk = raw.get("spk") or {}
    return SovitsConfig(train=dict(raw.get("train") or {}), data=dict(raw["data"]), model=dict(model),
                        spk={str(k): int(v) for k, v in spk.items()}, path=str(path))


def sovits_config_for(synth_kwargs: dict[str, Any], speakers: dict[str, int], *, hop_length: int = 512,
                      filter_length: int = 2048, win_length: int = 2048, n_mel_channels: int = 80,
                      mel_fmin: float = 0.0, mel_fmax: float | None = None, segment_size_samples: int = 10240,
                      speech_encoder: str = "vec768l12", unit_interpolate_mode: str = "nearest") -> SovitsConfig:
    """A full 4.1 config (template values where ours say nothing) describing a synthesizer.

    ``model.sampling_rate`` always states the rate of the NSF source (``source_sampling_rate``, else the data's):
    without it so-vits-svc would compute the source at 44100 Hz and render a model of another rate otherwise
    than it was trained."""
    cfg = copy.deepcopy(TEMPLATE_41)
    sr = int(synth_kwargs.get("sampling_rate", 44100))
    cfg["data"].update(sampling_rate=sr, hop_length=hop_length, filter_length=filter_length, win_length=win_length,
                       n_mel_channels=n_mel_channels, mel_fmin=mel_fmin,
                       mel_fmax=mel_fmax if mel_fmax is not None else sr // 2,
                       unit_interpolate_mode=unit_interpolate_mode)
    cfg["train"]["segment_size"] = segment_size_samples
    for k in MODEL_KEYS:
        if k in synth_kwargs:
            v = synth_kwargs[k]
            cfg["model"][k] = [list(x) for x in v] if k == "resblock_dilation_sizes" else (
                list(v) if isinstance(v, tuple | list) else v)
    cfg["model"]["sampling_rate"] = int(synth_kwargs.get("source_sampling_rate") or sr)
    cfg["model"]["speech_encoder"] = speech_encoder
    cfg["spk"] = dict(speakers)
    return SovitsConfig(cfg["train"], cfg["data"], cfg["model"], cfg["spk"])

"""Whisper's audio encoder as a content encoder: so-vits-svc 4.1's ``whisper-ppg`` / ``whisper-ppg-large``.

so-vits-svc feeds the output of Whisper's audio encoder (after ``ln_post``) as units, one per 20 ms:
``whisper-ppg`` is Whisper medium (1024-d), ``whisper-ppg-large`` is large-v2/v3 (1280-d). Any other size
works the same way (tiny 384, base 512, small 768); the unit dimension comes from the weights.

What the encoder computes, as upstream's ``WhisperPPG.encoder``: the log-mel spectrogram (80 or 128
bands, 25 ms window, 10 ms hop) of the input padded with zeros to 30 s, clamped to 8 (log10) below its
maximum, through two convolutions (the second with stride 2), the sinusoidal position table and the
transformer blocks; the output is cut to ``len(audio) // 320`` frames. Upstream silently drops
everything past 30 s; here longer inputs are encoded in consecutive 30 s windows.

The weights are read by :mod:`svc_pl.data.whisper_weights` (OpenAI checkpoints, CTranslate2 folders, the short
names ``whisper-tiny.en`` and ``whisper-base``); its names are importable from here too.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.data.whisper_weights import (  # noqa: F401  (part of this module's API)
    BUILTIN_HINT,
    BUILTIN_WEIGHTS,
    WhisperDims,
    WhisperWeightsError,
    is_whisper_weights,
    read_ct2_variables,
    read_ct2_whisper,
    read_openai_whisper,
    resolve_whisper_path,
)
from svc_pl.layers.fast_init import constant_init

SAMPLE_RATE = 16000
N_FFT = 400
MEL_HOP = 160
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # the encoder's fixed 30 s context
UNIT_HOP = 320  # samples per output frame (two mel frames)

class _Block(nn.Module):
    """Pre-norm transformer block with OpenAI's parameter names (attn.query/key/value/out, mlp.0/2)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn = nn.Module()
        self.attn.query = nn.Linear(width, width)
        self.attn.key = nn.Linear(width, width, bias=False)
        self.attn.value = nn.Linear(width, width)
        self.attn.out = nn.Linear(width, width)
        self.attn_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        h = self.attn_ln(x)
        q, k, v = (lin(h).view(b, t, self.heads, w // self.heads).transpose(1, 2)
                   for lin in (self.attn.query, self.attn.key, self.attn.value))
        a = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d) = OpenAI's d^-0.25 on q and k
        x = x + self.attn.out(a.transpose(1, 2).reshape(b, t, w))
        return x + self.mlp(self.mlp_ln(x))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed position table: sin then cos over log-spaced timescales."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class WhisperAudioEncoder(nn.Module):
    """Whisper's audio encoder with OpenAI's state-dict names (``encoder.*`` without the prefix)."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims = dims
        w = dims.n_audio_state
        self.conv1 = nn.Conv1d(dims.n_mels, w, 3, padding=1)
        self.conv2 = nn.Conv1d(w, w, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(dims.n_audio_ctx, w))
        self.blocks = nn.ModuleList(_Block(w, dims.n_audio_head) for _ in range(dims.n_audio_layer))
        self.ln_post = nn.LayerNorm(w)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, 2 * n) log-mel -> (B, n, width)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.positional_embedding.shape[0]:
            raise ValueError(f"{x.shape[1]} frames exceed the encoder's context of {self.positional_embedding.shape[0]}")
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class LogMel(nn.Module):
    """Whisper's log-mel front end (upstream ``log_mel_spectrogram``), batched: the 8-decade floor is
    taken below each item's own maximum."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        import librosa

        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels)
        self.register_buffer("filters", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=audio.device.type, enabled=False):
            spec = torch.stft(audio.float(), N_FFT, MEL_HOP, window=self.window, return_complex=True)
            power = spec[..., :-1].abs() ** 2
            log = torch.clamp(self.filters @ power, min=1e-10).log10()
            peak = log.amax(dim=(-2, -1), keepdim=True)
            log = torch.maximum(log, peak - 8.0)
            return (log + 4.0) / 4.0


class WhisperContentEncoder(nn.Module):
    """Whisper units for 16 kHz audio, with the interface of :class:`svc_pl.data.content.ContentEncoder`.

    Frozen (eval mode, no grad). ``forward`` takes (B, T) audio and returns (B, dim, T // 320) units;
    every 30 s window is padded to 30 s before encoding, as upstream.
    """

    sample_rate = SAMPLE_RATE
    hop = UNIT_HOP

    def __init__(self, name: str, encoder: WhisperAudioEncoder):
        super().__init__()
        self.name = name
        self.model = encoder
        self.mel = LogMel(encoder.dims.n_mels)
        self.dim = encoder.dims.n_audio_state
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> WhisperContentEncoder:
        return super().train(False)

    def forward(self, wav16k: torch.Tensor) -> torch.Tensor:
        if wav16k.dim() != 2:
            raise ValueError(f"WhisperContentEncoder expects (B, T) audio at 16 kHz, got {tuple(wav16k.shape)}")
        total = wav16k.shape[-1] // UNIT_HOP
        if total == 0:
            raise ValueError(f"audio too short for {self.name}: {wav16k.shape[-1]} samples, need at least {UNIT_HOP}")
        outs = []
        for start in range(0, wav16k.shape[-1], WINDOW_SAMPLES):
            chunk = wav16k[:, start:start + WINDOW_SAMPLES]
            n = chunk.shape[-1] // UNIT_HOP
            if n == 0:
                break
            chunk = F.pad(chunk, (0, WINDOW_SAMPLES - chunk.shape[-1]))
            units = self.model(self.mel(chunk).to(chunk.dtype))
            outs.append(units[:, :n])
        return torch.cat(outs, dim=1).transpose(1, 2)

    def encode_unpadded(self, wav16k: torch.Tensor) -> torch.Tensor:
        """(B, T) audio -> (B, dim, T // 320) units of exactly that audio, without padding it to 30 s
        (what a stream can afford; :mod:`svc_pl.data.unit_window`)."""
        n = wav16k.shape[-1] // UNIT_HOP
        if n == 0 or n > self.model.dims.n_audio_ctx:
            raise ValueError(f"{self.name}: {wav16k.shape[-1]} samples cannot be encoded unpadded "
                             f"(1 to {self.model.dims.n_audio_ctx} frames of {UNIT_HOP})")
        wav16k = wav16k[:, : n * UNIT_HOP]
        return self.model(self.mel(wav16k).to(wav16k.dtype))[:, :n].transpose(1, 2)

    def extra_repr(self) -> str:
        d = self.model.dims
        return f"name={self.name!r}, dim={self.dim}, layers={d.n_audio_layer}, heads={d.n_audio_head}, mels={d.n_mels}"


# ---------------------------------------------------------------------------------------------- loading

def load_whisper_encoder(path: str | Path, name: str = "whisper-ppg", device: str | torch.device = "cpu"
                         ) -> WhisperContentEncoder:
    """Load a Whisper audio encoder from an OpenAI checkpoint, a CTranslate2 folder or a short name."""
    p = resolve_whisper_path(path)
    if not p.exists():
        raise WhisperWeightsError(p, "does not exist")
    if p.is_dir() or p.name == "model.bin":
        dims, state = read_ct2_whisper(p if p.is_dir() else p.parent)
    else:
        dims, state = read_openai_whisper(p)
    with constant_init():  # the load below must fill every tensor, so no random draws first
        encoder = WhisperAudioEncoder(dims)
    state = dict(state)
    state.setdefault("positional_embedding", encoder.positional_embedding)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    wrong = [k for k in missing] + [k for k in unexpected]
    if wrong:
        raise WhisperWeightsError(p, f"tensors do not fit a Whisper encoder of {dims}: {sorted(wrong)[:10]}")
    return WhisperContentEncoder(name, encoder.float()).to(device)

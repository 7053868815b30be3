"""RMVPE pitch network (Wei et al. 2023, "RMVPE: A Robust Model for Vocal Pitch Estimation in Polyphonic Music").

A deep U-Net over a 128-bin log-mel spectrogram (16 kHz, hop 160 = 10 ms) followed by a bidirectional
GRU and a 360-bin salience head (20-cent bins from about 31.7 Hz). The module and parameter names
follow upstream so-vits-svc's ``E2E0(4, 1, (2, 2))`` so the ``rmvpe.pt`` file users already have loads
unchanged; upstream also builds an unused "timbre filter" whose weights we drop on load.

Shapes use B = batch, T = frames (10 ms), M = 128 mel bins.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from svc_pl.errors import CheckpointMismatchError, UserFacingError

LOG = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP_LENGTH = 160
N_MELS = 128
N_CLASS = 360
WINDOW_LENGTH = 1024
MEL_FMIN = 30.0
MEL_FMAX = 8000.0
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0, relative to 10 Hz
DOWNSAMPLE = 32  # 2 ** 5 encoder poolings: the frame count is padded to a multiple of this

WEIGHTS_HINT = (
    "RMVPE needs pretrained weights: download https://github.com/yxlllc/RMVPE/releases/download/230917/rmvpe.zip, "
    "unzip it and pass the path of its model.pt (so-vits-svc calls it pretrain/rmvpe.pt) as the F0 extractor's "
    "model_path (f0 model path option), or pick another f0 method (pm, dio, harvest, crepe, fcpe)."
)


class RMVPEWeightsError(UserFacingError, FileNotFoundError):
    """The RMVPE weight file is missing or is not an RMVPE checkpoint."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {reason}\n{WEIGHTS_HINT}" if path is not None else f"{reason}\n{WEIGHTS_HINT}")


class ResConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers plus a residual (1x1-projected when channels change).

    (B, Cin, T, F) -> (B, Cout, T, F).
    """

    def __init__(self, in_channels: int, out_channels: int, momentum: float = 0.01):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + (x if self.shortcut is None else self.shortcut(x))


class ResStack(nn.Module):
    """``n_blocks`` residual blocks, the first changing ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, n_blocks: int):
        super().__init__()
        self.conv = nn.ModuleList(
            [ResConvBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(n_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv:
            x = block(x)
        return x


class UpBlock(nn.Module):
    """Transposed-conv upsampling by 2, concatenation with the skip, then a residual stack.

    (B, Cin, T, F), skip (B, Cin/2, 2T, 2F) -> (B, Cin/2, 2T, 2F).
    """

    def __init__(self, in_channels: int, out_channels: int, n_blocks: int, momentum: float = 0.01):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=momentum),
            nn.ReLU(),
        )
        self.conv2 = ResStack(2 * out_channels, out_channels, n_blocks).conv

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv1(x), skip], dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class _Encoder(nn.Module):
    def __init__(self, n_layers: int, n_blocks: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(1, momentum=0.01)
        self.layers = nn.ModuleList(
            [ResStack(1 if i == 0 else channels * 2 ** (i - 1), channels * 2**i, n_blocks) for i in range(n_layers)]
        )
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        x = self.bn(x)
        for layer in self.layers:
            skip = layer(x)
            skips.append(skip)
            x = self.pool(skip)
        return x, skips


class _Stack(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class _UNet(nn.Module):
    """(B, 1, T, M) -> (B, channels, T, M); T and M multiples of 2 ** n_layers."""

    def __init__(self, n_blocks: int = 4, n_layers: int = 5, n_inter: int = 4, channels: int = 16):
        super().__init__()
        deepest = channels * 2 ** (n_layers - 1)
        self.encoder = _Encoder(n_layers, n_blocks, channels)
        self.intermediate = _Stack(
            [ResStack(deepest if i == 0 else 2 * deepest, 2 * deepest, n_blocks) for i in range(n_inter)]
        )
        self.decoder = _Stack([UpBlock(deepest * 2 // 2**i, deepest // 2**i, n_blocks) for i in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        for layer in self.intermediate.layers:
            x = layer(x)
        for layer, skip in zip(self.decoder.layers, reversed(skips), strict=True):
            x = layer(x, skip)
        return x


class _BiGRU(nn.Module):
    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(in_features, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class RMVPE(nn.Module):
    """RMVPE: log-mel front-end, U-Net, 3-channel conv, BiGRU and a sigmoid 360-bin salience head.

    ``forward(mel (B, M, T)) -> salience (B, T, 360)`` in [0, 1]; :meth:`mel` turns 16 kHz audio into
    its input and :meth:`salience` does both (with the padding the U-Net needs).
    """

    def __init__(self, n_blocks: int = 4, n_layers: int = 5, n_inter: int = 4, channels: int = 16):
        super().__init__()
        import librosa

        self.unet = _UNet(n_blocks, n_layers, n_inter, channels)
        self.cnn = nn.Conv2d(channels, 3, 3, padding=1)
        self.fc = nn.Sequential(_BiGRU(3 * N_MELS, 256), nn.Linear(512, N_CLASS), nn.Dropout(0.25), nn.Sigmoid())
        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=WINDOW_LENGTH, n_mels=N_MELS, fmin=MEL_FMIN, fmax=MEL_FMAX,
                                 htk=True)
        # Not part of rmvpe.pt: rebuilt here, kept out of the state_dict.
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(WINDOW_LENGTH), persistent=False)
        self.register_buffer("cents", CENTS_OFFSET + 20.0 * torch.arange(N_CLASS), persistent=False)

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Natural-log magnitude mel spectrogram. audio (B, S) at 16 kHz -> (B, M, 1 + S // 160)."""
        spec = torch.stft(audio, WINDOW_LENGTH, HOP_LENGTH, WINDOW_LENGTH, self.window, center=True,
                          return_complex=True).abs()
        return torch.log(torch.clamp(self.mel_basis @ spec, min=1e-5))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.cnn(self.unet(mel.transpose(-1, -2).unsqueeze(1)))  # (B, 3, T, M)
        return self.fc(x.transpose(1, 2).flatten(-2))

    @torch.no_grad()
    def salience(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, S) at 16 kHz -> salience (B, 1 + S // 160, 360)."""
        mel = self.mel(audio)
        n = mel.shape[-1]
        mel = nn.functional.pad(mel, (0, DOWNSAMPLE * math.ceil(n / DOWNSAMPLE) - n))
        return self(mel)[:, :n]

    def decode(self, salience: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
        """Local weighted average of the cents around each frame's peak bin (+-4 bins).

        salience (B, T, 360) -> f0 (B, T) in Hz, 0 where the peak salience is at most ``threshold``.
        """
        peak = salience.argmax(dim=-1, keepdim=True)  # (B, T, 1)
        idx = (peak + torch.arange(-4, 5, device=salience.device)).clamp(0, N_CLASS - 1)  # (B, T, 9)
        once = torch.ones_like(idx, dtype=torch.bool)
        once[..., 1:] = idx[..., 1:] != idx[..., :-1]  # bins clamped onto the edge count once
        weights = salience.gather(-1, idx) * once
        cents = (weights * self.cents[idx]).sum(-1) / weights.sum(-1).clamp_min(1e-12)
        f0 = 10.0 * 2 ** (cents / 1200)
        voiced = salience.gather(-1, peak).squeeze(-1) > threshold
        return torch.where(voiced, f0, torch.zeros_like(f0))


def load_rmvpe(model_path: str | Path | None, device: torch.device) -> RMVPE:
    """Build :class:`RMVPE` and load upstream's ``rmvpe.pt`` (``{"model": state_dict}`` or a bare state_dict).

    Raises:
        RMVPEWeightsError: no path, missing file, or a file torch cannot read as weights.
        CheckpointMismatchError: the file holds tensors that do not fit the network.
    """
    if model_path is None:
        raise RMVPEWeightsError(None, "the rmvpe f0 method needs a weight file, and none was given")
    path = Path(model_path)
    if not path.is_file():
        raise RMVPEWeightsError(path, "RMVPE weight file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError) as e:
        raise RMVPEWeightsError(path, f"cannot read as a torch weight file ({type(e).__name__}: {e})") from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RMVPEWeightsError(path, "holds no state_dict (expected a dict of tensors, or one under 'model')")
    state = {k: v for k, v in state.items() if not k.startswith("unet.tf.")}  # upstream's unused timbre filter
    model = RMVPE()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(str(path), missing, unexpected, mismatched, hint="  " + WEIGHTS_HINT)
    model.load_state_dict(state)
    LOG.info("loaded RMVPE weights from %s", path)
    return model.eval().to(device)

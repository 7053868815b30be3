"""Regenerate the Whisper-PPG parity fixture from so-vits-svc's own code (never committed).

    python tests/data/whisper_ppg/make_fixture.py PATH/TO/so-vits-svc   # a checkout of branch 4.1-Stable

Writes, beside this file: ``random_whisper.pt`` (an OpenAI-format checkpoint of a small random Whisper),
``input.npy`` (16 kHz speech from espeak-ng, 3.1 s) and ``expected.npy`` (so-vits-svc's
``WhisperPPG.encoder`` output for it, (1, dim, frames)).
"""

import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent


def main(upstream: str) -> None:
    sys.modules.setdefault("ffmpeg", types.ModuleType("ffmpeg"))  # only load_audio uses it
    sys.path.insert(0, upstream)
    from vencoder.whisper.model import ModelDimensions, Whisper
    from vencoder.WhisperPPG import WhisperPPG

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=4, n_audio_layer=2,
                           n_vocab=64, n_text_ctx=8, n_text_state=64, n_text_head=4, n_text_layer=1)
    model = Whisper(dims)
    for p in model.parameters():  # LayerNorms start at 1/0: perturb them so a mix-up would show
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = HERE / "random_whisper.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "Singing voice conversion keeps the words."], check=True)
        y, sr = sf.read(wav, dtype="float32")
    import librosa

    y = librosa.resample(y, orig_sr=sr, target_sr=16000).astype(np.float32)[:50000]
    np.save(HERE / "input.npy", y)
    enc = WhisperPPG(str(ckpt), device="cpu")
    out = enc.encoder(torch.from_numpy(y)).numpy()
    np.save(HERE / "expected.npy", out.astype(np.float32))
    print(ckpt, out.shape)


if __name__ == "__main__":
    main(sys.argv[1])

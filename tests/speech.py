"""Real synthesised speech for tests, from Debian's espeak-ng (installed by .ci/run and scripts/setup.sh).

A test that needs speech fails with a clear message when espeak-ng is missing: it is never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

ESPEAK = shutil.which("espeak-ng")


def synth_speech(path: str | Path, text: str, voice: str = "en", pitch: int = 50, speed: int = 150,
                 word_gap: int = 0) -> Path:
    """Speak ``text`` into the WAV file ``path`` (22.05 kHz mono int16, espeak-ng's native format).

    Args:
        voice: espeak-ng voice, e.g. "en", "en+f3" (female variant), "de".
        pitch: 0-99 base pitch.
        speed: words per minute.
        word_gap: extra pause between words, in units of 10 ms.
    """
    if ESPEAK is None:
        raise RuntimeError("espeak-ng is not installed: run `bash scripts/setup.sh` (apt-get install espeak-ng)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(speed), "-g", str(word_gap), "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def speech_with_pause(path: str | Path, pause_s: float = 1.0, voice: str = "en") -> tuple[Path, int, int]:
    """Two phrases with ``pause_s`` of digital silence between; returns (path, pause start, pause end) in samples."""
    path = Path(path)
    a = synth_speech(path.with_suffix(".a.wav"), "The quick brown fox jumps over the lazy dog.", voice=voice)
    b = synth_speech(path.with_suffix(".b.wav"), "Singing voice conversion keeps the melody.", voice=voice)
    ya, sr = sf.read(a, dtype="float32")
    yb, _ = sf.read(b, dtype="float32")
    gap = np.zeros(int(pause_s * sr), dtype=np.float32)
    sf.write(path, np.concatenate([ya, gap, yb]), sr)
    return path, len(ya), len(ya) + len(gap)

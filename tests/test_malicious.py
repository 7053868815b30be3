"""Files a user is handed (feature index, content encoders, F0 model, enhancer vocoder) never run code.

Each loader gets a file whose unpickling would create ``MARKER`` (the ``evil`` pattern of
tests/test_crash_safe.py): it must refuse the file with a UserFacingError naming it, and the marker must
not exist afterwards. The voice models, resume/init checkpoints and the k-means file are covered in
test_crash_safe.py, test_sovits_dataset.py and test_retrieval.py.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.errors import UserFacingError
from tests.test_crash_safe import _RunsCommand


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER"


def _evil_torch_file(path, marker, **tensors):
    """A torch file with plausible contents and an object whose unpickling runs a command."""
    torch.save({**tensors, "payload": _RunsCommand(marker)}, path)
    return path


def _refused(load, path, marker):
    with pytest.raises(UserFacingError) as info:
        load(path)
    assert not marker.exists(), "the file's code ran"
    assert path.name in str(info.value), str(info.value)
    return str(info.value)


def test_feature_index_pickle_is_refused(tmp_path, marker):
    from svc_pl.infer.retrieval import FeatureIndex

    pkl = tmp_path / "feature_and_index.pkl"  # so-vits-svc's feature index is a pickle
    pkl.write_bytes(pickle.dumps({0: _RunsCommand(marker)}))
    message = _refused(FeatureIndex.load, pkl, marker)
    assert "pickle" in message
    folder = tmp_path / "index"  # a folder whose manifest names a pickle instead of faiss files
    folder.mkdir()
    (folder / "feature_and_index.pkl").write_bytes(pkl.read_bytes())
    with pytest.raises(UserFacingError):
        FeatureIndex.load(folder)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["vec768l12", "vec256l9", "hubertsoft"])
def test_hubert_contentvec_checkpoint_is_refused(tmp_path, marker, name):
    from svc_pl.data.content import load_content_encoder

    path = _evil_torch_file(tmp_path / "checkpoint_best_legacy_500.pt", marker,
                            model={"encoder.layers.0.fc1.weight": torch.zeros(4, 4)}, cfg={"model": {}})
    _refused(lambda p: load_content_encoder(name, p), path, marker)


@pytest.mark.parametrize("name", ["whisper-ppg", "whisper-ppg-large"])
def test_whisper_checkpoint_is_refused(tmp_path, marker, name):
    from svc_pl.data.content import load_content_encoder

    path = _evil_torch_file(tmp_path / "medium.pt", marker, dims={"n_mels": 80},
                            model_state_dict={"encoder.conv1.weight": torch.zeros(4, 80, 3)})
    _refused(lambda p: load_content_encoder(name, p), path, marker)


def test_rmvpe_model_is_refused(tmp_path, marker):
    from svc_pl.data.pitch import get_f0_extractor

    path = _evil_torch_file(tmp_path / "rmvpe.pt", marker, model={"cnn.weight": torch.zeros(3, 16, 3, 3)})
    _refused(lambda p: get_f0_extractor("rmvpe", model_path=str(p)), path, marker)


def test_enhancer_vocoder_is_refused(tmp_path, marker):
    from svc_pl.infer.enhancer import load_openvpi_vocoder
    from tests.test_enhancer import CONFIG

    folder = tmp_path / "nsf_hifigan"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    path = _evil_torch_file(folder / "model", marker, generator={"conv_pre.bias": torch.zeros(32)})
    _refused(load_openvpi_vocoder, path, marker)
    _refused(lambda p: load_openvpi_vocoder(p.parent), path, marker)


def test_cli_refuses_an_encoder_that_runs_code(tmp_path, marker, capsys):
    """Through svc-pl infer: one clear error line, no traceback, nothing run, no output written."""
    from svc_pl.cli import main as cli_main
    from tests.test_infer import write_tiny_voice

    write_tiny_voice(tmp_path)
    wav = tmp_path / "in.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32), 16000)
    enc = _evil_torch_file(tmp_path / "hubert.pt", marker, model={"w": torch.zeros(1)})
    code = cli_main(["infer", str(wav), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "G_1.pth"),
                     "--content-encoder", str(enc), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and not marker.exists() and "Traceback" not in err, err[-2000:]
    assert "hubert.pt" in err
    assert not list((tmp_path / "out").rglob("*.wav")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("reader", ["run", "sovits", "diffusion"])
def test_one_reader_tells_a_file_that_runs_code_from_a_damaged_one(tmp_path, marker, reader):
    """Run ``.ckpt``, so-vits-svc ``G_*.pth`` and diffusion ``model_*.pt`` go through one weights-only reader: a
    pickle naming code is refused as unsafe, bytes that are no pickle are named as damaged (not as unsafe)."""
    from svc_pl.compat.checkpoint import read_checkpoint
    from svc_pl.compat.diffusion import read_diffusion_checkpoint
    from svc_pl.errors import UnsafeCheckpointError
    from svc_pl.run_checkpoint import read_ckpt

    read = {"run": read_ckpt, "sovits": read_checkpoint, "diffusion": read_diffusion_checkpoint}[reader]
    evil = _evil_torch_file(tmp_path / "evil.pt", marker, state_dict={}, model={})
    message = _refused(read, evil, marker)
    with pytest.raises(UnsafeCheckpointError):
        read(evil)
    assert "contains objects other than tensors and plain data" in message
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserFacingError, match=r"damaged.pt: cannot be read as a checkpoint \(") as info:
        read(damaged)
    assert not isinstance(info.value, UnsafeCheckpointError)
    truncated = tmp_path / "truncated.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "model": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:700])
    with pytest.raises(UserFacingError, match=r"truncated.pt: cannot be read as a checkpoint \(") as info:
        read(truncated)
    assert not isinstance(info.value, UnsafeCheckpointError)

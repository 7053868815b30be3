"""svc-pl preprocess on real files: formats, bad inputs reported not fatal, resume, the data module."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.data.datamodule import SVCDataModule
from svc_pl.data.layout import DatasetInfo, load_bundle
from tests.speech import synth_speech


def _raw(root):
    a = synth_speech(root / "alice" / "one.wav", "The quick brown fox jumps over the lazy dog.", voice="en+f3")
    y, sr = sf.read(a, dtype="float32")
    synth_speech(root / "alice" / "two.wav", "Singing voice conversion keeps the melody.", voice="en+f3")
    b = synth_speech(root / "bob" / "tmp.wav", "She sells sea shells by the sea shore.", voice="en+m3")
    yb, _ = sf.read(b, dtype="float32")
    b.unlink()
    import librosa

    y48 = librosa.resample(yb, orig_sr=sr, target_sr=48000)
    sf.write(root / "bob" / "stereo48k.flac", np.stack([y48, 0.5 * y48], 1), 48000)
    sf.write(root / "bob" / "vorbis.ogg", y, sr)
    (root / "bob" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (root / "bob" / "empty.wav").write_bytes(b"")
    sf.write(root / "bob" / "silent.wav", np.zeros(sr * 2, np.float32), sr)
    sf.write(root / "bob" / "short.wav", y[: sr // 10], sr)
    bad = y.copy()
    bad[100] = np.nan
    sf.write(root / "bob" / "nan.wav", bad, sr, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    raw = _raw(root / "raw")
    code = cli_main(["preprocess", str(raw), str(root / "out"), "--random-encoder", "--workers", "1",
                     "--val-per-speaker", "1", "--no-progress"])
    return root, code


def test_outputs_and_report(preprocessed):
    root, code = preprocessed
    out = root / "out"
    assert code == 0
    info = DatasetInfo.load(out)
    assert info.speakers == {"alice": 0, "bob": 1} and info.unit_dim == 768 and info.sampling_rate == 44100
    train = (out / "train.txt").read_text().split()
    val = (out / "val.txt").read_text().split()
    assert train and val and not set(train) & set(val)
    for rel in train + val:
        b = load_bundle(out / rel)
        n = b["f0"].shape[0]
        assert b["units"].shape == (768, n) and b["audio"].shape[0] == n * 512 and b["audio"].dtype == torch.int16
        assert b["voiced"].shape == b["volume"].shape == (n,) and torch.isfinite(b["units"].float()).all()
        assert b["voiced"].sum() > 0
    report = json.loads((out / "report.json").read_text())
    problems = {p["file"].split("/")[-1]: p["problem"] for p in report["problems"]}
    assert set(problems) == {"corrupt.wav", "empty.wav", "silent.wav", "short.wav", "nan.wav"}
    assert "cannot be read" in problems["corrupt.wav"] and "empty" in problems["empty.wav"]
    assert "silent" in problems["silent.wav"] and "short" in problems["short.wav"] and "NaN" in problems["nan.wav"]
    assert "corrupt.wav" in (out / "report.txt").read_text()
    assert any("stereo48k" in r for r in train + val) and any("vorbis" in r for r in train + val)


def test_rerun_resumes(preprocessed):
    root, _ = preprocessed
    out = root / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert cli_main(["preprocess", str(root / "raw"), str(out), "--random-encoder", "--workers", "1",
                     "--no-progress", "--val-per-speaker", "1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert before == after


def test_data_module_reads_it(preprocessed):
    root, _ = preprocessed
    dm = SVCDataModule(str(root / "out"), batch_size=2, num_workers=0, max_frames=60)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.units.shape[:2] == (2, 768) and batch.spec.shape[1] == 1025
    assert batch.audio.shape[-1] == batch.units.shape[-1] * 512


def test_nothing_usable_exits_nonzero(tmp_path, capsys):
    (tmp_path / "raw" / "x").mkdir(parents=True)
    (tmp_path / "raw" / "x" / "bad.wav").write_bytes(b"nope")
    assert cli_main(["preprocess", str(tmp_path / "raw"), str(tmp_path / "o"), "--random-encoder",
                     "--workers", "1", "--no-progress"]) == 1
    assert "bad.wav" in capsys.readouterr().err


@pytest.mark.slow
def test_worker_processes(tmp_path):
    raw = tmp_path / "raw"
    for i in range(3):
        synth_speech(raw / "s" / f"{i}.wav", f"Number {i} is here today.")
    assert cli_main(["preprocess", str(raw), str(tmp_path / "o"), "--random-encoder", "--workers", "2",
                     "--f0", "dio", "--no-progress", "--val-per-speaker", "1"]) == 0
    assert len(list((tmp_path / "o").rglob("*.pt"))) == 3


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_workers_that_cannot_start_stop_the_run_with_the_reason(tmp_path, capsys):
    """A worker whose F0 tracker fails to load (RMVPE weights missing) ends the run with the reason: a Pool
    initializer that raises would be restarted forever and the run would hang without a word."""
    raw = tmp_path / "raw"
    for i in range(2):
        synth_speech(raw / "s" / f"{i}.wav", f"Number {i} is here today.")
    missing = tmp_path / "no_rmvpe.pt"
    assert cli_main(["preprocess", str(raw), str(tmp_path / "o"), "--random-encoder", "--workers", "2",
                     "--f0", "rmvpe", "--f0-model", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "workers could not start" in err and "no_rmvpe.pt" in err and "--workers 1" in err
    assert not list((tmp_path / "o").rglob("*.pt"))

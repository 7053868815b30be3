"""A shortened `svc-pl demo` end to end, then re-run to show it resumes."""

import json

import pytest
import soundfile as sf

from svc_pl.cli import main as cli_main


@pytest.mark.slow
def test_short_demo_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", str(out), "--max-steps", "16", "--phrases", "2", "--workers", "1", "--no-progress"]
    assert cli_main(args) == 0
    converted = out / "converted" / "speech_0.wav"
    src_info, out_info = sf.info(out / "raw" / "baritone" / "speech_0.wav"), sf.info(converted)
    assert out_info.samplerate == 16000
    assert abs(out_info.duration - src_info.duration) < 0.05
    assert (out / "conversion.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "evaluation.json").read_text())
    assert {"f0_median_cents", "f0_rms_cents", "vuv_agreement"} <= set(report)
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    text = capsys.readouterr().out
    assert "FIXED RANDOM" in text and "tensorboard --logdir" in text
    # a second run finds everything done: no new preprocessing, training resumes at its last step
    before = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.pt")}
    assert cli_main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.pt")}
    assert "resuming from" in capsys.readouterr().out

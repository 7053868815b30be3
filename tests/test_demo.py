"""A shortened `svc-pl demo` end to end (real Whisper tiny.en units, the shipped base fine-tuned), with real
figures asserted, then re-run to show it resumes."""

import json

import pytest
import soundfile as sf

from svc_pl.cli import main as cli_main


@pytest.mark.slow
def test_short_demo_converts_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", str(out), "--max-steps", "40", "--phrases", "3", "--workers", "1", "--no-progress"]
    assert cli_main(args) == 0
    for name in ("speech_16.wav", "sung_5.wav"):
        src_info = sf.info(out / "held_out" / "baritone" / name)
        out_info = sf.info(out / "converted" / name)
        assert out_info.samplerate == 16000
        assert abs(out_info.duration - src_info.duration) < 0.05
    assert (out / "conversion.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "evaluation.json").read_text())
    mean = report["mean"]
    # real figures, not only files: pitch followed (an untrained or broken model gives >1000 cents)
    assert mean["f0_median_cents"] <= 50, mean
    assert mean["f0_gross_error_rate"] <= 0.20, mean
    assert mean["vuv_agreement"] >= 0.8, mean
    assert set(report["files"]) == {"speech_16.wav", "sung_5.wav"}
    # both speaker judges and the words (the asr extra is in dev): WER against the source and the lyrics
    for key in ("voicefilter_similarity_to_target", "resemblyzer_similarity_to_source", "wer_vs_source",
                "wer_vs_lyrics", "cer_vs_lyrics"):
        assert key in mean, key
    assert report["files"]["sung_5.wav"]["lyrics"] == "moon light falling on the water"
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    text = capsys.readouterr().out
    assert "similarity_to_target" in text and "tensorboard --logdir" in text
    # a second run finds everything done: no new preprocessing, training already at its last step
    before = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.pt")}
    assert cli_main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.pt")}
    assert "resuming from" in capsys.readouterr().out

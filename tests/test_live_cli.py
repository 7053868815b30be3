"""`svc-pl live` from a file (the same code path as a microphone): output length, stats, latency as reported,
its F0 default and one clear line for a file that is not audio."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from svc_pl.cli import main


def test_live_streams_a_file_and_writes_its_stats(tmp_path, monkeypatch, capsys):
    from svc_pl.infer.stream import StreamConverter
    from tests.test_infer import write_tiny_voice

    voice = write_tiny_voice(tmp_path / "voice")
    rate = 44100
    t = np.arange(int(1.5 * rate)) / rate
    sf.write(tmp_path / "in.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    seen = {}
    build = StreamConverter.from_converter.__func__

    def spy(cls, converter, options=None, **kw):
        seen["f0"], seen["kw"] = options.f0_method, kw
        return build(cls, converter, options, **kw)

    monkeypatch.setattr(StreamConverter, "from_converter", classmethod(spy))
    capsys.readouterr()
    rc = main(["live", "-m", str(voice / "G_1.pth"), "--random-encoder", "--input-file", str(tmp_path / "in.wav"),
               "--output-file", str(tmp_path / "out.wav"), "--as-fast-as-possible", "--block-seconds", "0.1",
               "--stats-json", str(tmp_path / "stats.json")])
    # a loaded machine may miss a deadline: then the command says so in one line, after writing its output and stats
    assert rc == 0 or (rc == 2 and "did not keep up" in capsys.readouterr().err), rc
    out, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr == rate and len(out) == len(t) and np.isfinite(out).all()
    stats = json.loads((tmp_path / "stats.json").read_text())
    for key in ("latency_seconds", "block_seconds", "blocks", "deadline_misses", "block_compute_p50_seconds",
                "block_compute_p95_seconds", "block_compute_max_seconds"):
        assert key in stats, key
    lat = round(stats["latency_seconds"] * rate)
    assert 0 < stats["latency_seconds"] < 0.2 and stats["blocks"] > 0
    assert not out[:lat].any() and np.abs(out[lat:]).max() > 1e-3  # silent for the latency, then converted
    assert seen["f0"] == "pm"  # the measured choice for live (bench/bench_live.py --f0-study)
    assert seen["kw"]["lookahead_seconds"] == 0.02 and seen["kw"]["search_seconds"] is None


def test_live_names_a_file_that_is_not_audio(tmp_path, capsys):
    from tests.test_infer import write_tiny_voice

    voice = write_tiny_voice(tmp_path / "voice")
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    rc = main(["live", "-m", str(voice / "G_1.pth"), "--random-encoder", "--input-file", str(bad),
               "--output-file", str(tmp_path / "out.wav"), "--as-fast-as-possible"])
    err = capsys.readouterr().err
    assert rc != 0 and "notes.wav" in err and "Traceback" not in err

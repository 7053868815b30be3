"""README promises that had no test of their own: the conversion flags users go through (--format,
--f0-threshold, --pad-seconds, --auto-predict-f0, --loudness-mix), batched conversion, and the bucket
sampler's sharding across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from svc_pl.cli import main as cli_main
from svc_pl.data.dataset import BucketSampler
from svc_pl.infer.converter import ConvertOptions
from tests.test_infer import converter, lively_voice, speech, voice  # noqa: F401  (module fixtures)


def _infer(*args):
    return cli_main(["infer", *map(str, args), "--random-encoder", "--no-progress", "--precision", "fp32",
                     "--backend", "torch"])  # spies watch the torch synthesizer


@pytest.fixture(scope="module")
def clip(speech, tmp_path_factory):  # noqa: F811
    """The first phrase of the test speech (about 3 s), written as float WAV."""
    _, y, sr, a, _ = speech
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, y[:a], sr, subtype="FLOAT")
    return path, y[:a], sr


def _record_infer(monkeypatch):
    """Calls of Synthesizer.infer (any instance): (units shape, keyword arguments)."""
    from svc_pl.synthesizer import Synthesizer

    calls = []
    infer = Synthesizer.infer

    def record(self, c, f0, uv, speaker, **kw):
        calls.append((tuple(c.shape), dict(kw)))
        return infer(self, c, f0, uv, speaker, **kw)

    monkeypatch.setattr(Synthesizer, "infer", record)
    return calls


@pytest.mark.slow
def test_format_writes_the_container_asked_for(tmp_path, voice, clip):  # noqa: F811
    path, y, sr = clip
    for fmt, name in (("flac", "FLAC"), ("ogg", "OGG"), ("wav", "WAV")):
        assert _infer(path, "-o", tmp_path / fmt, "-m", voice / "G_1.pth", "--format", fmt) == 0
        files = list((tmp_path / fmt).iterdir())
        assert [f.name for f in files] == [f"clip.{fmt}"], files
        info = sf.info(files[0])
        assert info.format == name and info.samplerate == 16000
        assert abs(info.frames - round(len(y) * 16000 / sr)) <= 1 or fmt == "ogg"


@pytest.mark.slow
def test_auto_predict_f0_reaches_the_model(tmp_path, lively_voice, clip, monkeypatch):  # noqa: F811
    path, _, _ = clip
    calls = _record_infer(monkeypatch)
    model_path = lively_voice[1]
    assert _infer(path, "-o", tmp_path / "plain", "-m", model_path) == 0
    assert calls and not any(kw["predict_f0"] for _, kw in calls)
    calls.clear()
    assert _infer(path, "-o", tmp_path / "auto", "-m", model_path, "--auto-predict-f0") == 0
    assert calls and all(kw["predict_f0"] for _, kw in calls)
    plain, _ = sf.read(tmp_path / "plain" / "clip.wav")
    auto, _ = sf.read(tmp_path / "auto" / "clip.wav")
    assert plain.shape == auto.shape and np.sqrt(np.mean((plain - auto) ** 2)) > 1e-3 * np.sqrt(np.mean(plain**2))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "loose", "strict"), [("fcpe", "0.006", "0.6"), ("pm", "0.3", "0.9")])
def test_f0_threshold_reaches_the_extractor(tmp_path, voice, clip, monkeypatch, method, loose, strict):  # noqa: F811
    """--f0-threshold is the extractor's voicing threshold (fcpe's; pm's is Praat's, 0.6 by default as upstream):
    a strict one leaves fewer voiced frames."""
    import svc_pl.data.pitch as pitch

    made, voiced = [], []
    get = pitch.get_f0_extractor

    def spy(method, *a, **kw):
        made.append((method, kw.get("threshold")))
        extractor = get(method, *a, **kw)
        compute = extractor.compute

        def counted(*ca, **ckw):
            track = compute(*ca, **ckw)
            voiced.append(float(track.voiced.mean()))
            return track

        extractor.compute = counted
        return extractor

    monkeypatch.setattr(pitch, "get_f0_extractor", spy)
    path, _, _ = clip
    fractions = {}
    for threshold in (loose, strict):
        voiced.clear()
        assert _infer(path, "-o", tmp_path / threshold, "-m", voice / "G_1.pth", "--f0", method,
                      "--f0-threshold", threshold) == 0
        fractions[threshold] = np.mean(voiced)
    assert made == [(method, float(loose)), (method, float(strict))]
    assert fractions[strict] < fractions[loose], fractions


def test_f0_threshold_on_world_methods_warns(caplog):
    import logging

    from svc_pl.data.pitch import get_f0_extractor

    with caplog.at_level(logging.WARNING, logger="svc_pl"):
        get_f0_extractor("dio", 16000, 320, threshold=0.3)
    assert any("no effect on dio" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_pad_seconds_pads_each_chunk_and_keeps_the_duration(converter, clip, monkeypatch):  # noqa: F811
    _, y, sr = clip
    calls = _record_infer(monkeypatch)
    out = {}
    frames = {}
    for pad in (0.1, 0.5):
        calls.clear()
        opts = ConvertOptions(precision="fp32", backend="torch", pad_seconds=pad, length_bucket_seconds=0, decode_window=0)
        out[pad] = converter.convert(y, sr, opts)
        frames[pad] = [shape[-1] for shape, _ in calls]
    assert out[0.1].shape == out[0.5].shape == (round(len(y) * 16000 / sr),)
    assert len(frames[0.1]) == len(frames[0.5]) >= 1
    # 0.4 s more silence on each side: 2 * 0.4 * 16000 / 320 = 40 frames more per chunk
    assert [b - a for a, b in zip(frames[0.1], frames[0.5])] == [40] * len(frames[0.1])


@pytest.mark.slow
def test_loudness_mix_follows_the_input_envelope(tmp_path, lively_voice, clip):  # noqa: F811
    """--loudness-mix 0 imposes the input's RMS envelope (0.5 s frames): a quiet input gives a quiet output
    in proportion; at 1 (default) the model's own loudness is kept."""
    path, y, sr = clip
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, 0.2 * y, sr, subtype="FLOAT")
    out = {}
    for name, src, mix in (("loud0", path, "0"), ("quiet0", quiet, "0"), ("loud1", path, "1"), ("quiet1", quiet, "1")):
        assert _infer(src, "-o", tmp_path / name, "-m", lively_voice[1], "--loudness-mix", mix) == 0
        out[name], _ = sf.read(next((tmp_path / name).iterdir()), dtype="float32")

    def rms(x):
        return np.sqrt(np.mean(x.astype(np.float64) ** 2))

    ratio0 = rms(out["quiet0"]) / rms(out["loud0"])
    ratio1 = rms(out["quiet1"]) / rms(out["loud1"])
    assert abs(ratio0 - 0.2) < 0.03, ratio0  # follows the input
    assert abs(ratio1 - 0.2) > 0.1, ratio1  # the model's loudness, not the input's
    from svc_pl.data.audio import resample

    y16 = resample(y, sr, 16000)
    half = 8000
    env_in = [rms(y16[i:i + half]) for i in range(0, len(y16) - half, half)]
    corr = {name: np.corrcoef(env_in, [rms(out[name][i:i + half]) for i in range(0, len(y16) - half, half)])[0, 1]
            for name in ("loud0", "loud1")}
    assert corr["loud0"] > corr["loud1"] + 0.2, corr  # the envelope follows the input's


@pytest.mark.slow
def test_batched_conversion_equals_unbatched(converter, speech, monkeypatch):  # noqa: F811
    _, y, sr, _, _ = speech
    calls = _record_infer(monkeypatch)
    opts = dict(precision="fp32", backend="torch", clip_seconds=0.6, crossfade_seconds=0.1, min_chunk_seconds=1.0)
    one = converter.convert(y, sr, ConvertOptions(batch_size=1, **opts))
    assert max(shape[0] for shape, _ in calls) == 1
    calls.clear()
    many = converter.convert(y, sr, ConvertOptions(batch_size=4, **opts))
    assert max(shape[0] for shape, _ in calls) > 1  # clips really shared a batch
    assert np.allclose(one, many, atol=1e-5), np.abs(one - many).max()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_bucket_sampler_shards_across_ranks(world):
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, 23).tolist()
    batch = 3
    samplers = [BucketSampler(lengths, batch, num_replicas=world, rank=r, seed=7, n_buckets=4) for r in range(world)]
    for epoch in (0, 1):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            items = list(s)
            assert len(items) == len(s) and all(e == epoch for _, e in items)
            per_rank.append([i for i, _ in items])
        assert len({len(p) for p in per_rank}) == 1  # every rank runs the same number of steps
        batches = [tuple(p[i:i + batch]) for p in per_rank for i in range(0, len(p), batch)]
        assert set().union(*map(set, batches)) == set(range(len(lengths)))  # every clip trained on
        # clips repeat only to fill buckets and ranks: at most one batch per rank of padding over the clip count
        assert sum(len(b) for b in batches) - len(lengths) < batch * (4 + world)
        buckets = [set(b) for b in samplers[0].buckets]
        assert all(any(set(b) <= bucket for bucket in buckets) for b in batches)  # a batch is one bucket's
        if world > 1:  # ranks get different batches
            assert per_rank[0] != per_rank[1]
        again = BucketSampler(lengths, batch, num_replicas=world, rank=0, seed=7, n_buckets=4)
        again.set_epoch(epoch)
        assert [i for i, _ in again] == per_rank[0]  # the same epoch gives the same batches
    samplers[0].set_epoch(0)
    first = list(samplers[0])
    samplers[0].set_epoch(1)
    assert list(i for i, _ in samplers[0]) != [i for i, _ in first]

"""Conversion: whole files in memory, the svc-pl infer command, and multi-process conversion."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.compat import save_sovits, sovits_config_for, write_json_atomic
from svc_pl.data.content import random_content_encoder
from svc_pl.infer.converter import Converter, ConvertOptions
from svc_pl.infer.loading import load_voice_model
from svc_pl.synthesizer import Synthesizer
from tests.speech import speech_with_pause, synth_speech

REPO = Path(__file__).resolve().parents[1]
TINY = dict(inter_channels=16, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=1, kernel_size=3,
            p_dropout=0.0, resblock="1", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
            upsample_rates=[5, 4, 4, 4], upsample_initial_channel=32, upsample_kernel_sizes=[11, 8, 8, 8],
            gin_channels=16, ssl_dim=768, n_speakers=3, sampling_rate=16000, use_depthwise_conv=True,
            flow_share_parameter=True)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return write_tiny_voice(tmp_path_factory.mktemp("voice"))


def write_tiny_voice(d):
    """A random TINY so-vits-svc model (speakers alto, tenor, bass) as ``d/G_1.pth`` + ``d/config.json``; returns d."""
    torch.manual_seed(0)
    net = Synthesizer(**TINY, spec_channels=513, segment_size=20)
    cfg = sovits_config_for(TINY, {"alto": 0, "tenor": 1, "bass": 2}, hop_length=320, filter_length=1024,
                            win_length=1024, segment_size_samples=6400)
    save_sovits(net, d / "G_1.pth")
    write_json_atomic(d / "config.json", cfg.to_dict())
    return d


@pytest.fixture(scope="module")
def converter(voice):
    return Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path, a, b = speech_with_pause(tmp_path_factory.mktemp("sp") / "speech.wav", pause_s=1.5)
    y, sr = sf.read(path, dtype="float32")
    return path, y, sr, a, b


def test_output_length_and_silence(converter, speech):
    _, y, sr, a, b = speech
    out = converter.convert(y, sr, ConvertOptions(speaker="tenor", transpose=3, min_chunk_seconds=1.0))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert abs(len(out) - round(len(y) * 16000 / sr)) <= 1
    pause = out[int(a * 16000 / sr) + 9600:int(b * 16000 / sr) - 9600]  # inside the pause, past the 0.5 s kept
    assert np.abs(pause).max() == 0.0
    assert np.abs(out[: int(a * 16000 / sr) - 4000]).max() > 0  # speech was converted, not zeroed
    assert set(converter.timings) >= {"resample", "slicing", "f0", "units", "synthesis"}


def test_seeded_conversion_is_reproducible(converter, speech):
    _, y, sr, _, _ = speech
    opts = ConvertOptions(speaker=1, noise_scale=0.8)
    assert np.array_equal(converter.convert(y, sr, opts), converter.convert(y, sr, opts))


def test_forced_clips_with_crossfade(converter, speech):
    _, y, sr, _, _ = speech
    out = converter.convert(y, sr, ConvertOptions(clip_seconds=0.7, crossfade_seconds=0.1))
    assert abs(len(out) - round(len(y) * 16000 / sr)) <= 1 and np.isfinite(out).all()


@pytest.fixture(scope="module")
def lively_voice(voice, tmp_path_factory):
    """The test voice made to respond to its inputs: with random weights the output is mostly the last
    conv's bias (a DC offset) and speakers differ by about 1e-4. Bias removed, output gain x5, speaker
    embeddings x100: speakers sound clearly apart and units move the audio by about 0.3 % of its RMS.
    Returns the loaded model and its so-vits-svc G_1.pth (config.json beside it) for the CLI."""
    import shutil

    ckpt = torch.load(voice / "G_1.pth", map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    sd["emb_g.weight"] = sd["emb_g.weight"] * 100
    sd["dec.conv_post.bias"] = torch.zeros_like(sd["dec.conv_post.bias"])
    sd["dec.conv_post.weight_g"] = sd["dec.conv_post.weight_g"] * 5
    d = tmp_path_factory.mktemp("lively")
    torch.save(ckpt, d / "G_1.pth")
    shutil.copy(voice / "config.json", d / "config.json")
    return load_voice_model(d / "G_1.pth"), d / "G_1.pth"


@pytest.mark.slow
def test_speaker_mixes(converter, lively_voice, speech, tmp_path):
    """In fp32: a name equals its one-hot mix; keyframes give the first speaker at the start, the static mix
    on the plateau in the middle and the second speaker at the end; a weighted mix equals a model whose
    speaker embedding is the weighted sum of the two; the CLI's --speaker-mix and --speaker-keyframes give
    the same audio as the API."""
    model, model_path = lively_voice
    conv = Converter(model, converter.encoder)
    _, y, sr, _, _ = speech
    y = y[: sr * 2]

    def run(c=conv, **kw):
        return c.convert(y, sr, ConvertOptions(precision="fp32", **kw))

    alto, tenor = run(speaker="alto"), run(speaker="tenor")
    mix_spec = {"alto": 0.7, "tenor": 0.3}
    mix = run(speaker=mix_spec)
    assert np.allclose(run(speaker={"alto": 1.0}), alto, atol=1e-6)
    tol, apart = 1e-5, 3e-3  # same audio up to float sums / clearly different audio
    assert np.abs(alto - tenor).max() > 30 * apart and np.abs(mix - alto).max() > apart
    assert np.abs(mix - tenor).max() > apart

    # the weighted mix is the weighted embedding (so-vits-svc's spk_mix_map)
    weighted = copy.deepcopy(model)
    with torch.no_grad():
        emb = weighted.net.emb_g.weight
        emb[model.speaker_id("alto")] = 0.7 * emb[model.speaker_id("alto")] + 0.3 * emb[model.speaker_id("tenor")]
    assert np.abs(run(Converter(weighted, converter.encoder), speaker="alto") - mix).max() < tol

    # alto until 0.6 s, the 0.7/0.3 mix from 0.62 s to 1.3 s, tenor from 1.32 s (linear in between)
    keyframes = [(0.0, {"alto": 1}), (0.6, {"alto": 1}), (0.62, mix_spec), (1.3, mix_spec), (1.32, {"tenor": 1}),
                 (2.0, {"tenor": 1})]
    frames = run(speaker_keyframes=keyframes)
    start, middle, end = slice(0, 8000), slice(11200, 19200), slice(23200, 32000)  # 0.1 s from each change
    assert frames.shape == alto.shape
    assert np.abs(frames[start] - alto[start]).max() < tol
    assert np.abs(frames[middle] - mix[middle]).max() < tol
    assert np.abs(frames[end] - tenor[end]).max() < tol
    for ref in (alto, tenor):
        assert np.abs(frames[middle] - ref[middle]).max() > apart
    assert np.abs(frames[start] - tenor[start]).max() > apart and np.abs(frames[end] - alto[end]).max() > apart

    # the same through the CLI (16-bit output: compare to about one quantisation step)
    src = tmp_path / "clip.wav"
    sf.write(src, y, sr, subtype="FLOAT")
    kf_file = tmp_path / "keyframes.json"
    kf_file.write_text(json.dumps([[t, w] for t, w in keyframes]))
    common = ["-m", model_path, "--precision", "fp32"]
    assert _infer(src, "-o", tmp_path / "mix", *common, "--speaker-mix", "alto:0.7,tenor:0.3") == 0
    assert _infer(src, "-o", tmp_path / "kf", *common, "--speaker-keyframes", kf_file) == 0
    cli_mix, out_sr = sf.read(tmp_path / "mix" / "clip.wav", dtype="float32")
    cli_frames, _ = sf.read(tmp_path / "kf" / "clip.wav", dtype="float32")
    assert out_sr == 16000 and cli_mix.shape == mix.shape == cli_frames.shape
    assert np.abs(cli_mix - mix).max() < 1e-4 and np.abs(cli_frames - frames).max() < 1e-4


def test_unknown_speaker_lists_speakers(converter, speech):
    _, y, sr, _, _ = speech
    from svc_pl.errors import UserFacingError

    with pytest.raises(UserFacingError, match="alto"):
        converter.convert(y, sr, ConvertOptions(speaker="soprano"))


def _infer(*args):
    return cli_main(["infer", *map(str, args), "--random-encoder", "--no-progress"])


def test_cli_mirrors_tree_and_reports_bad_files(tmp_path, voice, capsys):
    src = tmp_path / "in"
    synth_speech(src / "a" / "one.wav", "Hello there, how are you?")
    y, sr = sf.read(src / "a" / "one.wav", dtype="float32")
    sf.write(src / "a" / "b" / "two.flac" if (src / "a" / "b").mkdir() is None else None, np.stack([y, y], 1), sr)
    (src / "a" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    code = _infer(src / "a", "-o", tmp_path / "out", "-m", voice / "G_1.pth", "-s", "alto", "-t", "2")
    err = capsys.readouterr().err
    assert code == 1 and "broken.wav" in err
    assert (tmp_path / "out" / "a" / "one.wav").is_file() and (tmp_path / "out" / "a" / "b" / "two.flac").is_file()
    assert not (tmp_path / "out" / "a" / "broken.wav").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    info = sf.info(tmp_path / "out" / "a" / "one.wav")
    assert info.samplerate == 16000 and abs(info.frames - round(len(y) * 16000 / sr)) <= 1


def test_cli_fails_fast_on_bad_model_or_speaker(tmp_path, voice, speech, capsys):
    path = speech[0]
    assert _infer(path, "-o", tmp_path / "o", "-m", voice / "G_1.pth", "-s", "nobody") == 2
    assert "nobody" in capsys.readouterr().err
    cfg = json.loads((voice / "config.json").read_text())
    cfg["model"]["hidden_channels"] = 24
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    assert _infer(path, "-o", tmp_path / "o", "-m", voice / "G_1.pth", "-c", tmp_path / "bad.json") == 2
    assert "mis-shaped" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.wav"))


@pytest.mark.slow
def test_two_process_conversion_equals_one_process(tmp_path, voice):
    from tests.rank_probe import probe_env, read_probe

    src = tmp_path / "in"
    for i, text in enumerate(["One two three.", "Four five six seven.", "Eight nine.", "Ten eleven twelve."]):
        synth_speech(src / f"{i}.wav", text)
    common = [sys.executable, "-m", "svc_pl.cli", "infer", str(src), "-m", str(voice / "G_1.pth"), "-s", "tenor",
              "--random-encoder", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # same thread count: same float sums
    for out, extra in (("one", []), ("two", ["--devices", "2", "--accelerator", "cpu"])):
        proc = subprocess.run([*common, "-o", str(tmp_path / out), *extra], capture_output=True, text=True,
                              env=probe_env(tmp_path / f"probe_{out}", env, REPO), timeout=900, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.wav"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.wav"))
    assert one == two and len(one) == 4
    for rel in one:
        a, _ = sf.read(tmp_path / "one" / rel)
        b, _ = sf.read(tmp_path / "two" / rel)
        assert np.array_equal(a, b), rel
    # two ranks really ran, and each converted its own files: every file once
    rows = read_probe(tmp_path / "probe_two", "convert")
    assert {r["world"] for r in rows} == {2}
    per_rank = {rank: sorted(f for r in rows if r["rank"] == rank for f in r["files"]) for rank in (0, 1)}
    assert per_rank[0] and per_rank[1], per_rank
    assert sorted(per_rank[0] + per_rank[1]) == sorted(str(src / f"{i}.wav") for i in range(4)), per_rank
    assert {r["world"] for r in read_probe(tmp_path / "probe_one", "convert")} == {1}


@pytest.mark.slow
def test_cli_with_enhancer_cluster_and_index(tmp_path, lively_voice, speech):
    """Each of --cluster-model, --feature-index and --enhancer changes the audio on its own (so none of them
    is silently dropped), each differently, and a ratio of 0 leaves the plain output untouched."""
    from svc_pl.infer.cluster import ClusterModel
    from svc_pl.infer.retrieval import FeatureIndex
    from tests.test_enhancer import _write_vocoder

    rng = np.random.default_rng(0)
    units = {name: rng.standard_normal((400, 768)).astype(np.float32) for name in ("alto", "tenor", "bass")}
    ClusterModel.fit(units, n_clusters=8).save(tmp_path / "kmeans.pt")
    FeatureIndex.build(units).save(tmp_path / "index")
    _write_vocoder(tmp_path / "vocoder")
    _, y, sr, _, _ = speech
    path = tmp_path / "clip.wav"
    sf.write(path, y[: 2 * sr], sr, subtype="FLOAT")
    base = ["-m", lively_voice[1], "-s", "alto", "--seed", "1", "--precision", "fp32"]
    runs = {"plain": [], "cluster": ["--cluster-model", tmp_path / "kmeans.pt", "--cluster-ratio", "0.5"],
            "index": ["--feature-index", tmp_path / "index", "--retrieval-ratio", "0.5"],
            "enhancer": ["--enhancer", tmp_path / "vocoder", "--enhancer-adaptive-key", "2"],
            "ratios0": ["--cluster-model", tmp_path / "kmeans.pt", "--cluster-ratio", "0", "--feature-index",
                        tmp_path / "index", "--retrieval-ratio", "0"]}
    out = {}
    for name, extra in runs.items():
        assert _infer(path, "-o", tmp_path / name, *base, *extra) == 0, name
        out[name], out_sr = sf.read(tmp_path / name / path.name, dtype="float32")
        assert out_sr == 16000 and out[name].shape == out["plain"].shape and np.isfinite(out[name]).all(), name
    assert np.array_equal(out["ratios0"], out["plain"])
    rms = np.sqrt(np.mean(out["plain"] ** 2))
    for name in ("cluster", "index", "enhancer"):
        assert np.sqrt(np.mean((out[name] - out["plain"]) ** 2)) > 1e-3 * rms, name  # measured 3e-3; 16-bit rounding 1e-5
    for a, b in (("cluster", "index"), ("cluster", "enhancer"), ("index", "enhancer")):
        assert np.sqrt(np.mean((out[a] - out[b]) ** 2)) > 1e-3 * rms, (a, b)


@pytest.mark.slow
def test_bf16_and_long_chunks_stay_close_to_fp32(converter, speech):
    from svc_pl.infer.runtime import resolve_precision

    if resolve_precision("auto", "cpu") != "bf16":
        pytest.skip("this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so precision 'auto' never picks bf16 "
                    "here: svc_pl.infer.runtime.resolve_precision")
    _, y, sr, _, _ = speech
    long = y  # two phrases of about 3 s: each is cut into clips at max_chunk_seconds
    fp32 = converter.convert(long, sr, ConvertOptions(max_chunk_seconds=1.2, seed=3, precision="fp32"))
    bf16 = converter.convert(long, sr, ConvertOptions(max_chunk_seconds=1.2, seed=3, precision="bf16"))
    assert abs(len(fp32) - len(long) * 16000 / sr) <= 1 and bf16.shape == fp32.shape
    assert np.isfinite(bf16).all()
    rel = np.sqrt(np.mean((fp32 - bf16) ** 2)) / max(1e-9, np.sqrt(np.mean(fp32**2)))
    assert 0 < rel < 0.04, rel  # bf16 really ran (the audio moved) and stayed close (measured: 0.0014)


def test_clips_cover_voiced_audio_and_crossfades_sum_to_one(converter, speech, monkeypatch):
    """With a synthesizer that outputs 1.0 everywhere, forced clips cross-faded in any synthesis order
    must give exactly 1.0 over every converted chunk: ramps complementary, no gap, no double write."""
    from svc_pl.data.slicer import Slicer

    _, y, sr, _, _ = speech
    net = converter.model.net

    def ones(c, f0, uv, speaker, **kw):
        return torch.ones(c.size(0), 1, c.size(2) * converter.model.hop_length), f0

    monkeypatch.setattr(net, "infer", ones)
    # torch: the stand-in replaces the torch synthesizer (on an fp32 CPU, auto would run ONNX Runtime's graph)
    out = converter.convert(y, sr, ConvertOptions(clip_seconds=0.7, crossfade_seconds=0.1, min_chunk_seconds=1.0,
                                                  backend="torch"))
    from svc_pl.data.audio import resample

    chunks = Slicer(16000, threshold=-40, max_sil_kept=500, min_length=1000).slice(resample(y, sr, 16000))
    voiced = [c for c in chunks if not c.silent]
    assert len(voiced) >= 2 and any(c.end - c.start > 2 * 0.7 * 16000 for c in voiced)
    for c in chunks:
        seg = out[c.start:c.end]
        if c.silent:
            assert np.abs(seg).max() == 0
        else:
            assert np.allclose(seg, 1.0, atol=1e-6), (c, seg.min(), seg.max())


def test_decode_window_gives_the_same_audio(converter, speech):
    _, y, sr, _, _ = speech
    whole = converter.convert(y, sr, ConvertOptions(precision="fp32", decode_window=0))
    windowed = converter.convert(y, sr, ConvertOptions(precision="fp32", decode_window=16))
    assert np.allclose(whole, windowed, atol=1e-5), np.abs(whole - windowed).max()


def test_precision_auto_follows_hardware(monkeypatch):
    from svc_pl.infer.runtime import resolve_precision

    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    # CUDA: fp32 (bf16 autocast measured slower there for conversion), whatever the GPU supports
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "fp32" and resolve_precision("bf16", "cuda") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_iter_convert_streams_what_convert_returns(converter, speech, monkeypatch):
    import svc_pl.infer.converter as conv_mod

    _, y, sr, _, _ = speech
    y = np.concatenate([y, np.zeros(3 * sr, np.float32), y])  # a long silence between two passages
    monkeypatch.setattr(conv_mod, "_SILENCE_BLOCK", 4096)  # so the silence goes out in several blocks
    opts = ConvertOptions(precision="fp32", clip_seconds=0.8, crossfade_seconds=0.1, min_chunk_seconds=1.0)
    whole = converter.convert(y, sr, opts)
    blocks = list(converter.iter_convert(y, sr, opts))
    assert len(blocks) > 4 and max(len(b) for b in blocks) < len(whole) / 2
    assert np.array_equal(np.concatenate(blocks), whole)


# ------------------------------------------------------------------------------------------------ front door

def test_import_svc_pl_is_cheap_until_a_name_is_used():
    """``import svc_pl`` loads no torch and none of its own submodules; the first use of a name loads its module."""
    code = ("import sys, svc_pl; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pytorch_lightning') "
            "or m.startswith('svc_pl.')); assert not heavy, heavy; "
            "svc_pl.ConvertOptions; assert 'svc_pl.infer.options' in sys.modules and 'svc_pl.synthesizer' not in "
            "sys.modules and 'svc_pl.infer.converter' not in sys.modules, sorted(sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert run.returncode == 0, run.stderr[-3000:]


def test_each_top_level_name_is_the_one_its_module_defines():
    import importlib

    import svc_pl

    homes = {"Synthesizer": "svc_pl.synthesizer", "NetConfig": "svc_pl.synthesizer",
             "load_voice_model": "svc_pl.infer.loading", "Converter": "svc_pl.infer.converter",
             "ConvertOptions": "svc_pl.infer.options", "build_converter": "svc_pl.infer.build",
             "load_content_encoder": "svc_pl.data.content", "load_sovits": "svc_pl.compat",
             "save_sovits": "svc_pl.compat"}
    assert set(svc_pl.__all__) == set(homes) | {"__version__"} and set(homes) <= set(dir(svc_pl))
    for name, module in homes.items():
        assert getattr(svc_pl, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        svc_pl.Nothing  # noqa: B018


def test_converter_from_files_is_the_front_door(voice, speech):
    """``Converter.from_files`` loads and checks the files (unit sizes, speakers on convert) and converts as a
    converter assembled by hand does; ``build_converter`` is the same callable."""
    import svc_pl
    from svc_pl.errors import UserFacingError
    from svc_pl.infer.build import build_converter

    assert build_converter == svc_pl.Converter.from_files
    conv = svc_pl.Converter.from_files(voice / "G_1.pth", random_encoder=True)
    by_hand = Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))
    _, y, sr, _, _ = speech
    opts = ConvertOptions(speaker="bass", seed=3)
    assert isinstance(conv, Converter) and conv.model.speakers == {"alto": 0, "tenor": 1, "bass": 2}
    assert np.array_equal(conv.convert(y[: sr * 2], sr, opts), by_hand.convert(y[: sr * 2], sr, opts))
    with pytest.raises(UserFacingError, match="gives 256-d units"):
        svc_pl.Converter.from_files(voice / "G_1.pth", random_encoder=True, encoder="hubertsoft")

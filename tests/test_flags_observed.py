"""svc-pl infer flags whose effect is observed, not only parsed: --noise-scale, --slice-db, --max-silence-kept,
--length-bucket-seconds, --batch-size (and its default per device), --shallow-diffusion with --enhancer, and
--diffusion-config. Each test runs the command (in process) on a random tiny voice and looks at what the flag must
change: the audio, where it is silent, the shapes the networks see, or which file was read."""

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from svc_pl.cli import main as cli_main
from svc_pl.data.slicer import Slicer
from svc_pl.infer.converter import Converter, ConvertOptions

SR, HOP = 16000, 320  # the tiny voice's rate and hop: inputs at this rate are not resampled


def _infer(*args) -> int:
    return cli_main(["infer", *map(str, args), "--random-encoder", "--no-progress", "--precision", "fp32",
                     "--backend", "torch"])  # the spies watch the torch synthesizer


def _read(folder, name="in.wav") -> np.ndarray:
    y, sr = sf.read(folder / name, dtype="float32")
    assert sr == SR
    return y


def _tone(seconds: float, amp: float, f0: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


class CheapEncoder(torch.nn.Module):
    """Stands in for ``--random-encoder``'s random HuBERT where the units' content does not matter: 768-d units every
    320 samples of 16 kHz audio from a fixed random strided convolution, at a hundredth of the compute."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.dim = dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv1d(1, dim, 400, stride=320)

    def forward(self, wav16k: torch.Tensor) -> torch.Tensor:
        """(B, T) audio -> (B, dim, frames) units."""
        return self.conv(wav16k.unsqueeze(1))


@pytest.fixture(autouse=True)
def cheap_encoder(monkeypatch):
    """svc-pl infer --random-encoder gets a :class:`CheapEncoder`."""
    import svc_pl.data.content as content

    monkeypatch.setattr(content, "random_content_encoder", lambda name, seed=0: CheapEncoder())


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    from tests.test_infer import write_tiny_voice

    return write_tiny_voice(tmp_path_factory.mktemp("flags_voice")) / "G_1.pth"


def write_lively_voice(d):
    """The random tiny voice made to respond to its inputs, as tests/test_infer.py's ``lively_voice`` (output bias
    removed, gain x5, speaker embeddings x100: the random voice's output is nearly a constant otherwise), as
    ``d/G_1.pth`` + ``d/config.json``; returns the model's path."""
    import shutil

    from tests.test_infer import write_tiny_voice

    write_tiny_voice(d / "random")
    ckpt = torch.load(d / "random" / "G_1.pth", map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    sd["emb_g.weight"] = sd["emb_g.weight"] * 100
    sd["dec.conv_post.bias"] = torch.zeros_like(sd["dec.conv_post.bias"])
    sd["dec.conv_post.weight_g"] = sd["dec.conv_post.weight_g"] * 5
    torch.save(ckpt, d / "G_1.pth")
    shutil.copy(d / "random" / "config.json", d / "config.json")
    return d / "G_1.pth"


@pytest.fixture(scope="module")
def lively(tmp_path_factory):
    return write_lively_voice(tmp_path_factory.mktemp("flags_lively"))


@pytest.fixture(scope="module")
def loud_quiet_loud(tmp_path_factory):
    """At 16 kHz: 1 s of a loud tone (-13 dBFS RMS), 1.5 s of a quiet one (-30 dBFS at its ends, -37 dBFS in its
    middle, so the slicer's quietest frames, where it cuts, are the ones nearest the middle) and 1 s loud again."""
    path = tmp_path_factory.mktemp("flags_in") / "in.wav"
    quiet = _tone(1.5, 1.0) * (0.02 + 0.025 * np.abs(np.linspace(-1, 1, int(1.5 * SR), dtype=np.float32)))
    y = np.concatenate([_tone(1.0, 0.3), quiet, _tone(1.0, 0.3)])
    sf.write(path, y, SR, subtype="FLOAT")
    return path, y


def _spy_networks(monkeypatch) -> dict[str, list[tuple[int, ...]]]:
    """Record the input shape of every content-encoder call and the units' shape (B, C, T) of every synthesizer
    call of the converters built from now on (the command builds its own)."""
    seen = {"encoder": [], "synthesizer": []}
    init = Converter.__init__

    def spying_init(self, *a, **k):
        init(self, *a, **k)
        self.encoder.register_forward_pre_hook(lambda module, args: seen["encoder"].append(tuple(args[0].shape)))
        infer = self.model.net.infer

        def infer_spy(c, *a, **k):
            seen["synthesizer"].append(tuple(c.shape))
            return infer(c, *a, **k)

        monkeypatch.setattr(self.model.net, "infer", infer_spy)

    monkeypatch.setattr(Converter, "__init__", spying_init)
    return seen


# ------------------------------------------------------------------------------------------------ the synthesizer


def test_noise_scale_changes_the_audio_and_a_seed_repeats_it(lively, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, _tone(1.0, 0.3), SR, subtype="FLOAT")
    out = {}
    for name, scale in (("a", "0.4"), ("again", "0.4"), ("b", "1.2")):
        assert _infer(src, "-o", tmp_path / name, "-m", lively, "-s", "tenor", "-n", scale) == 0
        out[name] = _read(tmp_path / name)
    assert np.array_equal(out["a"], out["again"])  # seeded (--seed 52468 by default): the same noise
    rms = np.sqrt(np.mean(out["a"] ** 2))
    change = np.sqrt(np.mean((out["b"] - out["a"]) ** 2))
    assert change > 0.01 * rms, (change, rms)  # the prior's noise really is scaled (measured: 0.026)


def _chunks(y: np.ndarray, slice_db: float, kept_s: float, min_chunk_s: float):
    return Slicer(SR, threshold=slice_db, max_sil_kept=int(kept_s * 1000), min_length=int(min_chunk_s * 1000)).slice(y)


def test_slice_db_and_max_silence_kept_decide_what_is_converted(voice, loud_quiet_loud, tmp_path):
    """The output is exact silence over the slicer's silent chunks and converted audio over its voiced ones, for
    the --slice-db and --max-silence-kept given: at -40 dB the quiet middle is converted, at -20 dB it is silence
    but for the kept margins, which --max-silence-kept sets."""
    src, y = loud_quiet_loud
    silent = {}
    for name, db, kept in (("db40", -40, 0.5), ("db20", -20, 0.5), ("db20_kept02", -20, 0.2)):
        assert _infer(src, "-o", tmp_path / name, "-m", voice, "--slice-db", db, "--max-silence-kept", kept,
                      "--min-chunk-seconds", "0.5") == 0
        out = _read(tmp_path / name)
        assert len(out) == len(y)
        chunks = _chunks(y, db, kept, 0.5)
        for c in chunks:
            seg = out[c.start:c.end]
            if c.silent:
                assert np.abs(seg).max() == 0.0, (name, c)
            else:
                assert np.mean(seg != 0) > 0.99, (name, c)  # converted (the tiny voice's output is never 0)
        silent[name] = sum(c.length for c in chunks if c.silent)
        assert np.sum(out == 0) >= silent[name]
    # the flags moved the boundary: nothing silent at -40 dB, the middle less 2 x 0.5 s at -20 dB, less 2 x 0.2 s
    assert silent["db40"] == 0
    assert abs(silent["db20"] - 0.5 * SR) <= 0.1 * SR, silent
    assert abs(silent["db20_kept02"] - 1.1 * SR) <= 0.1 * SR, silent
    middle = slice(int(1.6 * SR), int(1.9 * SR))
    assert np.mean(_read(tmp_path / "db40")[middle] != 0) > 0.99 and not _read(tmp_path / "db20")[middle].any()


def test_length_bucket_seconds_sets_the_shapes_the_networks_see(voice, tmp_path, monkeypatch):
    """Each voiced chunk plus 0.5 s of padding on both sides is padded up to a multiple of
    --length-bucket-seconds (0: a whole frame): the synthesizer sees that many frames, the content encoder that many
    16 kHz samples. Two chunks of different lengths share one shape with 2 s buckets and not with whole frames."""
    y = np.concatenate([_tone(0.4, 0.3), np.zeros(SR, np.float32), _tone(0.3, 0.3)])
    src = tmp_path / "in.wav"
    sf.write(src, y, SR, subtype="FLOAT")
    chunks = [c for c in _chunks(y, -40, 0.5, 0.3) if not c.silent]  # 0.4 s, and 0.5 s of silence kept + 0.3 s
    assert len(chunks) == 2 and chunks[0].length != chunks[1].length
    pad = int(0.5 * SR)
    seen = _spy_networks(monkeypatch)
    frames = {}
    for bucket in ("0", "0.5", "2"):
        seen["encoder"].clear()
        seen["synthesizer"].clear()
        assert _infer(src, "-o", tmp_path / bucket, "-m", voice, "--min-chunk-seconds", "0.3",
                      "--length-bucket-seconds", bucket) == 0
        step = max(1, round(float(bucket) * SR / HOP)) * HOP
        want = [-(-(c.length + 2 * pad) // step) * step for c in chunks]  # samples, per chunk
        assert seen["synthesizer"] == [(1, 768, n // HOP) for n in want], (bucket, seen)
        assert seen["encoder"] == [(1, n) for n in want], (bucket, seen)  # 16 kHz: samples at the model rate
        frames[bucket] = [n // HOP for n in want]
    assert len(set(frames["0"])) == 2 and len(set(frames["2"])) == 1 and frames["2"] == [100, 100]
    assert all(n % 25 == 0 for n in frames["0.5"]) and not all(n % 25 == 0 for n in frames["0"])


def test_batch_size_groups_equal_clips(voice, tmp_path, monkeypatch):
    """--batch-size N synthesises up to N clips of one length together; the default (0) is one on the CPU."""
    y = _tone(3.0, 0.3)
    src = tmp_path / "in.wav"
    sf.write(src, y, SR, subtype="FLOAT")
    seen = _spy_networks(monkeypatch)
    clips = ["--clip-seconds", "0.5", "--crossfade-seconds", "0", "--pad-seconds", "0.1"]  # six clips of 0.5 s
    batches = {}
    for size in ("0", "4"):
        seen["synthesizer"].clear()
        assert _infer(src, "-o", tmp_path / size, "-m", voice, "--batch-size", size, *clips) == 0
        batches[size] = [shape[0] for shape in seen["synthesizer"]]
    assert batches == {"0": [1] * 6, "4": [4, 2]}, batches
    assert np.allclose(_read(tmp_path / "0"), _read(tmp_path / "4"), atol=2 / 32768)  # batching keeps the audio


@pytest.mark.parametrize("device, size, groups", [("cpu", 0, [1] * 10), ("cuda", 0, [8, 2]), ("cuda", 1, [1] * 10),
                                                   ("cpu", 3, [3, 3, 3, 1])])
def test_batch_size_default_is_one_on_cpu_and_eight_on_gpu(voice, device, size, groups, monkeypatch):
    """The batch the converter forms on each device (the synthesis is stubbed, so no GPU is needed): 0 means 1 clip
    at a time on the CPU and 8 on a GPU; a given size is used as is."""
    from svc_pl.infer.loading import load_voice_model

    conv = Converter(load_voice_model(voice), CheapEncoder())
    conv.device = torch.device(device)  # only the batch rule reads it once synthesis is stubbed
    formed = []

    def synthesize(group, y, y16, pad, total, opts):
        formed.append(len(group))
        return [np.zeros(p.end - p.start, np.float32) for p in group]

    monkeypatch.setattr(conv, "_synthesize_group", synthesize)
    out = conv.convert(_tone(5.0, 0.3), SR, ConvertOptions(clip_seconds=0.5, crossfade_seconds=0.0, batch_size=size))
    assert len(out) == 5 * SR and formed == groups


# ------------------------------------------------------------------------------------------------ diffusion


@pytest.fixture(scope="module")
def diffusion_files(tmp_path_factory):
    from tests.test_diffusion_infer import _diffusion, write_voice_and_vocoder

    d = write_voice_and_vocoder(tmp_path_factory.mktemp("flags_diffusion"))
    sf.write(d / "in.wav", np.concatenate([_tone(0.5, 0.3, 200.0), _tone(0.5, 0.3, 260.0)]), SR, subtype="FLOAT")
    return {"voice": d / "G_1.pth", "vocoder": d / "vocoder", "model": _diffusion(d / "full"), "clip": d / "in.wav",
            "dir": d}


def _shallow(files, out, *extra) -> np.ndarray:
    assert _infer(files["clip"], "-o", out, "-m", files["voice"], "-s", "alto", "--shallow-diffusion", "--k-step",
                  "20", "--diffusion-speedup", "5", *extra) == 0
    return _read(out)


def test_shallow_diffusion_replaces_the_enhancer(diffusion_files, tmp_path, monkeypatch):
    """With --shallow-diffusion the --enhancer is not applied (its key shift changes nothing): the diffusion's
    vocoder renders; without --vocoder the --enhancer folder is that vocoder."""
    from svc_pl.infer.enhancer import Enhancer

    files = diffusion_files
    plain = _shallow(files, tmp_path / "plain", "--diffusion-model", files["model"], "--vocoder", files["vocoder"])
    applied = []
    enhance = Enhancer.enhance
    monkeypatch.setattr(Enhancer, "enhance", lambda self, *a, **k: applied.append(1) or enhance(self, *a, **k))
    both = _shallow(files, tmp_path / "both", "--diffusion-model", files["model"], "--vocoder", files["vocoder"],
                    "--enhancer", files["vocoder"], "--enhancer-adaptive-key", "4")
    as_vocoder = _shallow(files, tmp_path / "as_vocoder", "--diffusion-model", files["model"], "--enhancer",
                          files["vocoder"])
    assert not applied
    assert np.abs(plain).max() > 0 and np.array_equal(both, plain) and np.array_equal(as_vocoder, plain)


def test_diffusion_config_is_the_yaml_read(diffusion_files, tmp_path):
    """--diffusion-config is read instead of the diffusion.yaml beside the model: a model moved away from its yaml
    converts as before when given it, and differently when given a yaml that orders the speakers otherwise."""
    import shutil

    files = diffusion_files
    beside = files["model"].with_name("diffusion.yaml")
    cfg = yaml.safe_load(beside.read_text())
    assert cfg["spk"] == {"alto": 0, "tenor": 1, "bass": 2}
    other = tmp_path / "reordered.yaml"
    other.write_text(yaml.safe_dump({**cfg, "spk": {"bass": 0, "alto": 1, "tenor": 2}}))
    moved = tmp_path / "moved" / "model_0.pt"
    moved.parent.mkdir()
    shutil.copy(files["model"], moved)  # no diffusion.yaml beside it

    ref = _shallow(files, tmp_path / "ref", "--diffusion-model", files["model"], "--vocoder", files["vocoder"])
    same = _shallow(files, tmp_path / "same", "--diffusion-model", moved, "--diffusion-config", beside, "--vocoder",
                    files["vocoder"])
    reordered = _shallow(files, tmp_path / "reordered", "--diffusion-model", moved, "--diffusion-config", other,
                         "--vocoder", files["vocoder"])
    assert np.array_equal(same, ref)
    rms = np.sqrt(np.mean(ref**2))
    # alto is the diffusion model's speaker 1 now: a small but real change (measured 0.6 % of the RMS; PCM
    # rounding alone is below 0.1 %), and `same` above is bit-equal
    assert np.sqrt(np.mean((reordered - ref) ** 2)) > 1e-3 * rms

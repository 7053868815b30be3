"""``--match-units``: unit statistics from a dataset and from ``svc-pl fit`` checkpoints, the matcher itself, and
its use in files, streams and the CLI (svc_pl.data.unit_stats, svc_pl.infer.unit_match)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.data.unit_stats import compute_unit_stats
from svc_pl.errors import UserFacingError
from svc_pl.infer.unit_match import UnitMatcher
from tests.test_retrieval import DIM, FRAMES, _make_dataset


def _stats(mean: float, std: float, dim: int = DIM) -> dict:
    return {"mean": torch.full((dim,), float(mean)), "std": torch.full((dim,), float(std)), "frames": 100}


def test_matcher_gives_the_input_the_targets_mean_and_spread_and_keeps_its_shape():
    g = torch.Generator().manual_seed(0)
    source = 3.0 + 2.0 * torch.randn(1, DIM, 400, generator=g)  # a voice: its own offset and scale per dimension
    m = UnitMatcher({"alto": _stats(-1.0, 0.5), "tenor": _stats(4.0, 1.5)})
    m.observe(source[0])
    moved = m.apply(source, "alto", 1.0)
    torch.testing.assert_close(moved.mean(2), torch.full((1, DIM), -1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(moved.std(2, unbiased=False), torch.full((1, DIM), 0.5), atol=1e-4, rtol=0)
    for d in range(DIM):  # the frame-to-frame content is kept: each dimension is an affine map of the input's
        assert np.corrcoef(moved[0, d].numpy(), source[0, d].numpy())[0, 1] > 0.9999
    torch.testing.assert_close(m.apply(source, "alto", 0.5), 0.5 * (source + moved))
    assert m.apply(source, "alto", 0.0) is source
    mix = m.apply(source, {"alto": 1.0, "tenor": 3.0}, 1.0)  # a mix: the weighted blend of both
    torch.testing.assert_close(mix.mean(2), torch.full((1, DIM), 2.75), atol=1e-4, rtol=0)
    with pytest.raises(UserFacingError, match="no unit statistics for speaker.*bass.*--unit-stats"):
        m.apply(source, "bass", 1.0)
    with pytest.raises(UserFacingError, match="another encoder"):
        m.apply(torch.zeros(1, DIM + 1, 10), "alto", 1.0)
    m.reset()  # a new input: nothing heard yet, nothing to move from
    assert m.apply(source, "alto", 1.0) is source


def test_statistics_run_over_everything_observed():
    m = UnitMatcher({"a": _stats(0.0, 1.0)})
    first, second = torch.full((DIM, 50), 2.0), torch.full((DIM, 150), 6.0)
    m.observe(first)
    m.observe(second)
    out = m.apply(torch.cat([first, second], 1)[None], "a", 1.0)
    torch.testing.assert_close(out.mean(2), torch.zeros(1, DIM), atol=1e-4, rtol=0)  # mean 5 and std sqrt(3) taken


def test_unit_stats_of_a_dataset_report_and_skip_a_corrupt_clip(tmp_path, caplog):
    ds = _make_dataset(tmp_path / "data")
    stats = compute_unit_stats(ds)
    assert sorted(stats) == ["alto", "tenor"]
    units = torch.cat([torch.load(ds / "alto" / f"{i}.pt", weights_only=True)["units"].float() for i in range(3)], 1)
    torch.testing.assert_close(stats["alto"]["mean"], units.mean(1))
    torch.testing.assert_close(stats["alto"]["std"], units.std(1, unbiased=False))
    assert stats["alto"]["frames"] == 3 * FRAMES
    (ds / "tenor" / "1.pt").write_bytes(b"not a bundle")
    stats = compute_unit_stats(ds)
    assert stats["tenor"]["frames"] == 2 * FRAMES
    assert "tenor/1.pt" in caplog.text and "skipped" in caplog.text
    with pytest.raises(UserFacingError, match="not a dataset made by `svc-pl preprocess`"):
        compute_unit_stats(tmp_path)


def test_files_and_so_vits_models_match_units_from_a_dataset(tmp_path):
    """A so-vits-svc model has no statistics: --match-units says to pass --unit-stats; given them, the units that
    reach the synthesizer carry the target's mean (the piece's padding left out of the input's statistics)."""
    from svc_pl.infer.converter import Converter, ConvertOptions
    from svc_pl.infer.loading import load_voice_model
    from tests.test_flags_observed import CheapEncoder
    from tests.test_infer import write_tiny_voice

    voice = write_tiny_voice(tmp_path)
    model = load_voice_model(voice / "G_1.pth")
    encoder = CheapEncoder()
    t = np.arange(16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    opts = ConvertOptions(speaker="tenor", match_units=1.0, decode_window=0)
    with pytest.raises(UserFacingError, match="--unit-stats with the unit_stats.pt of `svc-pl train-index`"):
        Converter(model, encoder).convert(y, 16000, opts)
    target = {"alto": _stats(0.0, 1.0, 768), "tenor": _stats(0.7, 0.2, 768), "bass": _stats(-0.3, 0.1, 768)}
    conv = Converter(model, encoder, unit_stats=target)
    seen = []
    mix = conv._mix_units
    conv._mix_units = lambda c, o: seen.append(c.clone()) or mix(c, o)
    out = conv.convert(y, 16000, opts)
    assert np.isfinite(out).all() and len(out) == len(y)
    hop, pad = model.hop_length, int(round(opts.pad_seconds * 16000 / model.hop_length))
    real = seen[0][0, :, pad:pad + len(y) // hop]
    torch.testing.assert_close(real.mean(1), torch.full((768,), 0.7), atol=1e-3, rtol=0)
    torch.testing.assert_close(real.std(1, unbiased=False), torch.full((768,), 0.2), atol=1e-3, rtol=0)
    assert not np.allclose(out, conv.convert(y, 16000, ConvertOptions(speaker="tenor", decode_window=0)))


@pytest.mark.slow
def test_fit_stores_the_statistics_and_infer_uses_them(tmp_path, capsys, monkeypatch):
    """`svc-pl fit` writes the training speakers' unit statistics into its checkpoints; `svc-pl infer --match-units`
    converts with them; a dataset of another encoder's units is refused with the reason."""
    import svc_pl.data.content as content
    from svc_pl.cli import main
    from svc_pl.infer.loading import load_voice_model
    from tests.datasets import make_dataset
    from tests.test_flags_observed import CheapEncoder

    monkeypatch.setattr(content, "random_content_encoder", lambda name, seed=0: CheapEncoder(32))  # the data's 32-d

    ds = make_dataset(tmp_path / "ds", clips_per_voice=2)
    assert main(["fit", "--config", "tiny-nsf", "--data.dataset_dir", str(ds), "--trainer.default_root_dir",
                 str(tmp_path / "run"), "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"]) == 0
    ckpt = next((tmp_path / "run").rglob("last.ckpt"))
    stats = load_voice_model(ckpt).unit_stats
    expected = compute_unit_stats(ds)
    assert sorted(stats) == sorted(expected) == ["spk0", "spk1"]
    for name in expected:
        torch.testing.assert_close(stats[name]["mean"], expected[name]["mean"])
        torch.testing.assert_close(stats[name]["std"], expected[name]["std"])
    wav = tmp_path / "in.wav"
    sf.write(wav, *sf.read(next((ds.parent / "raw" / "spk0").glob("*.wav"))))
    args = ["infer", str(wav), "-m", str(ckpt), "-s", "spk1", "--random-encoder", "--no-progress", "--match-units", "1"]
    assert main([*args, "-o", str(tmp_path / "out")]) == 0
    out, _ = sf.read(tmp_path / "out" / "in.wav")
    assert np.isfinite(out).all() and np.abs(out).max() > 0
    other = _make_dataset(tmp_path / "other", speakers=("spk0", "spk1"))  # 16-d units, not this model's
    assert main([*args, "-o", str(tmp_path / "out2"), "--unit-stats", str(other)]) == 1
    assert "another encoder" in capsys.readouterr().err


def test_a_stream_matches_units_with_the_statistics_of_what_it_has_heard():
    """Live: the units given to the synthesizer get the target's mean once the stream has heard some input, with
    the input's statistics running over every unit frame heard (none counted twice)."""
    from svc_pl.infer.converter import ConvertOptions
    from svc_pl.infer.loading import VoiceModel
    from svc_pl.infer.stream import StreamConverter
    from tests.test_stream import _band_limited_noise, _Encoder, _stream

    class Capture(torch.nn.Module):
        n_speakers, vol_embedding, hop = 1, False, 320
        seen: list = []

        def infer(self, c, f0, uv, speaker, noise_scale=0.0, seed=None, predict_f0=False, vol=None, decode_window=0,
                  decode_frames=None):
            lo, hi = decode_frames
            self.seen.append(c[0, :, lo:hi].clone())
            return torch.zeros(1, 1, (hi - lo) * self.hop), f0

    net = Capture()
    voice = VoiceModel(net=net, sampling_rate=16000, hop_length=320, speakers={"a": 0}, content_encoder="test",
                       unit_interpolate_mode="nearest", source="test", unit_stats={"a": _stats(5.0, 0.1, 8)})
    x = _band_limited_noise(16000 * 3, 16000, 4000)
    for ratio, near_five in ((0.0, False), (1.0, True)):
        net.seen.clear()
        s = StreamConverter(voice, _Encoder(), ConvertOptions(speaker="a", match_units=ratio), device_rate=16000,
                            block_seconds=0.1, gate_db=None, drop_late=False)
        _stream(s, x)
        late = torch.cat(net.seen[10:], 1)  # after a second of input
        assert (abs(float(late.mean()) - 5.0) < 0.5) == near_five, float(late.mean())
    heard = s.converter.unit_matcher._n
    assert 0.9 * len(x) / 320 <= heard <= len(x) / 320 + 40  # each 20 ms unit frame once (plus the left context)


def test_train_index_writes_unit_stats_that_infer_reads(tmp_path, capsys):
    from svc_pl.cli import main
    from svc_pl.data.unit_stats import read_unit_stats

    ds = _make_dataset(tmp_path / "data")
    assert main(["train-index", str(ds), "--kind", "kmeans", "--n-clusters", "3"]) == 0
    assert "unit statistics (2 speakers)" in capsys.readouterr().out
    from_file, from_data = read_unit_stats(ds / "unit_stats.pt"), read_unit_stats(ds)
    for name in ("alto", "tenor"):
        torch.testing.assert_close(from_file[name]["mean"], from_data[name]["mean"])
        torch.testing.assert_close(from_file[name]["std"], from_data[name]["std"])
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(UserFacingError, match="bad.pt: unreadable unit statistics"):
        read_unit_stats(tmp_path / "bad.pt")
    torch.save({"speakers": {}}, tmp_path / "other.pt")
    with pytest.raises(UserFacingError, match="not a unit statistics file"):
        read_unit_stats(tmp_path / "other.pt")

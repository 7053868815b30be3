"""The web UI's Live tab through its API (gradio_client against a launched app): a file streamed from the page is
what ``svc-pl live --input-file/--output-file`` writes, with its stats; the device list says why it is empty
instead of failing (no PortAudio, no devices: this machine); and with a stand-in for python-sounddevice the page
starts a device stream, shows its stats growing, and stops it."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from svc_pl.cli import main as cli_main  # noqa: E402
from svc_pl.errors import UserFacingError  # noqa: E402
from svc_pl.infer import live as live_engine  # noqa: E402
from tests.speech import synth_speech  # noqa: E402
from tests.test_infer import write_tiny_voice  # noqa: E402
from tests.test_webui import ENCODER, _wait, random_encoder_client  # noqa: E402

BLOCK = 0.4


class SteadyClock:
    """The stream's clock, made steady: each reading is 1 ms after the one before, so no block misses its
    deadline or is dropped on a busy test machine (a random HuBERT-sized encoder takes seconds per block here): a
    stream converts the same every run, and a block "takes" a few ms. The page and the CLI run in this process."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1e-3
        return self.now


@pytest.fixture
def steady_clock(monkeypatch):
    import svc_pl.infer.stream

    monkeypatch.setattr(svc_pl.infer.stream, "time", SteadyClock())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("webui_live")
    write_tiny_voice((d / "runs" / "voice").mkdir(parents=True) or d / "runs" / "voice")
    wav = synth_speech(d / "in" / "phrase.wav", "Live conversion, block by block.")
    return {"dir": d, "runs": d / "runs", "model": d / "runs" / "voice" / "G_1.pth", "wav": wav}


@pytest.fixture(scope="module")
def client(files):
    yield from random_encoder_client(files)


VOICE = dict(uploaded_model=None, speaker="tenor", speaker_mix="", transpose=2, f0_method="pm", noise_scale=0.4,
             auto_predict_f0=False, block_seconds=BLOCK, context_seconds=1.0, gate_db=-50.0)


def test_streamed_file_is_what_svc_pl_live_writes(client, files, tmp_path, steady_clock):
    out, stats, message = client.predict(audio=gradio_client.handle_file(str(files["wav"])), model=str(files["model"]),
                                         **VOICE, api_name="/live_file")
    web, sr = sf.read(out, dtype="float32")
    cli_out, cli_stats = tmp_path / "cli.wav", tmp_path / "stats.json"
    assert cli_main(["live", "-m", str(files["model"]), *ENCODER, "-s", "tenor", "-t", "2", "--f0", "pm",
                     "--block-seconds", str(BLOCK), "--input-file", str(files["wav"]), "--output-file", str(cli_out),
                     "--stats-json", str(cli_stats), "--as-fast-as-possible"]) == 0
    cli, cli_sr = sf.read(cli_out, dtype="float32")
    src, src_sr = sf.read(files["wav"], dtype="float32")
    assert sr == cli_sr == src_sr and web.shape == cli.shape == src.shape  # the input's length, as a device plays
    np.testing.assert_allclose(web, cli, atol=1e-5, rtol=0)
    assert np.abs(web).max() > 1e-3 and np.abs(web - src).max() > 1e-2  # converted, not the input
    expected = json.loads(cli_stats.read_text())
    for key in ("latency_seconds", "block_seconds", "blocks", "deadline_misses", "block_compute_p95_seconds"):
        assert key in stats, (key, stats)
    assert stats["latency_seconds"] == pytest.approx(expected["latency_seconds"])
    assert stats["blocks"] == expected["blocks"] > 0 and stats["block_seconds"] == pytest.approx(BLOCK)
    assert message == "streamed without a deadline miss" and stats["deadline_misses"] == 0, message


def test_bad_stream_settings_give_one_message(client, files, tmp_path):
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(audio=gradio_client.handle_file(str(files["wav"])), model=str(tmp_path / "none.pth"), **VOICE,
                       api_name="/live_file")
    assert "model file not found" in str(info.value)
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(audio=gradio_client.handle_file(str(files["wav"])), model=str(files["model"]),
                       **{**VOICE, "speaker": "nobody"}, api_name="/live_file")
    assert "unknown speaker 'nobody'" in str(info.value)


def test_device_list_says_why_it_is_empty(client, monkeypatch):
    ins, outs, message = client.predict(api_name="/live_devices")  # this machine: PortAudio, no sound card
    assert isinstance(message, str) and message, message
    if not ins["choices"]:
        assert "no audio input device" in message or "PortAudio" in message, message

    def no_portaudio():
        raise UserFacingError("svc-pl live needs python-sounddevice and PortAudio (libportaudio.so not found)")

    monkeypatch.setattr(live_engine, "load_sounddevice", no_portaudio)
    _, _, message = client.predict(api_name="/live_devices")
    assert "PortAudio" in message
    monkeypatch.setattr(live_engine, "load_sounddevice", lambda: FakeSoundDevice([]))
    _, _, message = client.predict(api_name="/live_devices")
    assert "no audio input device on this server" in message, message


def test_start_without_devices_is_a_message(client, files, monkeypatch):
    monkeypatch.setattr(live_engine, "load_sounddevice", lambda: FakeSoundDevice([]))
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(model=str(files["model"]), **VOICE, input_device=None, output_device=None,
                       api_name="/live_start")
    assert "no audio input device" in str(info.value)


# ---------------------------------------------------------------------------------------- a stand-in sound card


class FakeSoundDevice:
    """What :mod:`svc_pl.infer.live` uses of python-sounddevice, over a 16 kHz tone: ``Stream`` calls its callback
    from a thread of its own, as PortAudio does, and keeps what the callback plays. Its blocks come ``slower``
    times slower than real time: the random encoder cannot keep up with real time on a busy CPU, and a stream
    that cannot plays silence (the page would say so: deadline misses)."""

    PortAudioError = RuntimeError

    def __init__(self, devices, slower: float = 8.0):
        self.devices, self.slower = devices, slower
        self.played: list[np.ndarray] = []

    def query_devices(self, device=None, kind=None):
        if device is None and kind is None:
            return list(self.devices)
        index = int(device) if device is not None else 0
        if not 0 <= index < len(self.devices):
            raise ValueError(f"no device {device!r}")
        return self.devices[index]

    def check_input_settings(self, **_):
        pass

    check_output_settings = check_input_settings

    def Stream(self, device, samplerate, blocksize, channels, dtype, callback):  # noqa: N802 (sounddevice's name)
        card = self

        class _Stream:
            def __enter__(self):
                self.running = True
                self.thread = threading.Thread(target=self._run, daemon=True)
                self.thread.start()
                return self

            def _run(self):
                k = 0
                while self.running:
                    t = (np.arange(blocksize) + k * blocksize) / samplerate
                    indata = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[:, None]
                    outdata = np.zeros((blocksize, 1), np.float32)
                    callback(indata, outdata, blocksize, None, None)
                    card.played.append(outdata[:, 0].copy())
                    k += 1
                    time.sleep(card.slower * blocksize / samplerate)

            def __exit__(self, *exc):
                self.running = False
                self.thread.join(timeout=10)

        return _Stream()


DEVICES = [{"name": "Fake mic", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 16000.0},
           {"name": "Fake speakers", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 16000.0}]


def _live_status(client) -> tuple[str, dict]:
    return client.predict(api_name="/live_status")


def test_start_see_stats_stop_on_server_devices(client, files, monkeypatch, steady_clock):
    card = FakeSoundDevice(DEVICES)
    monkeypatch.setattr(live_engine, "load_sounddevice", lambda: card)
    ins, outs, message = client.predict(api_name="/live_devices")
    assert [c[0] for c in ins["choices"]] == ["0: Fake mic (in 1, 16000 Hz)"], ins
    assert [c[0] for c in outs["choices"]] == ["1: Fake speakers (out 2, 16000 Hz)"], outs
    assert "1 input and 1 output device" in message
    try:
        state = client.predict(model=str(files["model"]), **VOICE, input_device=ins["value"],
                               output_device=outs["value"], api_name="/live_start")
        assert state.startswith("starting"), state
        with pytest.raises(gradio_client.exceptions.AppError) as info:  # one stream at a time
            client.predict(model=str(files["model"]), **VOICE, input_device=ins["value"],
                           output_device=outs["value"], api_name="/live_start")
        assert "already running" in str(info.value)
        assert _wait(lambda: _live_status(client)[1].get("blocks", 0) >= 4, 120, 0.5), _live_status(client)
        state, stats = _live_status(client)
        assert state == "running" and stats["block_seconds"] == pytest.approx(BLOCK), (state, stats)
        assert stats["latency_seconds"] >= BLOCK and stats["deadline_misses"] == 0, stats
        assert 0 < stats["block_compute_max_seconds"] < 0.1, stats  # a few readings of the steady clock
    finally:
        state = client.predict(api_name="/live_stop")
    assert state == "stopped", state
    blocks = _live_status(client)[1]["blocks"]
    time.sleep(3 * BLOCK)
    assert _live_status(client)[1]["blocks"] == blocks, "the stream went on after Stop"
    played = np.concatenate(card.played)
    assert np.abs(played).max() > 1e-3, "the device played only silence"

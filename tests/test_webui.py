"""svc-pl webui as its users meet it: gradio_client against an app launched on a free localhost port (the same
audio as svc-pl infer, one clear message for a bad upload, concurrent requests kept apart, only its own files
served), a real headless Chromium pressing Convert. The Train tab's run (start, stop, resume, export) is in
tests/test_webui_train.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

gr = pytest.importorskip("gradio")  # a dev dependency: in CI these run
gradio_client = pytest.importorskip("gradio_client")

from svc_pl.cli import main as cli_main  # noqa: E402
from tests.speech import synth_speech  # noqa: E402
from tests.test_infer import TINY, write_tiny_voice  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENCODER = ["--random-encoder", "--encoder", "vec768l12"]  # the tiny voice's encoder, as tests/test_cli.py runs it


def random_encoder_client(files):
    """A web UI on a free port over ``files["runs"]`` with the random vec768l12 encoder, and its client;
    closes the app when the generator is closed (for module fixtures: ``yield from``)."""
    from svc_pl.webui.app import launch
    from svc_pl.webui.convert import ServerSettings

    settings = ServerSettings(workdir=files["dir"] / "work", runs=files["runs"], encoder="vec768l12",
                              random_encoder=True)
    demo, url = launch(settings, port=free_port(), block=False)
    yield gradio_client.Client(url, verbose=False)
    demo.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("webui")
    runs = d / "runs"
    write_tiny_voice((runs / "voice").mkdir(parents=True) or runs / "voice")
    wav = synth_speech(d / "in" / "phrase.wav", "Singing voice conversion keeps the melody.")
    return {"dir": d, "runs": runs, "model": runs / "voice" / "G_1.pth", "wav": wav}


@pytest.fixture(scope="module")
def app(files):
    from svc_pl.webui.app import launch
    from svc_pl.webui.convert import ServerSettings

    settings = ServerSettings(workdir=files["dir"] / "work", runs=files["runs"], encoder="vec768l12",
                              random_encoder=True)
    demo, url = launch(settings, port=free_port(), max_file_size="2mb", block=False)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return gradio_client.Client(app, verbose=False)


def cli_convert(files, out: Path, speaker: str, transpose: int, f0: str = "pm") -> np.ndarray:
    argv = ["infer", str(files["wav"]), "-o", str(out), "-m", str(files["model"]), *ENCODER, "-s", speaker,
            "-t", str(transpose), "--f0", f0, "--no-progress"]
    assert cli_main(argv) == 0
    y, _ = sf.read(out / "phrase.wav", dtype="float32")
    return y


def api_convert(client, files, speaker: str, transpose: int, f0: str = "pm", audio=None, model=None):
    return client.predict(audio=gradio_client.handle_file(str(audio or files["wav"])),
                          model=str(model or files["model"]), speaker=speaker, transpose=transpose, f0_method=f0,
                          api_name="/convert")


def test_convert_endpoint_equals_svc_pl_infer(client, files, tmp_path):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/convert"]
    assert [p["parameter_name"] for p in api["parameters"]] == ["audio", "model", "speaker", "transpose", "f0_method"]
    path, figures = api_convert(client, files, "tenor", 3)
    web, sr = sf.read(path, dtype="float32")
    cli = cli_convert(files, tmp_path / "cli", "tenor", 3)
    assert sr == 16000 and web.shape == cli.shape and np.abs(cli).max() > 0.01
    np.testing.assert_allclose(web, cli, atol=1e-5, rtol=0)
    assert figures["settings"]["speaker"] == "tenor" and figures["settings"]["transpose"] == 3
    f0 = figures["files"]["phrase.wav"]["f0"]
    # a random model's output is barely voiced: the figures are there (None where undefined), not their values
    assert f0["transpose"] == 3 and f0["method"] == "fcpe" and 0 <= f0["vuv_agreement"] <= 1
    json.dumps(figures, allow_nan=False)  # valid JSON for other tools


def _message(call) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        call()
    return str(info.value)


def test_bad_uploads_give_one_message_and_the_app_keeps_working(client, files, tmp_path):
    from tests.test_crash_safe import _RunsCommand

    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 50)
    assert "cannot be read as audio" in _message(lambda: api_convert(client, files, "alto", 0, audio=text))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "is empty" in _message(lambda: api_convert(client, files, "alto", 0, audio=empty))
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil" / "G_1.pth"
    evil.parent.mkdir()
    shutil.copy(files["model"].with_name("config.json"), evil.with_name("config.json"))
    torch.save({"model": {"w": torch.zeros(1)}, "iteration": 1, "payload": _RunsCommand(marker)}, evil)
    msg = _message(lambda: api_convert(client, files, "alto", 0, model=evil))
    assert "G_1.pth" in msg and not marker.exists(), msg
    other = tmp_path / "dim256"  # a model for 256-d units; the server's encoder gives 768-d
    other.mkdir()
    from svc_pl.compat import save_sovits, sovits_config_for, write_json_atomic
    from svc_pl.synthesizer import Synthesizer

    tiny = {**TINY, "ssl_dim": 256}
    save_sovits(Synthesizer(**tiny, spec_channels=513, segment_size=20), other / "G_1.pth")
    write_json_atomic(other / "config.json", sovits_config_for(tiny, {"alto": 0}, hop_length=320, filter_length=1024,
                                                               win_length=1024, segment_size_samples=6400).to_dict())
    msg = _message(lambda: api_convert(client, files, "alto", 0, model=other / "G_1.pth"))
    assert "256-d units" in msg and "768-d" in msg, msg
    assert "unknown speaker 'nobody'" in _message(lambda: api_convert(client, files, "nobody", 0))
    path, _ = api_convert(client, files, "alto", 0)  # still working
    assert sf.info(path).frames > 0


def test_concurrent_conversions_keep_their_own_outputs(client, files, tmp_path):
    jobs = {("tenor", 3): None, ("bass", -5): None}
    submitted = {k: client.submit(audio=gradio_client.handle_file(str(files["wav"])), model=str(files["model"]),
                                  speaker=k[0], transpose=k[1], f0_method="pm", api_name="/convert") for k in jobs}
    results = {k: job.result(timeout=300) for k, job in submitted.items()}
    paths = [Path(r[0]) for r in results.values()]
    assert paths[0] != paths[1]
    for (speaker, transpose), (path, figures) in results.items():
        assert figures["settings"]["speaker"] == speaker and figures["settings"]["transpose"] == transpose
        web, _ = sf.read(path, dtype="float32")
        cli = cli_convert(files, tmp_path / f"{speaker}{transpose}", speaker, transpose)
        np.testing.assert_allclose(web, cli, atol=1e-5, rtol=0)


def test_serves_only_its_own_files(app, files):
    for private in ("/etc/passwd", str(files["model"]), str(files["wav"])):
        try:
            with urllib.request.urlopen(f"{app}gradio_api/file={private}", timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status in (403, 404), (private, status)


def test_upload_size_limit(client, files, tmp_path):
    big = tmp_path / "long.wav"
    sf.write(big, np.zeros(16000 * 40, dtype=np.float32), 16000, subtype="FLOAT")  # 2.6 MB > the app's 2 MB
    with pytest.raises(Exception) as info:
        api_convert(client, files, "alto", 0, audio=big)
    assert "size" in str(info.value).lower() or "413" in str(info.value), str(info.value)


def test_safe_defaults_and_no_gradio_needed_elsewhere():
    from svc_pl.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    args = sub.choices["webui"].parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860
    code = ("import sys; sys.modules['gradio'] = None\n"
            "import svc_pl.cli, svc_pl.webui.convert, svc_pl.webui.train, svc_pl.infer.build\n"
            "svc_pl.cli.build_parser()\n"
            "assert 'gradio' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "import svc_pl.cli as c\n"
            "assert c.main(['webui']) == 2\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pip install 'svc_pl[webui]'" in run.stderr


# ------------------------------------------------------------------------------------------------ a real browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1500")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian chromium and chromium-driver are missing: run bash scripts/setup.sh"
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.binary_location = chromium
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.downloads = downloads
    yield drv
    drv.quit()


def _wait(what, timeout: float, step: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(step)
    return None


@pytest.mark.slow
def test_browser_converts_and_downloads_what_the_cli_writes(app, files, browser, tmp_path):
    """Open the page, upload a WAV, press Convert, wait for the player, download the file: the CLI's audio."""
    from selenium.webdriver.common.by import By

    def find(css):
        return browser.find_elements(By.CSS_SELECTOR, css)

    browser.get(app)
    upload = _wait(lambda: find("#input-files input[type=file]"), 60)
    assert upload, "the page has no file upload"
    upload[0].send_keys(str(files["wav"]))
    assert _wait(lambda: find("#input-files td.filename"), 30), "the upload did not show"
    speaker = _wait(lambda: [e for e in find("input[aria-label='Speaker'], label input") if e.get_attribute("value")
                             == "alto"], 30)
    assert speaker, "the speaker list was not filled from the model"
    find("#convert-btn")[0].click()
    link = _wait(lambda: find("#output-files a[download]"), 120)
    assert link, "no converted file appeared after pressing Convert"
    assert _wait(lambda: find("#output-audio audio, #output-audio [data-testid^='waveform']"), 30), "no player"
    link[0].click()
    done = _wait(lambda: [p for p in browser.downloads.iterdir() if p.suffix == ".wav"], 30)
    assert done, f"nothing downloaded: {list(browser.downloads.iterdir())}"
    _wait(lambda: not list(browser.downloads.glob("*.crdownload")), 10)
    web, _ = sf.read(done[0], dtype="float32")
    cli = cli_convert(files, tmp_path / "cli", "alto", 0)
    np.testing.assert_allclose(web, cli, atol=1e-5, rtol=0)
    assert _wait(lambda: find("#output-files img, img"), 10)
    time.sleep(1.0)  # let the pictures draw before the screenshot
    shot = tmp_path / "webui.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("SVC_PL_WEBUI_SCREENSHOT"):  # how docs/webui.png is made
        shutil.copy(shot, os.environ["SVC_PL_WEBUI_SCREENSHOT"])



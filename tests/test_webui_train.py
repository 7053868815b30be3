"""The web UI's Train tab: recordings uploaded in one group per speaker become the folder layout ``svc-pl
preprocess`` reads (bad groups are one message), a run trained from them shows each logged step in the page within
seconds (Lightning flushes the event file at every logging step, whatever the writer's flush_secs), stops, resumes
from the page with ``--ckpt_path last`` where it stopped, and Export gives the so-vits-svc model ``svc-pl export``
writes. One training run serves all of it (each fit process costs about a minute on 2 cores)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from svc_pl.errors import UserFacingError  # noqa: E402
from svc_pl.webui.train import write_uploaded_dataset  # noqa: E402
from tests.test_infer import write_tiny_voice  # noqa: E402
from tests.test_webui import _wait, free_port  # noqa: E402


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two speakers' recordings as a singer has them: a few WAV and FLAC files each."""
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path_factory.mktemp("webui_train") / "ds", clips_per_voice=2)
    raw = ds.parent / "raw"
    files = {name: sorted((raw / spk).glob("*.wav")) for name, spk in (("alto", "spk0"), ("tenor", "spk1"))}
    y, sr = sf.read(files["tenor"][0], dtype="float32")
    sf.write(files["tenor"][0].with_name("take 2.flac"), y, sr)
    files["tenor"].append(files["tenor"][0].with_name("take 2.flac"))
    return files


def test_uploaded_groups_become_speaker_folders(recordings, tmp_path):
    groups = [("alto", [str(f) for f in recordings["alto"]]), ("", []),
              ("tenor", [str(f) for f in recordings["tenor"]])]
    out = write_uploaded_dataset(groups, tmp_path / "raw")
    assert sorted(p.name for p in out.iterdir()) == ["alto", "tenor"]
    assert sorted(p.name for p in (out / "tenor").iterdir()) == ["0.wav", "1.wav", "take_2.flac"]
    for f in recordings["alto"]:
        assert (out / "alto" / f.name).read_bytes() == f.read_bytes()
    # the same file name in one group (two folders' 0.wav) is kept twice
    twice = write_uploaded_dataset([("alto", [str(recordings["alto"][0]), str(recordings["tenor"][0])])],
                                   tmp_path / "twice")
    assert sorted(p.name for p in (twice / "alto").iterdir()) == ["0-2.wav", "0.wav"]


def test_bad_groups_are_one_message_and_write_nothing(recordings, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 40)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    model = tmp_path / "G_1.pth"
    model.write_bytes(b"PK\x03\x04")
    alto = [str(f) for f in recordings["alto"]]
    cases = {
        "cannot be read as audio": [("alto", alto + [str(text)])],
        "the file is empty": [("alto", [str(empty)])],
        "not an audio file": [("alto", [str(model)])],
        "upload at least one recording": [("alto", alto), ("tenor", [])],
        "speaker name '../x'": [("../x", alto)],
        "is given twice": [("alto", alto), ("alto", alto)],
        "no recordings": [("", [])],
    }
    for message, groups in cases.items():
        with pytest.raises(UserFacingError, match=message):
            write_uploaded_dataset(groups, tmp_path / "raw")
        assert not (tmp_path / "raw").exists(), message


# ------------------------------------------------------------------------------------------ through the page


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from svc_pl.webui.app import launch
    from svc_pl.webui.convert import ServerSettings

    d = tmp_path_factory.mktemp("webui_train_app")
    write_tiny_voice((d / "runs" / "voice").mkdir(parents=True) or d / "runs" / "voice")
    settings = ServerSettings(workdir=d / "work", runs=d / "runs", encoder="vec768l12", random_encoder=True)
    demo, url = launch(settings, port=free_port(), block=False)
    yield {"client": gradio_client.Client(url, verbose=False), "runs": d / "runs"}
    demo.close()


def _form(recordings, **changes) -> dict:
    form = dict(dataset="", name="from-uploads", config="tiny-nsf", init_from="", max_steps=400, checkpoint_every=2,
                log_every=1, f0_method="pm",
                speaker_1="alto", recordings_1=[gradio_client.handle_file(str(f)) for f in recordings["alto"]],
                speaker_2="tenor", recordings_2=[gradio_client.handle_file(str(f)) for f in recordings["tenor"]],
                speaker_3="", recordings_3=None, speaker_4="", recordings_4=None)
    return {**form, **changes}


def test_bad_upload_in_the_page_is_a_message(app, recordings, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 40)
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        app["client"].predict(**_form(recordings, recordings_2=[gradio_client.handle_file(str(text))]),
                              api_name="/train_start")
    assert "notes.wav: cannot be read as audio" in str(info.value)
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        app["client"].predict(**_form(recordings, dataset=str(tmp_path)), api_name="/train_start")
    assert "either a dataset folder or uploaded recordings" in str(info.value)
    assert app["client"].predict(api_name="/train_status")[-1]["state"] == "idle"


def _first_seen_delays(client, run: Path, wanted: int, timeout: float) -> dict[int, float]:
    """Poll the page's status as its timer does (every 0.25 s here) and note, for each logged step, how long after
    the fit process logged it (the event's wall time) the page first showed it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen: dict[int, float] = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(seen) < wanted:
        status = client.predict(api_name="/train_status")[-1]
        assert status["state"] in ("starting", "preprocessing", "training"), status["log"]
        now = time.time()
        for s, _ in status["losses"].get("loss/g/total", []):
            seen.setdefault(int(s), now)
        time.sleep(0.25)
    walls = {}
    for events in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "loss/g/total" in acc.Tags()["scalars"]:
            walls.update({int(e.step): e.wall_time for e in acc.Scalars("loss/g/total")})
    return {s: seen[s] - walls[s] for s in seen}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # preprocessing, fit's start and two batches: minutes each at low priority on a busy CPU
def test_train_from_uploads_shows_losses_within_seconds_stops_resumes_and_exports(app, recordings):
    """Upload -> preprocess -> fit, each logged step in the page within seconds; stop; resume from the page; export."""
    import torch

    from svc_pl.infer.loading import load_voice_model
    from svc_pl.webui.train import read_scalars

    client, run = app["client"], app["runs"] / "from-uploads"
    try:
        assert "starting from-uploads" in client.predict(**_form(recordings), api_name="/train_start")
        assert sorted(p.name for p in (run / "raw").iterdir()) == ["alto", "tenor"]
        delays = _first_seen_delays(client, run, wanted=2, timeout=1500)
        assert len(delays) >= 2, (delays, client.predict(api_name="/train_status")[-1]["log"])
        # seconds from the step's event to the page, a /train_status call included (a page that read the events
        # only as the writer's 120 s timer flushes them would show steps up to two minutes late)
        assert max(delays.values()) < 6, delays
        assert _wait(lambda: list(run.rglob("last.ckpt")), 120, 1.0)
        assert "stopped from-uploads" in client.predict(api_name="/train_stop")
        status = client.predict(api_name="/train_status")[-1]
        assert status["state"] == "stopped", status
        # resume from the page (`--ckpt_path last`, the data the run recorded): the resumed process continues from
        # the checkpoint's step (its first logged step is past it) and ends at the new max
        ckpt_step = torch.load(next(run.rglob("last.ckpt")), weights_only=True, map_location="cpu")["global_step"]
        events_before = set(run.rglob("events.out.tfevents.*"))
        end = ckpt_step + 4
        form = dict(dataset="", name="from-uploads", config="tiny-nsf", init_from="", max_steps=end,
                    checkpoint_every=2, log_every=1, f0_method="pm")
        assert "resuming from-uploads" in client.predict(**form, api_name="/train_resume")
        assert _wait(lambda: client.predict(api_name="/train_status")[-1]["state"]
                     not in ("starting", "preprocessing", "training"), 600, 1.0)
        status = client.predict(api_name="/train_status")[-1]
        assert status["state"] == "finished", status["log"]
        assert "resuming from" in status["log"] and f"stopped at step {end}" in status["log"], status["log"]
        new = [p for p in run.rglob("events.out.tfevents.*") if p not in events_before]
        assert new, "the resumed run logged nothing"
        resumed = {s for p in new for curve in read_scalars(p).values() for s, _ in curve}
        # tiny-nsf has a discriminator: two optimizer steps (global_step) per batch, and its scalars are logged
        # per batch (0-based): the checkpoint's batches are 0..ckpt_step/2 - 1, the resumed ones follow to end/2 - 1
        assert min(resumed) == ckpt_step // 2 and max(resumed) == end // 2 - 1, (ckpt_step, sorted(resumed))
    finally:
        assert client.predict(api_name="/train_stop") in ("stopped from-uploads", "nothing is running")
    files, message = client.predict(name="from-uploads", api_name="/train_export")
    assert "exported from-uploads" in message
    names = sorted(Path(f).name for f in files)
    g = next(Path(f) for f in files if Path(f).name.startswith("G_"))
    assert names[0] == "D_" + g.name[2:] and "config.json" in names and "from-uploads-sovits.zip" in names, names
    config = next(Path(f) for f in files if f.endswith("config.json"))  # each download has a folder of its own
    voice = load_voice_model(g, config)  # what so-vits-svc and svc-pl infer load: the uploaded speakers by name
    assert voice.speakers == {"alto": 0, "tenor": 1}, voice.speakers
    with zipfile.ZipFile(next(f for f in files if f.endswith(".zip"))) as z:
        assert sorted(z.namelist()) == sorted(n for n in names if not n.endswith(".zip"))
    # the export is the run's last checkpoint (the resumed run's)
    ckpt = torch.load(next(run.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    state = torch.load(g, map_location="cpu", weights_only=True)
    assert int(state["iteration"]) == int(ckpt["global_step"]) // 2  # so-vits-svc counts batches
    np.testing.assert_array_equal(state["model"]["emb_g.weight"].numpy(),
                                  ckpt["state_dict"]["net.emb_g.weight"].numpy())
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(name="no-such-run", api_name="/train_export")
    assert "no run 'no-such-run'" in str(info.value)

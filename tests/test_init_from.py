"""Fine-tuning from an earlier svc_pl run: ``--model.init_from run.ckpt`` and ``--model.init_discriminator_from``
(a so-vits-svc ``D_*.pth`` or a run's ``.ckpt``) through ``svc-pl fit``.

The new run starts from the source's weights (every tensor; a speaker table of another size keeps its fresh
initial values, with a warning), at step 0 with a fresh optimizer; a missing or mis-shaped file stops with one
error line that names it and says what to do.
"""

from pathlib import Path

import pytest
import torch

from svc_pl.cli import main as cli_main
from svc_pl.lightning.module import SVCModule
from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0", "--data.batch_size", "4"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), clips_per_voice=3)  # 2 speakers, 4 training clips


@pytest.fixture(scope="module")
def source(tmp_path_factory, dataset):
    """A 4-step (2-batch) tiny-nsf run: its last.ckpt, and that checkpoint exported to G_2.pth / D_2.pth."""
    root = tmp_path_factory.mktemp("source")
    assert cli_main(_fit_args(root / "run", dataset, "--trainer.max_steps", "4")) == 0
    (ckpt,) = (root / "run").rglob("last.ckpt")
    assert cli_main(["export", str(ckpt), "-o", str(root / "export")]) == 0
    return {"ckpt": ckpt, "G": root / "export" / "G_2.pth", "D": root / "export" / "D_2.pth",
            "state": torch.load(ckpt, map_location="cpu", weights_only=True)}


def _fit_args(root, dataset, *extra):
    return ["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir", str(root),
            *FAST, *extra]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


@pytest.fixture
def at_train_start(monkeypatch):
    """What the module holds when training starts: step, epoch and a copy of every tensor; and its speaker table
    right after it was built, before any init_from loaded into it."""
    seen = {}
    load = SVCModule.load_generator_weights

    def record_fresh(self, path):
        seen["fresh_emb_g"] = self.net.emb_g.weight.detach().clone()
        return load(self, path)

    def record_start(self):
        seen.update(step=self.global_step, epoch=self.current_epoch,
                    state={k: v.detach().clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(SVCModule, "load_generator_weights", record_fresh)
    monkeypatch.setattr(SVCModule, "on_train_start", record_start)
    return seen


def _same(a: dict, b: dict, prefix: str, skip: tuple[str, ...] = ()) -> None:
    keys = sorted(k for k in b if k.startswith(prefix) and not k.startswith(skip))
    assert keys and keys == sorted(k for k in a if k.startswith(prefix) and not k.startswith(skip))
    differ = [k for k in keys if not torch.equal(a[k], b[k])]
    assert not differ, differ


@pytest.mark.slow
@pytest.mark.parametrize("disc_from", ["D_2.pth", "run.ckpt"])
def test_init_from_a_run_starts_from_its_weights_at_step_0(tmp_path, dataset, source, at_train_start, caplog,
                                                           disc_from):
    d_path = source["D"] if disc_from == "D_2.pth" else source["ckpt"]
    with caplog.at_level("INFO", logger="svc_pl"):
        assert cli_main(_fit_args(tmp_path / "run", dataset, "--trainer.max_steps", "2",
                                  "--model.init_from", str(source["ckpt"]),
                                  "--model.init_discriminator_from", str(d_path))) == 0
    assert f"generator initialised from {source['ckpt']}" in caplog.text
    assert f"discriminator initialised from {d_path}" in caplog.text
    # every generator and discriminator tensor is the source run's (D through so-vits-svc's names and back)
    src = source["state"]["state_dict"]
    assert at_train_start["step"] == 0 and at_train_start["epoch"] == 0
    _same(at_train_start["state"], src, "net.")
    _same(at_train_start["state"], src, "disc.")
    # a new run, not a resume: 1 batch from step 0, a fresh AdamW (one step each), the source's own file untouched
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert (source["state"]["global_step"], source["state"]["epoch"]) == (4, 2)
    assert (ckpt["global_step"], ckpt["epoch"]) == (2, 1)  # its one-batch epoch done
    assert {float(s["step"]) for opt in ckpt["optimizer_states"] for s in opt["state"].values()} == {1.0}
    assert any(not torch.equal(ckpt["state_dict"][k], src[k]) for k in src if k.startswith("net."))  # it trained


@pytest.mark.slow
def test_init_from_a_run_with_other_speakers_starts_the_table_at_its_mean_speaker(tmp_path, source,
                                                                                   at_train_start, caplog):
    three = make_dataset(tmp_path / "ds3", voices=("en", "en+f3", "en+m3"), clips_per_voice=2)
    with caplog.at_level("WARNING", logger="svc_pl"):
        assert cli_main(_fit_args(tmp_path / "run", three, "--trainer.max_steps", "2",
                                  "--model.init_from", str(source["ckpt"]))) == 0
    assert (f"{source['ckpt']}: speaker table has 2 rows, this dataset 3 speakers: the new table starts at the "
            "run's mean speaker") in caplog.text
    src, start = source["state"]["state_dict"], at_train_start["state"]
    _same(start, src, "net.", skip=("net.emb_g.",))
    # 3 new rows near the source's average voice (as a shipped base's new speakers), each a little apart: not the
    # source's 2 rows copied in, not the new model's random initial table
    table, new = src["net.emb_g.weight"], start["net.emb_g.weight"]
    assert table.shape == (2, 64) and new.shape == (3, 64)
    assert torch.all((new - table.mean(0)).abs() <= 0.5 * table.std(0) + 1e-6)
    assert not torch.equal(new, at_train_start["fresh_emb_g"])
    assert not torch.equal(new[0], new[1]) and not torch.equal(new[:2], table)


@pytest.mark.slow  # uses the source run
@pytest.mark.parametrize("option, file, change, expect", [
    ("--model.init_from", "ckpt", ["--model.net.hidden_channels", "32"],
     "--model.init_from takes a run of the same model.net settings: train with that run's config.yaml"),
    ("--model.init_discriminator_from", "ckpt", ["--model.discriminator_width", "0.5"],
     "--model.init_discriminator_from takes a run of the same model.discriminator_width"),
    ("--model.init_discriminator_from", "D", ["--model.discriminator_width", "0.5"],
     "takes a D_*.pth of this model's discriminator width (0.5; so-vits-svc's are 1.0): set "
     "--model.discriminator_width to the file's"),
], ids=["G-from-run.ckpt", "D-from-run.ckpt", "D-from-D_2.pth"])
def test_a_file_of_another_shape_is_named_with_what_to_do(tmp_path, dataset, source, capsys, option, file, change,
                                                          expect):
    path = source[file]
    code = cli_main(_fit_args(tmp_path / "run", dataset, "--trainer.max_steps", "2", option, str(path), *change))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (line,) = _error_lines(err)
    assert line.endswith(f"{path}: checkpoint does not fit the model built from its config"), line
    assert "mis-shaped tensor(s):" in err and expect in err, err[-3000:]
    assert not list(tmp_path.rglob("*.ckpt")), "nothing trained"


@pytest.mark.parametrize("option, name", [("--model.init_from", "run.ckpt"), ("--model.init_from", "G_9.pth"),
                                          ("--model.init_discriminator_from", "D_9.pth"),
                                          ("--model.init_discriminator_from", "run.ckpt")])
def test_a_missing_file_is_named(tmp_path, dataset, capsys, option, name):
    path = tmp_path / "gone" / name
    code = cli_main(_fit_args(tmp_path / "run", dataset, "--trainer.max_steps", "2", option, str(path)))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (line,) = _error_lines(err)
    assert line.endswith(f"{path}: checkpoint not found"), line
    assert not (tmp_path / "run").exists()


def test_a_discriminator_for_a_model_without_one_is_refused(tmp_path, dataset, capsys):
    path = tmp_path / "D_0.pth"
    code = cli_main(["fit", "--config", "tiny", "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                     str(tmp_path / "run"), "--model.init_discriminator_from", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (line,) = _error_lines(err)
    assert line.endswith(f"{path}: --model.init_discriminator_from was given but this model trains without a "
                         "discriminator (model.use_discriminator: false); drop the option"), line

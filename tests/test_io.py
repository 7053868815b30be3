"""svc_pl.io: atomic writes that leave the old file or the whole new one, with a new file's usual mode, and
the one restricted unpickler."""

import os
import pickle
import stat

import numpy as np
import pytest
import torch

from svc_pl.io import (
    InertObject,
    atomic_open,
    atomic_path,
    loads_restricted,
    read_torch_pickle,
    save_torch_atomic,
    write_json_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640  # what open(path, "w") gives a new file under this umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_audio(path):
    from svc_pl.data.audio import save_audio

    save_audio(path, np.zeros(1600, np.float32), 16000)


def _write_figure(path):
    from matplotlib.figure import Figure

    from svc_pl.evaluate import save_figure

    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1])
    save_figure(fig, path)


def _write_index(path):
    from svc_pl.infer.retrieval import FeatureIndex

    units = {"alto": np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)}
    FeatureIndex.build(units).save(path)


WRITERS = {
    "json": lambda p: write_json_atomic(p / "a.json", {"x": 1}),
    "text": lambda p: write_text_atomic(p / "a.txt", "hello"),
    "torch": lambda p: save_torch_atomic({"w": torch.zeros(2)}, p / "a.pt"),
    "audio": lambda p: _write_audio(p / "a.wav"),
    "figure": lambda p: _write_figure(p / "a.png"),
    "index": lambda p: _write_index(p / "index"),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_written_files_get_the_usual_mode(tmp_path, umask_027, kind):
    """A file a user's run writes is readable as any file they write (mkstemp's temporaries are 0600)."""
    WRITERS[kind](tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for f in files:
        assert _mode(f) == umask_027, (f.name, oct(_mode(f)))
        assert not f.name.endswith(".tmp")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_existing_mode_is_not_inherited_from_mkstemp(tmp_path):
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert _mode(tmp) == 0o600  # why the writers must not keep the temporary's mode
    write_json_atomic(tmp_path / "b.json", {})
    assert _mode(tmp_path / "b.json") == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code_and_reads_arrays():
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|os|nt).system from a feature file"):
        loads_restricted(pickle.dumps(_Evil()), what="feature file")
    arr = np.array([np.arange(3, dtype=np.float32), np.arange(2, dtype=np.float32)], dtype=object)
    back = loads_restricted(pickle.dumps(arr))
    assert back.dtype == object and np.array_equal(back[0], arr[0])
    with pytest.raises(pickle.UnpicklingError):  # tensors only where torch globals are allowed
        loads_restricted(pickle.dumps(torch.zeros(2)))


def test_torch_pickle_with_foreign_classes_loads_inert(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"cfg": _Evil(), "w": torch.ones(2)}, path)
    obj = read_torch_pickle(path)
    assert torch.equal(obj["w"], torch.ones(2))
    assert isinstance(obj["cfg"], InertObject)  # os.system was never resolved, let alone called

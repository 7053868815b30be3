"""Crash-safe writes and safe reads of pickles: every file svc_pl writes, and every pickle it is handed.

Atomic writes: the data go to a hidden temporary ``.<name>.<random>.tmp`` beside the target, are
fsync'ed and renamed over it (``os.replace``, atomic on POSIX and Windows), then the directory is
fsync'ed so the rename survives a power cut. A reader sees the old file or the complete new one, never
a partial one; on any error the temporary is removed and the target is untouched. The file gets the
mode a plain ``open()`` would give it (``0o666`` less the umask), not ``tempfile.mkstemp``'s 0600.

Restricted unpickling: :class:`RestrictedUnpickler` resolves only the globals a file of tensors or numpy
arrays legitimately names (tensor and array rebuilders, dtypes, plain containers). Any other global is
refused, or with ``inert=True`` becomes an :class:`InertObject` that merely records what it was given
(for fairseq checkpoints, whose config objects are instances of classes we do not import). Either way
no callable from the file is ever resolved or called.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# ---------------------------------------------------------------------------------------------------------
# Atomic writes

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<name>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process umask."""
    try:  # Linux >= 4.7 reports the umask without changing it
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Persist a rename in ``directory`` (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (faiss, safetensors,
    matplotlib); when the block ends without error the file is fsync'ed, given the usual mode and renamed
    over ``path``. The temporary already exists (empty) when the block starts.

    Raises:
        FileNotFoundError: the writer left no file at the temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # O_EXCL: never clobber anything
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` for writing, atomically: ``path`` is replaced only when the block ends without error.

    Args:
        path: the file to write; its folder is created if missing.
        mode: "wb" or "w" (text, ``encoding`` default utf-8).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
        yield f


def _commit(tmp: Path, path: Path) -> None:
    os.chmod(tmp, default_file_mode())  # whatever created the temporary, the file gets a new file's mode
    os.replace(tmp, path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    import json

    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically: never a half-written checkpoint."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def remove_stale_temp_files(directory: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Delete the temporaries an interrupted atomic write of files matching ``name_glob`` left in ``directory``."""
    removed = []
    for tmp in Path(directory).glob(f".{name_glob}.*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# ---------------------------------------------------------------------------------------------------------
# Restricted unpickling


class InertObject:
    """Stand-in for any class or function a pickle names that we do not trust: it only records its input.

    ``args`` holds constructor/call arguments, ``state`` what pickle's BUILD passed (usually ``__dict__``),
    ``items``/``elements`` what dict- or list-like pickles stored into it.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _inert_class(module: str, name: str) -> type:
    members = {"__module__": "svc_pl.inert." + module, "qualname": f"{module}.{name}"}
    return type(name, (InertObject,), members)


_SAFE_TORCH_FUNCTIONS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                         "_rebuild_parameter_with_state")
_SAFE_BUILTINS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "int": int,
                  "float": float, "bool": bool, "str": str, "bytes": bytes, "bytearray": bytearray,
                  "complex": complex}
# numpy's array and scalar rebuilding, under the module names numpy 1.x and 2.x pickle them with
NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


def safe_global(module: str, name: str, *, torch_globals: bool = True) -> Any | None:
    """The real object for the few globals a file of tensors or numpy arrays legitimately names, else None."""
    if (module, name) in NUMPY_GLOBALS:
        import numpy as np

        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        return getattr(_numpy_multiarray(), name)
    if module == "numpy.dtypes":  # numpy >= 1.25 builds dtypes of these classes
        import numpy as np

        obj = getattr(getattr(np, "dtypes", None), name, None)
        return obj if isinstance(obj, type) and issubclass(obj, np.dtype) else None
    if module in ("builtins", "__builtin__"):
        return _SAFE_BUILTINS.get(name)
    if module == "collections" and name == "OrderedDict":
        return OrderedDict
    if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles spell bytes
        import codecs

        return codecs.encode
    if not torch_globals:
        return None
    import torch

    if module == "torch._utils" and name in _SAFE_TORCH_FUNCTIONS:
        return getattr(torch._utils, name, None)
    if module == "torch":
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype) or obj in (torch.Size, torch.device):
            return obj
    if module == "torch.nn.parameter" and name == "Parameter":
        return torch.nn.Parameter
    return None


def _numpy_multiarray():
    import numpy as np

    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def numpy_safe_globals() -> list:
    """:data:`NUMPY_GLOBALS` in the form ``torch.serialization.safe_globals`` takes (for ``weights_only`` loads
    of files holding numpy arrays)."""
    import numpy as np

    allowed: list = [np.ndarray, np.dtype]
    for fn in (_numpy_multiarray()._reconstruct, _numpy_multiarray().scalar):
        allowed.append(fn)
        allowed += [(fn, f"{mod}.{fn.__name__}") for mod, name in sorted(NUMPY_GLOBALS) if name == fn.__name__]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for bits in (8, 16, 32, 64):
            allowed += [getattr(dtypes, f"{kind}{bits}DType") for kind in ("Int", "UInt", "Float")
                        if hasattr(dtypes, f"{kind}{bits}DType")]
        allowed.append(dtypes.BoolDType)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`safe_global`'s globals.

    Args:
        file: binary file to read.
        inert: unknown globals become :class:`InertObject` records instead of an error.
        torch_globals: also allow torch's tensor rebuilders and dtypes (off: numpy arrays and plain data only).
        what: what the file is, for the error message ("feature file", ...).
    """

    def __init__(self, file: IO[bytes], *, inert: bool = False, torch_globals: bool = True, what: str = "file",
                 **kwargs: Any):
        super().__init__(file, **kwargs)
        self.inert, self.torch_globals, self.what = inert, torch_globals, what

    def find_class(self, module: str, name: str) -> Any:
        obj = safe_global(module, name, torch_globals=self.torch_globals)
        if obj is not None:
            return obj
        if self.inert:
            return _inert_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a {self.what}")


def loads_restricted(data: bytes, *, torch_globals: bool = False, what: str = "file") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (unknown globals refused)."""
    return RestrictedUnpickler(io.BytesIO(data), torch_globals=torch_globals, what=what).load()


class _InertPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an ``Unpickler`` class and a ``load`` function."""

    __name__ = "svc_pl_restricted_pickle"

    class Unpickler(RestrictedUnpickler):
        def __init__(self, file: IO[bytes], **kwargs: Any):
            super().__init__(file, inert=True, **kwargs)

    @staticmethod
    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, inert=True, **kwargs).load()


def read_torch_pickle(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file on CPU; foreign classes become :class:`InertObject` records, so no foreign code
    runs.

    Raises:
        pickle.UnpicklingError, RuntimeError, EOFError, ...: the file is not a torch pickle.
    """
    import torch

    # torch.load honours pickle_module only with weights_only=False; the restricted unpickler is what keeps this
    # safe: every global the file names goes through safe_global (tensor rebuilders, dtypes, plain containers),
    # anything else becomes an inert record, so no callable from the file is ever resolved or called.
    # (weights_only=True cannot read fairseq checkpoints: it refuses their config objects outright.)
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_InertPickleModule)


# ---------------------------------------------------------------------------------------------------------
# Weights-only reads


def read_weights(path: str | os.PathLike, *, what: str = "checkpoint", corrupt: str = "; the file may be truncated "
                 "or corrupt: copy it again", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: the one read of every checkpoint svc_pl is handed (training runs'
    ``.ckpt``, so-vits-svc ``G_*.pth``/``D_*.pth`` and diffusion ``model_*.pt``); nothing in the file can run.

    Args:
        what: the file's kind, for the message of a missing file (``"{path}: {what} not found"``).
        corrupt: what to do about an unreadable file, appended to ``"{path}: cannot be read as a checkpoint (...)"``.

    Raises:
        UnsafeCheckpointError: the file pickles objects other than tensors and plain data (code); it was refused.
        UserFacingError: the file is missing, truncated or corrupt (the message names it).
    """
    import re

    import torch

    from svc_pl.errors import UnsafeCheckpointError, UserFacingError

    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as err:  # refused globals, truncated zip, bad pickle stream, ...: say which file
        if isinstance(err, pickle.UnpicklingError) and _is_pickle(path):  # a whole pickle the reader refused
            refused = re.search(r"GLOBAL (\S+)", str(err))
            raise UnsafeCheckpointError(path, f"it refers to {refused.group(1)}" if refused else "refused") from None
        raise UserFacingError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {err}){corrupt}") \
            from None


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` holds a pickle as ``torch.save`` writes one (a zip archive, or a legacy file that starts
    with pickle's PROTO opcode) rather than bytes of no such kind."""
    import zipfile

    with open(path, "rb") as f:
        return f.read(1) == b"\x80" or zipfile.is_zipfile(f)

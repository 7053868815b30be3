"""Exceptions whose message is meant for the user: what went wrong, where, and what to do."""

from __future__ import annotations

import os


class UserFacingError(Exception):
    """Base class: the CLI prints the message without a traceback and exits non-zero."""


class CheckpointMismatchError(UserFacingError):
    """A checkpoint does not fit the model built from its config."""

    def __init__(self, path: str, missing: list[str], unexpected: list[str], mismatched: list[str], hint: str = ""):
        self.path = path
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        lines = [f"{path}: checkpoint does not fit the model built from its config"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if items:
                lines.append(f"  {len(items)} {title} tensor(s):")
                lines.extend(f"    {item}" for item in items)
        lines.append(hint or "  Check that config.json is the one this checkpoint was trained with.")
        super().__init__("\n".join(lines))


class BadAudioError(UserFacingError):
    """An audio file cannot be used (unreadable, empty, silent, too short, non-finite samples)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(UserFacingError):
    """A config file is missing keys or holds values that cannot work."""


class UnsafeCheckpointError(UserFacingError):
    """A model file holds pickled objects other than tensors and plain data; it was refused, nothing in it ran."""

    def __init__(self, path: str | os.PathLike, refused: str):
        self.path = str(path)
        self.refused = refused
        super().__init__(f"{path}: contains objects other than tensors and plain data ({refused}) and was not "
                         "loaded: nothing in it ran. svc_pl checkpoints hold only tensors and plain data, so this "
                         "file was made by other code or altered; do not use it")

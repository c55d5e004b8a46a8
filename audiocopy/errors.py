"""One exception root for everything a user can cause.

Every error that bad input, a missing file or a mismatched model can raise is
an ``AudiocopyError``. The CLI and the server catch exactly this root and show
its message as one line; anything else is a bug and keeps its traceback.
Messages name the file or value at fault and say what would fix it.
"""
from __future__ import annotations


class AudiocopyError(Exception):
    """Root of all user-facing errors."""


class BadAudio(AudiocopyError):
    """A file or buffer could not be decoded into usable audio."""

    def __init__(self, source: object, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnsupportedFormat(BadAudio):
    """The container or codec is not one we can decode."""


class AudioTooShort(BadAudio):
    """Decoded fine, but shorter than one analysis window."""


class ModelError(AudiocopyError):
    """A model or recognizer database is missing, corrupt or incompatible."""


class ParamsMismatch(ModelError):
    """A saved artifact was built with different feature/model parameters."""


class DatasetError(AudiocopyError):
    """The training dataset is missing, incomplete or inconsistent."""


class ConfigError(AudiocopyError):
    """A setting given on the command line or in the environment is invalid."""


class ProtocolError(AudiocopyError):
    """A streaming client broke the WebSocket protocol."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)

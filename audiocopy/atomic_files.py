"""Files that are either complete or absent: atomic writes and checked JSON reads.

Place in the pipeline: at the bottom, beside ``config`` and ``errors``. Every
artifact (databases, encoders, track models, indexes, caches, checkpoints) is
written through ``atomic_open``: to a temporary file in the same folder,
flushed to disk, then renamed over the target. A rename within one file
system is atomic, so a crash, a full disk or Ctrl-C leaves the old file or
the new one, never half of one that looks finished.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelError


@contextlib.contextmanager
def atomic_open(path: Path, suffix: str = ""):
    """A binary file handle whose content replaces ``path`` only if the block completes.

    Writes go to a temporary file in the same directory (same file system, so
    the final rename is atomic), flushed to disk before the rename; on any
    error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory."""
    with atomic_open(path) as fh:
        fh.write(data)


def create_once(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` (mode 0600) unless it exists; True when this call created it.

    For files several server processes sharing one state folder may all
    try to create at start-up (a signing key, a token hash). The text is
    written whole to a private temporary file, then hard-linked to its
    name: a link never replaces a file, so exactly one caller's text is
    kept, and a caller that gets False reads that one, complete (creating
    the final name with ``O_EXCL`` and then writing would let the others
    fail, or read it half written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    return True


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON-serialise ``obj`` to ``path`` atomically (pretty, UTF-8)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning absence or corruption into ``ModelError``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} is unreadable: {path} ({exc})") from None

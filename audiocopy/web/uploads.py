"""Receiving uploaded audio files safely.

Place in the pipeline: the first step of the Identify page and of adding a
track on the Catalog page. The upload is streamed to disk in chunks (never
held whole in memory), counted against ``max_upload_bytes`` as it arrives
(so a 5 GB upload is cut off at the limit, not after), and stored under a
name the server generates. The client's file name is only used for its
extension, which must be a known audio type, and for display: a name such
as ``../../etc/passwd`` never becomes part of a path.

Size is not length: a 270 kB FLAC can declare three hours. Identify
decodes only the head of a file (``signal.audio.load_audio_head``); a
catalogue track, decoded whole, is refused here when its header declares
more than ``MAX_TRACK_SECONDS``.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from ..signal.audio import AUDIO_EXTENSIONS, declared_seconds
from .responses import fail

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_FIELD_BYTES = 4096
MAX_PARTS = 8
#: Multipart boundaries and headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: Longest catalogue track accepted by upload (its declared length): a track
#: is decoded whole for training, so its length, not its size, sets the memory.
MAX_TRACK_SECONDS = 3600.0


@dataclass
class Upload:
    """A received file: ``path`` (server-chosen name), its audio ``suffix``,
    the client's ``filename`` (display only), ``size`` in bytes and the
    form's small text ``fields``."""

    path: Path
    suffix: str
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def display_name(filename: str | None) -> str:
    """The client's file name cut to its last component and 200 printable characters."""
    # Some clients percent-encode the name; decoding it is safe because the
    # result is only ever shown, never used as a path.
    name = unquote(filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200] or "upload"


async def receive_upload(request: web.Request, *, max_bytes: int, tmp_dir: Path,
                         file_field: str = "file", max_seconds: float | None = None) -> Upload:
    """Stream a multipart/form-data upload to ``tmp_dir``.

    max_bytes: largest file accepted. max_seconds: longest audio accepted,
    as the file's header declares it (None: any; see ``check_declared_length``).
    Raises HTTP 415 (not multipart, or not an audio file type), 413 (too
    large or too long) or 400 (no file, malformed form).
    """
    if request.content_type != "multipart/form-data":
        raise fail(415, "unsupported_media_type", "send the file as multipart/form-data")
    if request.content_length is not None and request.content_length > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise fail(413, "too_large", f"the upload is larger than {max_bytes // (1024 * 1024)} MB")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    upload: Upload | None = None
    try:
        for _ in range(MAX_PARTS):
            part = await reader.next()
            if part is None:
                break
            if part.name == file_field and part.filename is not None and upload is None:
                upload = await _save_file(part, max_bytes=max_bytes, tmp_dir=tmp_dir)
            elif part.filename is None and part.name:
                data = await part.read(decode=True)
                if len(data) > MAX_FIELD_BYTES:
                    raise fail(400, "bad_form", f"form field {part.name[:40]!r} is too long")
                fields[part.name] = data.decode("utf-8", "replace")
            else:
                await part.release()
    except web.HTTPException:
        if upload is not None:
            upload.discard()
        raise
    except ValueError as exc:  # malformed multipart
        if upload is not None:
            upload.discard()
        raise fail(400, "bad_form", f"malformed form data ({exc})") from None
    if upload is None:
        raise fail(400, "no_file", f"no file in the form field {file_field!r}")
    upload.fields = fields
    if max_seconds is not None:
        try:
            await check_declared_length(upload, max_seconds)
        except web.HTTPException:
            upload.discard()
            raise
    return upload


async def check_declared_length(upload: Upload, max_seconds: float) -> None:
    """413 ``too_long`` when the file's header declares more than ``max_seconds`` of audio.

    For uploads decoded whole (a catalogue track, in the training child):
    the header is read before any decoding, so a small file declaring hours
    is refused at once. A file that declares no length passes here; the
    decode itself runs in a child process, where running out of memory
    fails the job, not the server.
    """
    declared = await asyncio.to_thread(declared_seconds, upload.path)
    if declared is not None and declared > max_seconds:
        raise fail(413, "too_long", f"{upload.filename} declares {declared / 60:.0f} minutes of audio; "
                                    f"at most {max_seconds / 60:.0f} minutes are accepted")


async def _save_file(part, *, max_bytes: int, tmp_dir: Path) -> Upload:
    filename = display_name(part.filename)
    suffix = Path(filename).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        await part.release()
        raise fail(415, "unsupported_media_type",
                   f"{suffix or 'files without an extension'} is not a supported audio type; "
                   f"use one of {', '.join(sorted(AUDIO_EXTENSIONS))}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f"{uuid.uuid4().hex}{suffix}"
    size = 0
    try:
        with open(path, "wb") as fh:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise fail(413, "too_large", f"the file is larger than {max_bytes // (1024 * 1024)} MB")
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise fail(400, "empty_file", "the uploaded file is empty")
    return Upload(path, suffix, filename, size)

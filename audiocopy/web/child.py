"""Run a library function in a child process, from the event loop, with its progress and its failure.

Place in the pipeline: under ``web.jobs``. Catalog changes (enrol a track,
remove one) call library functions (``training.enroll_fingerprint``,
``training.enroll_cnnbin``), never the command line; they run here in a
child process for isolation: a crash or an out-of-memory kill in training
costs the job, not the server, and training's threads (TensorFlow, BLAS
pools, dataset workers) never compete inside the process that answers live
streams.

How. The child is started with ``multiprocessing``'s *spawn* context (a
fresh interpreter: forking a server that holds threads, sockets and a loaded
model would copy all of them, and their locks, into the child). It becomes
the leader of its own process group, so a kill also reaches whatever it
started (ffmpeg decoding an upload, dataset workers). Its ``sys.stderr`` and
logging go over a pipe to the parent line by line (progress bars included:
``on_line`` parses them); at the end it sends either "ok" or its error's
message. The parent watches the pipe and the process's exit with the event
loop's readers, so nothing blocks the loop. A child that dies without a
word (SIGKILL from the kernel's OOM killer, a segfault) is reported by its
exit status.
"""
from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import os
import signal
import sys
from typing import Callable

from ..errors import AudiocopyError

log = logging.getLogger(__name__)

#: Longest line passed from the child (a pipe write up to 4 KiB is atomic, so
#: a message never reaches the parent half-written).
MAX_LINE_CHARS = 1000


class ChildFailed(AudiocopyError):
    """The function raised in the child, or the child died; the message says which, in words."""


class ChildProcess:
    """One call ``target(**kwargs)`` in a child process (see module docstring).

    target: a module-level function (it is pickled by name) that returns
    nothing useful and raises on failure; kwargs: its picklable arguments;
    on_line: called on the event loop with every line the child writes to
    stderr or logs; name: the process name (for ``ps``).
    """

    def __init__(self, target: Callable[..., object], kwargs: dict, *, on_line: Callable[[str], None],
                 name: str = "audiocopy-job"):
        ctx = multiprocessing.get_context("spawn")
        self._reader, writer = ctx.Pipe(duplex=False)
        self._writer = writer
        self._proc = ctx.Process(target=_child_main, args=(writer, target, kwargs), name=name)
        self._on_line = on_line
        self._result: tuple[str, str | None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    async def run(self) -> None:
        """Start the child and wait for it; ``ChildFailed`` unless the function returned.

        Cancelling this kills the child (and its process group).
        """
        loop = asyncio.get_running_loop()
        # On the loop, not in a thread: a start that a cancellation overtook would leave an orphan.
        # It is a fork-exec and a small write, the way asyncio starts any subprocess.
        self._proc.start()
        self._writer.close()  # the child holds the only writing end now: its exit is our EOF
        exited = loop.create_future()
        loop.add_reader(self._reader.fileno(), self._read)
        loop.add_reader(self._proc.sentinel, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        except asyncio.CancelledError:
            self.kill()
            raise
        finally:
            loop.remove_reader(self._proc.sentinel)
            self._read()  # what it wrote just before exiting
            loop.remove_reader(self._reader.fileno())
            self._reader.close()
        self._proc.join()  # it has exited: this only reaps it
        self._check()

    def kill(self) -> None:
        """Kill the child and everything it started (no-op once it has exited)."""
        if self._proc.pid is None or self._proc.exitcode is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # not yet a group leader: the child alone
            self._proc.kill()
        self._proc.join(5)

    def _read(self) -> None:
        try:
            while not self._reader.closed and self._reader.poll():
                kind, value = self._reader.recv()
                if kind == "line":
                    self._on_line(value)
                else:
                    self._result = (kind, value)
        except (EOFError, OSError):  # the child has gone: stop watching its pipe
            asyncio.get_running_loop().remove_reader(self._reader.fileno())

    def _check(self) -> None:
        code = self._proc.exitcode
        if self._result is not None and self._result[0] == "error":
            raise ChildFailed(self._result[1] or "the job failed")
        if code == 0 and self._result is not None:
            return
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            raise ChildFailed(f"the job's process was killed by {name}{hint}")
        raise ChildFailed(f"the job's process exited with status {code} without finishing")


class _LineWriter(io.TextIOBase):
    """A text stream that sends every line (split at \\n or \\r, as progress bars write) to the parent."""

    def __init__(self, conn):
        self._conn = conn
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self._conn.send(("line", line[:MAX_LINE_CHARS]))
        return len(text)

    def flush(self) -> None:
        if self._buf.strip():
            self._conn.send(("line", self._buf[:MAX_LINE_CHARS]))
        self._buf = ""


def _child_main(conn, target: Callable[..., object], kwargs: dict) -> None:
    """The child's entry point: own process group, stderr to the parent, run, report."""
    os.setsid()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr = _LineWriter(conn)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        force=True)
    try:
        target(**kwargs)
    except AudiocopyError as exc:
        result, code = ("error", str(exc)), 1
    except BaseException as exc:  # a bug: its traceback goes to the parent's log, its name to the job
        logging.getLogger(__name__).exception("job failed")
        result, code = ("error", f"{type(exc).__name__}: {exc}"[:MAX_LINE_CHARS]), 1
    else:
        result, code = ("ok", None), 0
    sys.stderr.flush()
    conn.send(result)
    conn.close()
    sys.exit(code)

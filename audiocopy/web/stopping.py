"""Stopping the server's background tasks, even when a library or the runtime loses the cancel.

Place in the pipeline: server plumbing, beside ``web.threads``. URL
monitors and webhook deliveries run as asyncio tasks around aiohttp's
client, and the lease loop, the batcher, the catalogue watcher and the job
worker run as tasks too; a server shutdown, or a lease lost to another
worker, stops each of them with ``cancel_until_done``.

Why not just ``task.cancel()`` and wait. A cancel can be lost on its way
through a library: aiohttp's connect timeout turns a cancel that arrives as
the timeout fires into ``TimeoutError`` (aio-libs/aiohttp#5979), which is an
``OSError`` that a retry loop rightly catches, and Python 3.11's
``asyncio.wait_for`` can return a result that completed at the moment it was
cancelled. The task then goes on retrying, and whoever waits for it waits
forever (a server that never shuts down, a monitor run twice). So:

* ``cancel_until_done`` cancels again every ``every_s`` until the task has
  ended, and
* a retry loop that catches a network error asks ``stop_requested`` first:
  while a cancel is pending on the current task, an error is the stop
  arriving in disguise, not a failure to retry.

Our own loops lose no cancel. A loop that sleeps until woken or until a
timeout must not use Python 3.11's ``asyncio.wait_for`` for it: when the wake
and the cancel come in the same turn of the event loop, ``wait_for`` returns
as if woken and the cancel is gone (CPython gh-86296, fixed in 3.12 by
rebuilding ``wait_for`` on ``asyncio.timeout``). The lease loop did exactly
that when a monitor was added as the server stopped, and the shutdown waited
forever (two CI runs hung so). ``wake_or_timeout`` uses ``asyncio.timeout``,
which counts cancels and keeps them.
"""
from __future__ import annotations

import asyncio

#: How often (s) a task that has not ended is cancelled again.
RECANCEL_EVERY_S = 1.0


def stop_requested() -> bool:
    """Whether the running task has a cancel pending (``asyncio.Task.cancelling``); False outside a task."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop running: no task to stop
        return False
    return task is not None and task.cancelling() > 0


async def cancel_until_done(task: asyncio.Task, *, every_s: float = RECANCEL_EVERY_S) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``every_s`` seconds.

    Its result or exception is retrieved and dropped: the task logs its own
    failures, and a stop only needs it gone.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    await asyncio.gather(task, return_exceptions=True)


async def wake_or_timeout(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` seconds have passed; True when it was set.

    A cancel that comes with the wake is raised, never lost (module docstring).
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
        return True
    except TimeoutError:
        return False

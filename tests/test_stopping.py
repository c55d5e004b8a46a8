"""Stopping tasks whose cancel a library may lose (``audiocopy.web.stopping``)."""
from __future__ import annotations

import asyncio

import pytest

from audiocopy.web.stopping import cancel_until_done, stop_requested, wake_or_timeout


@pytest.mark.asyncio
async def test_a_task_that_swallows_cancels_is_cancelled_until_it_ends():
    cancels = []

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) == 3:
                    raise
                asyncio.current_task().uncancel()  # lost, as a library may lose it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done(task, every_s=0.05), timeout=5)
    assert task.cancelled() and len(cancels) == 3


@pytest.mark.asyncio
async def test_a_finished_task_is_left_as_it_is_and_its_error_is_not_raised():
    async def fails():
        raise ValueError("logged by the task itself")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_until_done(task)
    assert isinstance(task.exception(), ValueError)


@pytest.mark.asyncio
async def test_stop_requested_sees_a_cancel_that_came_back_as_an_error():
    seen = []

    async def retry_loop():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            try:
                raise TimeoutError("connect timed out")  # the cancel, turned into an error
            except TimeoutError:
                seen.append(stop_requested())
        seen.append(stop_requested())

    task = asyncio.create_task(retry_loop())
    await asyncio.sleep(0)
    assert not stop_requested()  # the test's own task: nothing pending
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [True, True]


def test_stop_requested_outside_a_task_is_false():
    assert stop_requested() is False


@pytest.mark.asyncio
@pytest.mark.parametrize("every_s", [0.01, 1.0])
async def test_a_task_that_obeys_ends_at_the_first_cancel(every_s):
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done(task, every_s=every_s), timeout=0.5)
    assert task.cancelled()


@pytest.mark.asyncio
async def test_wake_or_timeout_says_which_came_first():
    event = asyncio.Event()
    assert await wake_or_timeout(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wake_or_timeout(event, 5) is True


@pytest.mark.asyncio
@pytest.mark.parametrize("turns", [0, 1, 2, 5])
async def test_a_cancel_that_comes_with_the_wake_is_kept(turns):
    """``asyncio.wait_for`` on 3.11 loses it here (CPython gh-86296); the loop would go on."""
    event = asyncio.Event()

    async def loop_until_cancelled():
        while True:
            event.clear()
            await wake_or_timeout(event, 60)

    task = asyncio.create_task(loop_until_cancelled())
    for _ in range(turns):
        await asyncio.sleep(0)
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    assert task.cancelled()

"""Stopping a background task the way every long-running loop of ours stops."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it has ended. The task's own cancellation is
    absorbed; if the caller itself is being cancelled meanwhile, that cancellation goes on."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise

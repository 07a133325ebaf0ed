"""Hot swap: notice a newly promoted bundle, load and warm it up off the event loop, hand it over.

A bundle that fails to load is logged and skipped; the old model keeps serving, and the
same version is not tried again until PROMOTED changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from fraudguard.errors import BundleError
from fraudguard.tasks import cancel_and_wait
from scoring.model.registry import activate, promoted_version
from scoring.model.runtime import ActiveModel

__all__ = ["ActiveModel", "ModelWatcher"]

log = logging.getLogger("fraudguard.scoring")


class ModelWatcher:
    """Polls ``models_dir/PROMOTED`` every ``interval_s`` and swaps in what it names."""

    def __init__(self, models_dir: Path, interval_s: float, threads: int = 1) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._models_dir = models_dir
        self._interval_s = interval_s
        self._threads = threads
        self._on_new_model: Callable[[ActiveModel], None] | None = None
        self._current: str | None = None  # the version being served
        self._failed: str | None = None  # what PROMOTED held when loading last failed (a version or an error)
        self._lock = asyncio.Lock()  # one check at a time: a poll and reload_now never load twice
        self._task: asyncio.Task[None] | None = None

    @property
    def current_version(self) -> str | None:
        return self._current

    def start(self, on_new_model: Callable[[ActiveModel], None], current_version: str) -> None:
        """Start polling (call from a running loop); ``on_new_model`` is called on the loop after each swap."""
        if self._task is not None:
            raise RuntimeError("the model watcher is already running")
        self._on_new_model = on_new_model
        self._current = current_version
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="fraudguard-model-watcher")

    async def reload_now(self) -> ActiveModel | None:
        """Check PROMOTED now; the new model, or None if it names the one being served.

        Unlike polling, this retries a version that failed before, and raises ``BundleError``
        if the promoted bundle does not load (the old model keeps serving).
        """
        return await self._check(explicit=True)

    async def stop(self) -> None:
        """Stop polling; a load already running in its thread finishes and is dropped."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._check(explicit=False)
            except Exception:  # keep watching: a later promotion may well load
                log.exception("model watcher check failed", extra={"models_dir": str(self._models_dir)})

    async def _check(self, explicit: bool) -> ActiveModel | None:
        if self._on_new_model is None:
            raise RuntimeError("start the model watcher before reloading")
        async with self._lock:
            try:
                version = promoted_version(self._models_dir)
            except BundleError as exc:
                self._failure(str(exc), exc, explicit)
                return None
            if version is None or version == self._current:
                self._failed = None  # PROMOTED changed back: a later re-promotion is worth another try
                return None
            if version == self._failed and not explicit:
                return None
            try:
                model = await asyncio.to_thread(activate, self._models_dir / version, self._threads)
                self._on_new_model(model)
            except Exception as exc:
                self._failure(version, exc, explicit)
                return None
            self._current, self._failed = version, None
            log.debug("promoted model bundle swapped in", extra={"model_version": version})
            return model

    def _failure(self, key: str, exc: Exception, explicit: bool) -> None:
        """Log what PROMOTED names but cannot be served (once per PROMOTED content); re-raise if asked explicitly.

        A ``BundleError`` is the bundle's fault and its message says why; anything else (a bug, the
        callback failing) is logged with its traceback.
        """
        if key != self._failed or explicit:
            log.error("promoted model bundle not loaded; keeping the current model",
                      exc_info=None if isinstance(exc, BundleError) else exc,
                      extra={"models_dir": str(self._models_dir), "promoted": key,
                             "model_version": self._current, "error": str(exc)})
        self._failed = key
        if explicit:
            raise exc

"""Hot reload of the served rules: notice an edited rules text or list, compile it off the event loop, swap it in.

Every ``interval_s`` the watcher compares the files' (mtime, size, inode) with those of the rules it last
loaded. A change is read and compiled on a worker thread (``asyncio.to_thread``) and handed over on the loop.
A text that does not compile is logged with its line and column and the current rules keep deciding; it is
not tried again until the files change. A deleted rules text turns the rules off: the model alone decides.
Write the file elsewhere and rename it into place, so the watcher never reads half of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fraudguard.tasks import cancel_and_wait
from scoring.rules.files import Fingerprint, RulesFileError, RulesSource
from scoring.rules.ruleset import RuleSet

log = logging.getLogger("fraudguard.scoring")


class RulesWatcher:
    """Polls ``source`` every ``interval_s``; ``on_new_rules`` (on the loop) gets each new ``RuleSet`` or ``None``."""

    def __init__(self, source: RulesSource, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.source = source
        self._interval_s = interval_s
        self._on_new_rules: Callable[[RuleSet | None], None] | None = None
        self._loaded: Fingerprint | None = None  # of the rules being served
        self._failed: Fingerprint | None = None  # of the files that last failed to load
        self._task: asyncio.Task[None] | None = None

    def start(self, on_new_rules: Callable[[RuleSet | None], None], loaded: Fingerprint | None) -> None:
        """Start polling (from a running loop); ``loaded`` is the fingerprint of the rules served now."""
        if self._task is not None:
            raise RuntimeError("the rules watcher is already running")
        self._on_new_rules, self._loaded = on_new_rules, loaded
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="fraudguard-rules-watcher")

    async def stop(self) -> None:
        """Stop polling; a compilation already running in its thread finishes and is dropped."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:  # keep watching: a later edit may well load
                log.exception("rules watcher check failed", extra={"rules_file": str(self.source.path)})

    async def check(self) -> None:
        """Load and swap in the rules if the files changed since the last load (or failed load)."""
        if self._on_new_rules is None:
            raise RuntimeError("start the rules watcher before checking")
        fingerprint = self.source.fingerprint()
        if fingerprint == self._loaded or (fingerprint is not None and fingerprint == self._failed):
            return
        if fingerprint is None:
            self._on_new_rules(None)
            self._loaded = self._failed = None
            log.warning("rules file removed; the model alone decides", extra={"rules_file": str(self.source.path)})
            return
        try:
            rule_set = await asyncio.to_thread(self.source.load)
        except RulesFileError as exc:
            self._failed = fingerprint
            log.error("rules not loaded; keeping the current rules",
                      extra={"rules_file": str(self.source.path), "error": str(exc), "line": exc.line,
                             "column": exc.column})
            return
        self._on_new_rules(rule_set)
        self._loaded, self._failed = fingerprint, None

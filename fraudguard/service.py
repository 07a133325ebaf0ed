"""What every long-running command (``serve``, ``gateway``) does around its own work: read the settings from flags
and ``FRAUDGUARD_*``, set up the JSON logs, run until told to stop, and turn a start-up failure into its
documented exit code with one line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fraudguard.exit_codes import ExitCode
from fraudguard.logs import configure_logging
from fraudguard.settings import Settings, SettingsError

log = logging.getLogger("fraudguard")


class StartupError(Exception):
    """The service cannot start; carries the documented exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def service_main(argv: list[str], *, prog: str, description: str,
                 run: Callable[[Settings], Coroutine[Any, Any, None]], only: Sequence[str] | None = None,
                 exclude: Sequence[str] = (),
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> int:
    """Parse ``argv`` into :class:`Settings` (the fields ``only``/not ``exclude``), log, ``run``; the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    Settings.add_arguments(parser, only=only, exclude=exclude)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_sources(args)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return int(ExitCode.INVALID_SETTING)
    configure_logging(settings.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(settings))
    except StartupError as exc:
        log.error("cannot start", extra={"error": str(exc), "exit_code": int(exc.code)})
        print(f"{prog}: {exc}", file=sys.stderr)
        return int(exc.code)
    return 0

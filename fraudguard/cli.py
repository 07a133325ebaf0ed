"""The ``fraudguard`` console script: dispatches, lazily, to each package's entry point.

Nothing heavy is imported until a subcommand is chosen, so ``fraudguard --help`` is instant.
Each entry point is ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import os
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("scoring.server", "run the gRPC scoring server"),
    "gateway": ("gateway.server", "run the REST gateway (JSON API, Stripe webhooks, metrics) in front of serve"),
    "generate": ("trainer.generate_cli", "write synthetic payments with labelled fraud scenarios"),
    "train": ("trainer.train_cli", "train a model bundle on a payments file"),
    "evaluate": ("trainer.evaluate_cli", "score a period with a bundle and write an evaluation report"),
    "models": ("trainer.models_cli", "list, show, promote, roll back model bundles (audited); make the demo bundle"),
    "bench": ("benchmarks.loadgen", "load-generate against a scoring server and report latency"),
    "keys": ("fraudguard.keys_cli", "create, list, revoke API keys; rotate the personal-data keys"),
    "audit": ("fraudguard.audit_cli", "verify and list the hash-chained audit log"),
    "erase": ("fraudguard.privacy_cli", "GDPR erasure: remove a customer's personal data, audited"),
}


def _usage() -> str:
    lines = ["usage: fraudguard COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'fraudguard COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"fraudguard: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    # gRPC's fork handlers would run in every child we fork only to exec (pg_ctl of the embedded PostgreSQL) and can
    # crash it while gRPC threads are busy; gRPC reads this when it is first imported, below.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    module = importlib.import_module(COMMANDS[command][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

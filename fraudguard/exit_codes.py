"""Process exit codes, grouped per component, each with the help a user needs.

A test checks that every code has help text; ``fraudguard`` prints it beside the code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    USAGE = 2
    # settings and files: 10–19
    INVALID_SETTING = 10
    TLS_FILES_UNREADABLE = 11
    KEY_FILE_UNUSABLE = 12
    # scoring server: 20–29
    NO_MODEL_BUNDLE = 20
    CANNOT_BIND = 21
    RULES_INVALID = 24
    # model registry: 30–39
    UNKNOWN_MODEL_VERSION = 30
    BAD_MODEL_BUNDLE = 31
    # load generator: 40–49
    TARGET_UNREACHABLE = 40
    # trainer: 50–59
    BAD_INPUT_DATA = 50
    CANNOT_TRAIN = 51
    # storage: 60–69
    DATABASE_UNREACHABLE = 60
    DATABASE_CONFIG = 61
    MIGRATION_FAILED = 62
    JOURNAL_UNUSABLE = 63
    # access and audit: 70–79
    UNKNOWN_API_KEY = 70
    AUDIT_CHAIN_BROKEN = 71


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.SUCCESS: "done",
    ExitCode.FAILURE: "an unexpected error; the log has a correlation id and the traceback",
    ExitCode.USAGE: "the command line could not be parsed; see --help",
    ExitCode.INVALID_SETTING: "a setting (flag or FRAUDGUARD_* variable) has an unusable value; the message names it",
    ExitCode.TLS_FILES_UNREADABLE: "--tls-cert, --tls-key or --tls-client-ca cannot be read",
    ExitCode.KEY_FILE_UNUSABLE: "a key file is unreadable, of the wrong size or readable by others",
    ExitCode.NO_MODEL_BUNDLE: "no usable promoted model bundle in DATA_DIR/models; run 'fraudguard models demo' "
    "or 'fraudguard train', then 'fraudguard models promote VERSION'",
    ExitCode.CANNOT_BIND: "the --listen address cannot be bound (in use, or not a local address)",
    ExitCode.RULES_INVALID: "the rules file (--rules-file, or DATA_DIR/rules/active.rules) or one of its lists in "
    "DATA_DIR/rules/lists cannot be read or does not compile; the message gives the file, line and column",
    ExitCode.UNKNOWN_MODEL_VERSION: "no bundle with that version; 'fraudguard models list' shows them",
    ExitCode.BAD_MODEL_BUNDLE: "the bundle is malformed or was trained on another feature schema",
    ExitCode.TARGET_UNREACHABLE: "the scoring server at --target does not answer",
    ExitCode.BAD_INPUT_DATA: "the input file cannot be read, does not fit the --map, or too many of its rows are "
    "unreadable; the message says which rows and why",
    ExitCode.CANNOT_TRAIN: "the data cannot make a model: no labels, an empty period, or a period without fraud",
    ExitCode.DATABASE_UNREACHABLE: "PostgreSQL does not answer (FRAUDGUARD_DATABASE_URL, or the embedded server in "
    "DATA_DIR/postgres); the message names the server",
    ExitCode.DATABASE_CONFIG: "the database refused us: a wrong DSN, user, password or database name, or a server "
    "older than PostgreSQL 14",
    ExitCode.MIGRATION_FAILED: "a schema migration failed or an applied migration was changed; nothing was half-done",
    ExitCode.JOURNAL_UNUSABLE: "the decision journal in DATA_DIR/journal is damaged, locked by another process or "
    "unwritable; the message names the file",
    ExitCode.UNKNOWN_API_KEY: "no API key with that id; 'fraudguard keys list' shows them",
    ExitCode.AUDIT_CHAIN_BROKEN: "the audit log was altered: a row was changed, inserted or deleted; the message "
    "names the first bad row",
}


def describe(code: int) -> str:
    """``"20 (NO_MODEL_BUNDLE): help"`` for a known code, else just the number."""
    try:
        known = ExitCode(code)
    except ValueError:
        return str(code)
    return f"{int(known)} ({known.name}): {EXIT_CODE_HELP[known]}"

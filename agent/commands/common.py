"""What every command shares: how it describes itself to the parser, its common options, exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from ..core.errors import AgentError
from ..core.humanize import human_bytes

__all__ = ["Command", "Exit", "add_common", "add_logging", "human_bytes"]


class Exit(IntEnum):
    OK = 0
    #: Something is not right with the data: dead letters, files that would fail validation,
    #: fixity problems, dead letters that still fail a replay.
    PROBLEMS = 1
    USAGE = 2  # argparse's own code for bad arguments
    #: The command could not do its work: a configuration or rule error, the state directory in
    #: use, files it could not read.
    ERROR = 3
    #: The service was stopped by a second signal before its batches in flight were done.
    FORCED = 4
    #: ``run`` could not start for a reason that may pass (a share not mounted yet, the state
    #: directory held by a scan): systemd restarts it, while a configuration error (3) is not retried.
    TEMPFAIL = 75


@dataclass(frozen=True, slots=True)
class Command:
    """One ``fair-agent`` command, as ``cli.py`` builds it into the parser and dispatches to it.

    Its name and line of help are in ``cli.py``'s table, which lists every command without
    importing any: a command's module is imported only when that command runs.
    """

    description: str
    examples: tuple[str, ...]
    #: Adds the command's own arguments, and the common options (``add_common``) where they belong.
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: Runs the command with the loaded configuration; returns the exit status.
    run: Callable[[argparse.Namespace, Any], int]
    #: The service logs to stdout, where journald collects it; the other commands keep stdout for
    #: their results and log to stderr.
    logs_to_stdout: bool = False
    #: The state directory when ``--state-dir`` does not name one (it wins over the config file).
    state_dir: Callable[[argparse.Namespace], Path] | None = None
    #: Failures that may pass by themselves: exit 75 (EX_TEMPFAIL) instead of 3.
    temporary_errors: tuple[type[AgentError], ...] = ()
    #: A command with a configuration of its own (the hub's): loads it instead of the agent's.
    config_loader: Callable[[argparse.Namespace], Any] | None = None

    @property
    def epilog(self) -> str:
        return "\n".join(f"example: {example}" for example in self.examples)


def add_common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML config file (default: built-in defaults)"
    )
    cmd.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the ledger lives (overrides config)"
    )
    cmd.add_argument("--rules", type=Path, metavar="DIR", help="folder of rule files (overrides config)")
    add_logging(cmd)


def add_logging(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    cmd.add_argument("--json-logs", action="store_true", help="log JSON lines even on a terminal")

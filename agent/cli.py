"""The ``fair-agent`` command: the parser, built from the table of commands, and the dispatch.

It owns argv, logging setup and the exit status of failures; each command (``agent/commands/``)
owns its arguments, its work and what it prints. Nothing below the CLI calls ``sys.exit`` or prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .commands import demo, drift, init, inspect, replay, rules, run, scan, status, verify
from .commands.common import Command, Exit
from .core.config import load_config
from .core.errors import AgentError
from .service.logs import setup_logging

#: In the order ``fair-agent --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    scan.COMMAND,
    run.COMMAND,
    status.COMMAND,
    replay.COMMAND,
    demo.COMMAND,
    rules.COMMAND,
    drift.COMMAND,
    inspect.COMMAND,
    verify.COMMAND,
    init.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fair-agent",
        description="FAIR drop-folder agent: sidecars and RO-Crates next to instrument data, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    log_stream = sys.stdout if command.logs_to_stdout else sys.stderr
    setup_logging(args.log_level, stream=log_stream, json_lines=True if args.json_logs else None)
    overrides: dict[str, Any] = {}
    if args.rules is not None:
        overrides["rules_dir"] = args.rules
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    elif command.state_dir is not None:
        overrides["state_dir"] = command.state_dir(args)
    try:
        return command.run(args, load_config(args.config, overrides=overrides))
    except AgentError as exc:
        print(f"fair-agent: error: {exc}", file=sys.stderr)
        return Exit.TEMPFAIL if isinstance(exc, command.temporary_errors) else Exit.ERROR
    except KeyboardInterrupt:
        print("fair-agent: interrupted; work not committed is redone on the next run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

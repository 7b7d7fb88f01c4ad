"""The ``fair-agent`` command: the parser, built from the table of commands, and the dispatch.

It owns argv, logging setup and the exit status of failures; each command (``agent/commands/``)
owns its arguments, its work and what it prints. Nothing below the CLI calls ``sys.exit`` or prints.

Only the command that runs is imported. The table below names every command and its line of help,
which is all ``--help`` and ``--version`` need. A command's module brings pydantic, rich, SQLite and
the pipeline: importing every command's made ``--version`` as slow as a scan of an empty folder.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .commands.common import Command, Exit
from .core.errors import AgentError


@dataclass(frozen=True, slots=True)
class Listed:
    """A command as ``fair-agent --help`` lists it; ``agent.commands.<name>`` holds its ``COMMAND``."""

    name: str
    help: str

    def load(self) -> Command:
        command = importlib.import_module(f"{__package__}.commands.{self.name}").COMMAND
        assert isinstance(command, Command), f"agent.commands.{self.name}.COMMAND is not a Command"
        return command


#: In the order ``fair-agent --help`` lists them.
COMMANDS: tuple[Listed, ...] = (
    Listed("scan", "ingest everything under a folder once, then exit"),
    Listed("run", "the service: watch folders and ingest each session once it is complete"),
    Listed("ship", "ship what is not yet in the object store ([store]), then exit"),
    Listed("status", "roots and their mode, sessions pending and why, counts, dead letters, recent batches"),
    Listed("replay", "try dead letters again after their cause was fixed"),
    Listed("demo", "watch a new folder while sample sessions are copied into it, then show the results"),
    Listed("rules", "check the rule set, and what it would do with a folder"),
    Listed("drift", "show each dataset type's metadata baseline and its latest drift"),
    Listed("inspect", "what the agent knows of a file, a sidecar or a session folder"),
    Listed("verify", "fixity check: hash every ingested file under PATH again and compare"),
    Listed("init", "write a commented starter configuration"),
    Listed("hub", "the facility's hub: agents' events into the PostgreSQL catalogue, receipts back"),
    Listed("catalogue", "search the hub's catalogue of every agent's datasets"),
)


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, with ``load``, of those named (the others listed only).

    A command only listed is a choice with its help line and no arguments: enough for the top-level
    ``--help`` and for argparse's check of the command's name, without importing its module.
    """
    parser = argparse.ArgumentParser(
        prog="fair-agent",
        description="FAIR drop-folder agent: sidecars and RO-Crates next to instrument data, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for listed in COMMANDS:
        if load is not None and listed.name not in load:
            subparsers.add_parser(listed.name, help=listed.help)
            continue
        command = listed.load()
        sub = subparsers.add_parser(
            listed.name,
            help=listed.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top level has options only (--help, --version), so the first other word names the command.
    named = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(load=() if named is None else (named,)).parse_args(argv)
    command = next(listed for listed in COMMANDS if listed.name == args.command).load()
    # Imported once a command runs: both bring modules (pydantic, asyncio) that --help does without.
    from .core import collector
    from .core.config import load_config
    from .service.logs import setup_logging

    _allow_open_files()
    log_stream = sys.stdout if command.logs_to_stdout else sys.stderr
    setup_logging(args.log_level, stream=log_stream, json_lines=True if args.json_logs else None)
    overrides: dict[str, Any] = {}
    if getattr(args, "rules", None) is not None:
        overrides["rules_dir"] = args.rules
    if getattr(args, "state_dir", None) is not None:
        overrides["state_dir"] = args.state_dir
    elif command.state_dir is not None:
        overrides["state_dir"] = command.state_dir(args)
    # What the command needs is imported: left out of the garbage collector's work from here on.
    collector.settle()
    try:
        if command.config_loader is not None:
            return command.run(args, command.config_loader(args))
        return command.run(args, load_config(args.config, overrides=overrides))
    except AgentError as exc:
        print(f"fair-agent: error: {exc}", file=sys.stderr)
        return Exit.TEMPFAIL if isinstance(exc, command.temporary_errors) else Exit.ERROR
    except KeyboardInterrupt:
        print("fair-agent: interrupted; work not committed is redone on the next run", file=sys.stderr)
        return 130


def _allow_open_files() -> None:
    """Raise the soft limit of open files to the hard one (as systemd's LimitNOFILE would): each
    extraction worker holds the descriptors of a group of up to 64 files, one worker per core."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


if __name__ == "__main__":
    sys.exit(main())

"""``fair-agent init``: a commented starter configuration that loads as it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..core.config import DEFAULT_IGNORE, AgentConfig, load_config, local_timezone
from ..core.errors import ConfigError
from .common import Command, Exit, add_common

TEMPLATE = """\
# fair-agent configuration. Every setting has a working default; uncomment to change one.
# Environment variables override this file: FAIR_AGENT_<SETTING>, "__" between nested names
# (FAIR_AGENT_SITE__LICENSE=...). Reference: the README's "Configuration" section.

# Where the ledger lives. Under systemd, $STATE_DIRECTORY (/var/lib/fair-agent) is the default.
{state_dir}
# Rule files: which files are what, what they must carry, what is added (see rules/README.md).
{rules_dir}

# workers = 4                  # batches processed at once
# scan_processes = 0           # a large `scan` shared among one process per core (1: never)
# extract_timeout_s = 120      # time an extractor may spend on one file
# reconcile_interval_s = 600   # scans that catch what notifications missed
# shutdown_grace_s = 20        # on SIGTERM, time for batches in flight (the unit's
                               # TimeoutStopSec=40 must stay above it)
# ignore = {ignore}

[completion]                   # when a session folder counts as complete
quiet_period_s = 30            # no change for this long
# marker = "*.done"            # also wait for a file matching this glob

# One [[roots]] table per watched folder. Under systemd the unit may write only to its state
# directory and to these folders: list each in ReadWritePaths= (systemd/install.sh does).
{roots}

[metrics]                      # Prometheus metrics at http://ADDRESS:PORT/metrics
enabled = false
address = "127.0.0.1"          # loopback: the systemd unit allows no other (IPAddressAllow=localhost)
port = 9464

[site]                         # goes into every crate
# organisation = "Example Lab, Example University"
# license = "https://creativecommons.org/licenses/by/4.0/"   # choosing one is the lab's decision
{timezone}

# The crates' publisher, identified by its ROR (https://ror.org) and web site; and whom to ask about
# the data (the publisher's contactPoint). RO-Crate recommends both: without them a crate passes
# the validator's REQUIRED level but not its RECOMMENDED one.
# [site.publisher]
# name = "Example University"
# ror = "https://ror.org/00x0x0x00"
# url = "https://www.example.org"
#
# [site.contact]
# name = "Research data team"
# email = "rdm@example.org"
"""


def starter_config(watch: list[Path], state_dir: Path | None, rules_dir: Path | None) -> str:
    roots = (
        "\n\n".join(
            f'[[roots]]\npath = "{_toml(p)}"\n# name = "{p.name}"          # stable name, part of batch ids\n'
            '# mode = "auto"                # "events", "polling" (network shares) or "auto"'
            for p in watch
        )
        or '# [[roots]]\n# path = "/data/drop"\n# mode = "auto"'
    )
    return TEMPLATE.format(
        state_dir=f'state_dir = "{_toml(state_dir)}"' if state_dir else '# state_dir = "/var/lib/fair-agent"',
        rules_dir=f'rules_dir = "{_toml(rules_dir)}"'
        if rules_dir
        else '# rules_dir = "/etc/fair-agent/rules"',
        ignore="[" + ", ".join(f'"{g}"' for g in DEFAULT_IGNORE[:4]) + ", ...]",
        roots=roots,
        timezone=_timezone_line(),
    )


def _timezone_line() -> str:
    """The machine's own zone, set: an instrument PC's clock is what its exports' dates are in."""
    zone = local_timezone()
    if zone is None:
        return '# timezone = "Europe/Berlin"   # for dates instruments write without a zone'
    return f'timezone = "{zone}"   # this machine\'s zone, for dates instruments write without one'


def _toml(path: Path) -> str:
    # A TOML basic string: backslashes and quotes escaped.
    return str(path.absolute()).replace("\\", "\\\\").replace('"', '\\"')


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", type=Path, metavar="FILE")
    cmd.add_argument("--watch", type=Path, action="append", default=[], metavar="FOLDER")
    cmd.add_argument("--force", action="store_true", help="replace an existing file")
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    if args.file.exists() and not args.force:
        raise ConfigError(f"{args.file} exists; keep it, or pass --force to replace it")
    text = starter_config(args.watch, args.state_dir, args.rules)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text(text, encoding="utf-8")
    load_config(args.file, env={})  # what it wrote must load as it is
    Console().print(f"wrote {args.file}; check it with: fair-agent rules check --config {args.file}")
    return Exit.OK


COMMAND = Command(
    description="Write a commented starter configuration to FILE (watch roots, state directory, "
    "rules folder, metrics, site) that loads as it is. An existing file is kept unless --force.",
    examples=(
        "fair-agent init /etc/fair-agent/agent.toml --watch /data/plate-reader --rules /etc/fair-agent/rules",
    ),
    add_arguments=add_arguments,
    run=run,
)

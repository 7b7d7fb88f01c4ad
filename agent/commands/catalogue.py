"""``fair-agent catalogue search``: find datasets of the whole facility in the hub's catalogue."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..hub.catalogue import Catalogue
from ..hub.config import HubConfig, load_hub_config
from ..hub.search import Filters
from ..ship.credentials import private_text
from .common import Command, Exit, add_logging, human_bytes


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    search = actions.add_parser(
        "search",
        help="files matching free text and filters, newest first",
        epilog="example: fair-agent catalogue search --experiment EXP-000123 --config hub.toml",
    )
    search.add_argument("query", nargs="?", help="free text: names, dataset fields, types, instruments")
    search.add_argument("--experiment", metavar="ID", help="an experiment id (dataset field or session name)")
    search.add_argument("--instrument", metavar="NAME")
    search.add_argument("--type", dest="dataset_type", metavar="TYPE", help="a dataset type")
    search.add_argument("--since", type=_date, metavar="DATE", help="acquired (or ingested) on or after")
    search.add_argument("--agent", metavar="NAME")
    search.add_argument("--limit", type=int, default=50)
    search.add_argument("--json", action="store_true", help="print JSON for scripts")
    search.add_argument("--config", type=Path, metavar="FILE", help="the hub's TOML file ([hub])")
    add_logging(search)


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time(), UTC)


def run(args: argparse.Namespace, config: HubConfig) -> int:
    found = asyncio.run(_search(args, config))
    if args.json:
        print(json.dumps(found, indent=2, default=_plain))
        return Exit.OK
    console = Console()
    table = Table(title=f"{len(found)} file(s)", title_justify="left")
    for column in ("agent", "session", "file", "sha256", "size", "acquired", "validation", "stored at"):
        table.add_column(column)
    for f in found:
        table.add_row(
            escape(f["agent"]),
            escape(f"{f['root']}/{f['session']}"),
            escape(f["path"]),
            f["sha256"][:12] + "…",
            human_bytes(f["size"] or 0),
            f["acquired_at"] or "",
            f["validation"] or "",
            escape(f["storage_uri"] or "-"),
        )
    console.print(table)
    return Exit.OK


async def _search(args: argparse.Namespace, config: HubConfig) -> list[dict[str, Any]]:
    settings = config.hub
    password = (
        private_text(settings.catalogue_password_file, "catalogue password").strip()
        if settings.catalogue_password_file
        else None
    )
    catalogue = await Catalogue.connect(settings.catalogue_dsn, password=password, size=1)
    try:
        return await catalogue.search(
            Filters(
                text=args.query,
                experiment=args.experiment,
                instrument=args.instrument,
                dataset_type=args.dataset_type,
                agent=args.agent,
                since=args.since,
            ),
            limit=args.limit,
        )
    finally:
        await catalogue.close()


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


COMMAND = Command(
    description="Search the hub's catalogue (every agent's files) by free text, experiment id, "
    "instrument, dataset type, agent and date. Results: agent, session, file, sha256, size, "
    "acquisition date, validation state and where the bytes are.",
    examples=(
        "fair-agent catalogue search --experiment EXP-000123 --config /etc/fair-agent/hub.toml",
        "fair-agent catalogue search 'OD600 kinetics' --type plate-reader --since 2026-11-01 --json",
    ),
    add_arguments=add_arguments,
    run=run,
    config_loader=lambda args: load_hub_config(args.config),
)

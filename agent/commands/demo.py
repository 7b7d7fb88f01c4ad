"""``fair-agent demo``: the real service on a fresh folder, fed sample sessions file by file."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..core.config import AgentConfig, CompletionPolicy, RootSettings
from ..core.errors import ConfigError
from ..core.naming import CRATE_NAME, error_name, is_derived_name, is_own_output, sidecar_name
from ..extractors.tablewriters import read_head
from ..fs.statelock import StateLock
from ..ledger import Ledger
from ..service.daemon import Service
from .common import Command, Exit, add_common
from .rules import derived_head_table

#: Pauses between the chunks and files an imitated instrument writes; shorter than the quiet period.
WRITE_PAUSE_S = 0.2


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("samples", type=Path, metavar="SAMPLES", help="folder of sample sessions to copy")
    cmd.add_argument("drop", type=Path, metavar="DROP", help="the watched folder to create and copy into")
    cmd.add_argument(
        "--give-up-after", type=float, default=120.0, metavar="SECONDS", help="fail if not done by then"
    )
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    return asyncio.run(run_demo(args.samples, args.drop, config, give_up_after_s=args.give_up_after))


async def run_demo(samples: Path, drop: Path, config: AgentConfig, *, give_up_after_s: float) -> int:
    expected = await asyncio.to_thread(_prepare, samples, drop)
    config = AgentConfig.model_validate(
        {
            **config.model_dump(),
            "roots": [RootSettings(path=drop)],
            "completion": CompletionPolicy(quiet_period_s=2.0, stability_look_s=0.5),
        }
    )
    console = Console()
    with StateLock(config.state_dir, "demo"):
        async with Ledger.open(config.ledger_path) as ledger, Service(config, ledger).running() as service:
            console.print(
                f"[bold]fair-agent is watching {drop}[/bold]; copying {len(expected)} sample files into it"
            )
            await asyncio.to_thread(_imitate_instrument, samples, drop, expected)
            deadline = time.monotonic() + give_up_after_s
            while not (service.idle and await asyncio.to_thread(_all_ingested, drop, expected)):
                if time.monotonic() > deadline:
                    console.print("[red]not every file was ingested in time[/red]")
                    return Exit.PROBLEMS
                await asyncio.sleep(0.2)
    table, crates, rejected = await asyncio.to_thread(_results, drop, expected)
    console.print(table)
    console.print(f"RO-Crates: {', '.join(crates)}")
    for derived in await asyncio.to_thread(_derived_tables, drop):
        head = await asyncio.to_thread(read_head, drop / derived)
        console.print(derived_head_table(derived, head, max_columns=8))
    for name, error in rejected.items():
        console.print(f"[red]session {name} was not ingested[/red] (see {error_name(name)}):")
        for problem in error.get("problems", []):
            for f in problem.get("fields", []):
                console.print(f"  {problem['file']}: {f['field']}: {f['problem']}")
    console.print(f"Sidecars and crates are next to the data in {drop}; the ledger is in {config.state_dir}.")
    return Exit.OK


def _prepare(samples: Path, drop: Path) -> list[Path]:
    """The sample files to copy, once DROP is known to be a new, empty folder."""
    if not samples.is_dir():
        raise ConfigError(f"{samples} is not a folder of sample sessions")
    drop.mkdir(parents=True, exist_ok=True)
    if any(drop.iterdir()):
        raise ConfigError(f"{drop} is not empty; the demo needs a new folder (remove it first)")
    return sorted(
        p.relative_to(samples) for p in samples.rglob("*") if p.is_file() and not is_own_output(p.name)
    )


def _imitate_instrument(samples: Path, drop: Path, files: list[Path]) -> None:
    """Copy each file in two halves with a pause between, as a slow instrument export would."""
    for rel in files:
        target = drop / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (samples / rel).read_bytes()
        with target.open("wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            time.sleep(WRITE_PAUSE_S)
            out.write(data[len(data) // 2 :])
        shutil.copystat(samples / rel, target)


def _all_ingested(drop: Path, files: list[Path]) -> bool:
    """Every file has its sidecar, or an error file says why not (its own, or its session's)."""
    return all(
        (drop / sidecar_name(str(p))).exists()
        or (drop / error_name(str(p))).exists()
        or (drop / error_name(p.parts[0])).exists()
        for p in files
    )


def _derived_tables(drop: Path) -> list[str]:
    """The analysis-ready tables the rules derived (``<file>.tidy.parquet``), by path."""
    return sorted(str(p.relative_to(drop)) for p in drop.rglob("*.tidy.*") if is_derived_name(p.name))


def _results(drop: Path, files: list[Path]) -> tuple[Table, list[str], dict[str, dict[str, Any]]]:
    table = Table(title="Ingested", title_justify="left")
    table.add_column("session")
    table.add_column("file")
    table.add_column("sha256", style="dim")
    table.add_column("batch / seq", justify="right")
    table.add_column("dataset type / validation")
    rejected: dict[str, dict[str, Any]] = {}
    for rel in files:
        session = rel.parts[0] if len(rel.parts) > 1 else "(loose file)"
        name = str(Path(*rel.parts[1:])) if len(rel.parts) > 1 else rel.name
        sidecar_path = drop / sidecar_name(str(rel))
        if not sidecar_path.exists():
            error_path = next(
                p for p in (drop / error_name(str(rel)), drop / error_name(rel.parts[0])) if p.exists()
            )
            rejected[rel.parts[0]] = json.loads(error_path.read_text(encoding="utf-8"))
            table.add_row(session, name, "", "", f"[red]not ingested: see {error_path.name}[/red]")
            continue
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        table.add_row(
            session,
            name,
            sidecar["sha256"][:16] + "…",
            f"{sidecar['batchId'][:8]} / {sidecar['sequence']}",
            f"{sidecar['datasetType']} / {sidecar['validation']['status']}",
        )
    return table, sorted(str(p.relative_to(drop)) for p in drop.glob(f"*/{CRATE_NAME}")), rejected


COMMAND = Command(
    description="Start the service on DROP (created if needed) with a 2 s quiet period, copy the "
    "sessions from SAMPLES into it file by file as an instrument would, wait until every file "
    "has its sidecar, print what was written, and stop. The ledger goes to DROP-state beside it.",
    examples=("fair-agent demo sample_data demo",),
    add_arguments=add_arguments,
    run=run,
    state_dir=lambda args: args.drop.with_name(args.drop.name + "-state"),
)

"""``fair-agent drift``: each dataset type's baseline and its latest drift; ``--accept`` adopts a new
shape after a deliberate change of an instrument's export template."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.config import AgentConfig
from ..core.drift import Baseline
from ..core.errors import ConfigError
from ..ingest.curate import load_rule_set
from ..ledger import DriftReport, Ledger
from ..rules import Rule
from .common import Command, Exit, add_common


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--accept", metavar="DATASET_TYPE", help="accept the new shape of this dataset type")
    cmd.add_argument(
        "--session", metavar="SESSION", help="with --accept: adopt the shape reported for this session"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(cmd)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
    by_type = load_rule_set(config).dataset_rules()
    if not config.ledger_path.exists():
        raise ConfigError(f"no ledger in {config.state_dir} yet: nothing has been ingested with it")
    if args.accept:
        Console().print(asyncio.run(_accept(config, by_type, args.accept, args.session)))
        return Exit.OK
    baselines, reports = asyncio.run(_read(config))
    rows = [
        row
        for dataset_type, rule in sorted(by_type.items())
        if (row := _row(dataset_type, rule, baselines, reports))
    ]
    if args.json:
        print(json.dumps({"datasetTypes": rows}, indent=2))
        return Exit.OK
    table = Table(title="metadata drift by dataset type", title_justify="left")
    for column in ("dataset type", "policy", "baseline", "keys", "latest drift"):
        table.add_column(column)
    for row in rows:
        latest = row["latestDrift"]
        table.add_row(
            row["datasetType"],
            row["policy"],
            row["baseline"],
            str(len(row["keys"])),
            escape(_drift_words(latest)) if latest else "none",
        )
    Console().print(table)
    return Exit.OK


async def _accept(
    config: AgentConfig, by_type: dict[str, Rule], dataset_type: str, session: str | None
) -> str:
    """Adopt the latest reported shape (of ``session``) as the baseline; what was done, in words."""
    rule = by_type.get(dataset_type)
    if rule is None:
        raise ConfigError(f"no rule defines the dataset type {dataset_type!r}")
    if rule.spec.drift.declared:
        raise ConfigError(f"the baseline of {dataset_type!r} is declared in {rule.source}; change it there")
    async with Ledger.open(config.ledger_path) as ledger:
        if session and not await ledger.drift_reports(dataset_type, 1, session=session):
            raise ConfigError(f"no drift of {dataset_type!r} was reported for the session {session!r}")
        baseline = await ledger.accept_drift(dataset_type, rule.spec.drift.learn_sessions, session)
    if baseline:
        return f"the latest shape of {dataset_type!r} is now its baseline ({len(baseline.keys)} keys)"
    return (
        f"no drift was reported for {dataset_type!r}; its baseline is learnt again from "
        f"the next {rule.spec.drift.learn_sessions} session(s)"
    )


async def _read(config: AgentConfig) -> tuple[dict[str, Baseline], list[DriftReport]]:
    async with Ledger.open(config.ledger_path) as ledger:
        learned = {b.dataset_type: b for b in await ledger.drift_baselines()}
        return learned, await ledger.drift_reports(limit=200)


def _row(
    dataset_type: str, rule: Rule, baselines: dict[str, Baseline], reports: list[DriftReport]
) -> dict[str, Any] | None:
    """One dataset type's baseline and latest drift; None for a type whose drift is never checked."""
    drift = rule.spec.drift
    baseline = baselines.get(dataset_type)
    if drift.policy == "off" and baseline is None:
        return None
    # Drift reported before the baseline last changed (an accept) is history, not news.
    latest = next(
        (
            r
            for r in reports
            if r.dataset_type == dataset_type and (baseline is None or r.reported_at > baseline.updated_at)
        ),
        None,
    )
    if drift.declared:
        state = "declared in the rule"
    elif baseline is None:
        state = f"learning (0 of {drift.learn_sessions} sessions)"
    elif baseline.learning:
        state = f"learning ({baseline.sessions_seen} of {baseline.sessions_needed} sessions)"
    else:
        state = "learnt"
    return {
        "datasetType": dataset_type,
        "policy": drift.policy,
        "baseline": state,
        "keys": baseline.to_json()["keys"] if baseline else {},
        "latestDrift": {
            "session": latest.session,
            "at": latest.reported_at,
            "policy": latest.policy,
            **latest.diff,
        }
        if latest
        else None,
    }


def _drift_words(latest: dict[str, Any]) -> str:
    parts = [f"{latest['session']} ({latest['at'][:19]})"]
    if latest.get("new"):
        parts.append("new: " + ", ".join(latest["new"]))
    if latest.get("missing"):
        parts.append("missing: " + ", ".join(latest["missing"]))
    if latest.get("retyped"):
        parts.append("retyped: " + ", ".join(r["key"] for r in latest["retyped"]))
    return "; ".join(parts)


COMMAND = Command(
    description="Show, per dataset type, the baseline of metadata keys and table columns (learnt "
    "from the first accepted sessions, or declared in the rule) and the latest differences "
    "found. After a deliberate change of an instrument's export template, --accept makes the "
    "latest reported shape the new baseline (or relearns it when nothing was reported).",
    examples=("fair-agent drift", "fair-agent drift --accept plate-reader-kinetics"),
    add_arguments=add_arguments,
    run=run,
)

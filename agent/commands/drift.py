"""The ``rules check`` and ``drift`` commands: argv in, tables or JSON out, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.config import AgentConfig
from ..core.errors import ConfigError
from ..ingest.curate import load_rule_set
from ..ledger import Ledger
from ..rules import RuleError, RuleSet
from ..service.scan import root_name_for
from .rules import check_tree

EXIT_OK, EXIT_INVALID, EXIT_CONFIG = 0, 1, 3


def register(commands: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    rules_cmd = commands.add_parser(
        "rules",
        help="check the rule set, and what it would do with a folder",
        description="Work with the rule set (see rules/README.md).",
        epilog="example: fair-agent rules check --rules /etc/fair-agent/rules",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_cmd = rules_cmd.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "check",
        help="load the rules strictly; with PATH, show what they would do there",
        description="Load the rule set strictly and report every error (file and key). With PATH, "
        "show for each file under it which rule claims it, which session it falls in, which fields "
        "the rule would take and what would fail validation. Writes nothing. Exit status: 0 when "
        "all is well, 1 when a file would fail validation, 3 when the rule set has errors.",
        epilog="example: fair-agent rules check --rules /etc/fair-agent/rules /data/plate-reader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_cmd.add_argument(
        "path", type=Path, nargs="?", metavar="PATH", help="a folder laid out like a watch root"
    )
    check_cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(check_cmd)

    drift_cmd = commands.add_parser(
        "drift",
        help="show each dataset type's metadata baseline and its latest drift",
        description="Show, per dataset type, the baseline of metadata keys and table columns (learnt "
        "from the first accepted sessions, or declared in the rule) and the latest differences "
        "found. After a deliberate change of an instrument's export template, --accept makes the "
        "latest reported shape the new baseline (or relearns it when nothing was reported).",
        epilog="example: fair-agent drift\nexample: fair-agent drift --accept plate-reader-kinetics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift_cmd.add_argument(
        "--accept", metavar="DATASET_TYPE", help="accept the new shape of this dataset type"
    )
    drift_cmd.add_argument(
        "--session", metavar="SESSION", help="with --accept: adopt the shape reported for this session"
    )
    drift_cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(drift_cmd)


def run_rules(args: argparse.Namespace, config: AgentConfig) -> int:
    console = Console()
    try:
        rules = load_rule_set(config)
    except RuleError as exc:
        if args.json:
            print(json.dumps({"ok": False, "errors": exc.problems}, indent=2))
        else:
            console.print("[red]the rule set has errors:[/red]")
            for problem in exc.problems:
                console.print(f"  {escape(problem)}")
        return EXIT_CONFIG
    if args.path is None:
        if args.json:
            print(json.dumps({"ok": True, "rules": [_rule_row(r) for r in rules.all]}, indent=2))
        else:
            console.print(_rules_table(rules))
        return EXIT_OK
    if not args.path.is_dir():
        raise ConfigError(f"{args.path} is not a folder")
    checks = asyncio.run(check_tree(args.path, root_name_for(args.path, config), rules, config))
    if args.json:
        ok = not any(c.problems for c in checks)
        print(json.dumps({"ok": ok, "files": [c.to_json() for c in checks]}, indent=2, default=str))
    else:
        table = Table(title=f"what the rules would do with {args.path}", title_justify="left")
        for column in ("file", "session", "rule", "dataset type", "fields", "validation"):
            table.add_column(column)
        for c in checks:
            # What the files themselves said; the rule's own tags and instrument add no news here.
            fields = ", ".join(
                f"{k}={v}" for k, v in c.fields.items() if k not in ("parameters", "tags", "instrument")
            )
            if c.problems:
                verdict = "[red]" + escape("; ".join(c.problems)) + "[/red]"
            elif c.held_back:
                verdict = "[yellow]valid, but held back: another file of its session fails[/yellow]"
            else:
                verdict = "[green]valid[/green]"
            table.add_row(
                escape(c.relpath), escape(c.session), escape(c.rule), c.dataset_type, escape(fields), verdict
            )
        console.print(table)
    return EXIT_INVALID if any(c.problems for c in checks) else EXIT_OK


def _rule_row(rule: Any) -> dict[str, Any]:
    spec = rule.spec
    return {
        "name": rule.name,
        "source": rule.source,
        "priority": spec.priority,
        "fallback": spec.fallback,
        "match": list(spec.match),
        "datasetType": spec.dataset_type,
        "extractor": spec.extractor,
        "drift": spec.drift.policy,
    }


def _rules_table(rules: RuleSet) -> Table:
    table = Table(title="rules, in the order they are tried", title_justify="left")
    for column in ("rule", "from", "priority", "matches", "dataset type", "extractor", "drift"):
        table.add_column(column)
    for rule in rules.all:
        row = _rule_row(rule)
        table.add_row(
            row["name"],
            row["source"],
            "fallback" if row["fallback"] else str(row["priority"]),
            escape(", ".join(row["match"])),
            row["datasetType"],
            row["extractor"],
            row["drift"],
        )
    return table


async def run_drift(args: argparse.Namespace, config: AgentConfig) -> int:
    rules = load_rule_set(config)
    by_type = rules.dataset_rules()
    if not await asyncio.to_thread(config.ledger_path.exists):
        raise ConfigError(f"no ledger in {config.state_dir} yet: nothing has been ingested with it")
    async with Ledger.open(config.ledger_path) as ledger:
        if args.accept:
            rule = by_type.get(args.accept)
            if rule is None:
                raise ConfigError(f"no rule defines the dataset type {args.accept!r}")
            if rule.spec.drift.declared:
                raise ConfigError(
                    f"the baseline of {args.accept!r} is declared in {rule.source}; change it there"
                )
            if args.session and not await ledger.drift_reports(args.accept, 1, session=args.session):
                raise ConfigError(
                    f"no drift of {args.accept!r} was reported for the session {args.session!r}"
                )
            baseline = await ledger.accept_drift(args.accept, rule.spec.drift.learn_sessions, args.session)
            message = (
                f"the latest shape of {args.accept!r} is now its baseline ({len(baseline.keys)} keys)"
                if baseline
                else f"no drift was reported for {args.accept!r}; its baseline is learnt again from "
                f"the next {rule.spec.drift.learn_sessions} session(s)"
            )
            Console().print(message)
            return EXIT_OK
        learned = {b.dataset_type: b for b in await ledger.drift_baselines()}
        reports = await ledger.drift_reports(limit=200)
    rows = []
    for dataset_type, rule in sorted(by_type.items()):
        drift = rule.spec.drift
        baseline = learned.get(dataset_type)
        if drift.policy == "off" and baseline is None:
            continue  # never checked: nothing to show
        # Drift reported before the baseline last changed (an accept) is history, not news.
        latest = next(
            (
                r
                for r in reports
                if r.dataset_type == dataset_type
                and (baseline is None or r.reported_at > baseline.updated_at)
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
        rows.append(
            {
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
        )
    if args.json:
        print(json.dumps({"datasetTypes": rows}, indent=2))
        return EXIT_OK
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
    return EXIT_OK


def _drift_words(latest: dict[str, Any]) -> str:
    parts = [f"{latest['session']} ({latest['at'][:19]})"]
    if latest.get("new"):
        parts.append("new: " + ", ".join(latest["new"]))
    if latest.get("missing"):
        parts.append("missing: " + ", ".join(latest["missing"]))
    if latest.get("retyped"):
        parts.append("retyped: " + ", ".join(r["key"] for r in latest["retyped"]))
    return "; ".join(parts)

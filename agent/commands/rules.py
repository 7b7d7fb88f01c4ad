"""``fair-agent rules check [PATH]``: load the rule set strictly; with PATH, what the rules would do
with the files under it. Writes nothing.

For every file: the rule that claims it, the session it falls in, the fields the rule would take
(running the real extractor, read-only) and what would fail validation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.config import AgentConfig
from ..core.errors import AgentError, ConfigError
from ..core.naming import IgnoreRules
from ..core.records import EXTRACTION_FAILURE
from ..core.transform import TransformSpec
from ..extractors.base import Budget, Source
from ..extractors.derive import derive_head
from ..extractors.runner import MetadataReader
from ..ingest.curate import load_rule_set
from ..rules import DatasetTypes, Rule, RuleError, RuleSet
from ..rules.advice import quality_advice
from ..rules.dataset import candidate_fields
from ..service.discover import list_session, list_top_level, split_sessions
from ..service.scan import root_name_for
from .common import Command, Exit, add_common

HEAD_BYTES = 8192
#: Rows of a derived table the dry run shows.
HEAD_ROWS = 5


@dataclass(slots=True)
class FileCheck:
    relpath: str
    session: str
    rule: str
    rule_source: str
    dataset_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Valid itself, but another file of its session is not: the session would be rejected whole.
    held_back: bool = False
    #: The first rows of the table its rule's [transform] derives (header first); None: no such rule.
    derived_head: list[list[str]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.relpath,
            "session": self.session,
            "rule": self.rule,
            "ruleSource": self.rule_source,
            "datasetType": self.dataset_type,
            "fields": self.fields,
            "problems": self.problems,
            "valid": not self.problems,
            "heldBack": self.held_back,
            **({"derivedHead": self.derived_head} if self.derived_head is not None else {}),
        }


async def check_tree(root: Path, root_name: str, rules: RuleSet, config: AgentConfig) -> list[FileCheck]:
    """Every file below ``root`` (a watch root, or a folder laid out like one)."""
    ignore = IgnoreRules(config.ignore)
    types = DatasetTypes(rules.all, config.site.timezone)
    reader = MetadataReader.from_config(config)
    checks: list[FileCheck] = []
    try:
        top = await asyncio.to_thread(list_top_level, root, ignore)
        listings = list(top.loose)
        for folder in top.folders:
            listing = await asyncio.to_thread(list_session, root, folder, ignore)
            listings += split_sessions(listing, lambda p: rules.session_name(root_name, p))
        for listing in listings:
            for f in listing.files:
                checks.append(
                    await _check_file(root, root_name, f.relpath, listing.session, rules, types, reader)
                )
    finally:
        reader.close()
    rejected = {c.session for c in checks if c.problems}
    for c in checks:
        c.held_back = not c.problems and c.session in rejected
    return checks


async def _check_file(
    root: Path,
    root_name: str,
    relpath: str,
    session: str,
    rules: RuleSet,
    types: DatasetTypes,
    reader: MetadataReader,
) -> FileCheck:
    rule = rules.rule_for(root_name, relpath)
    check = FileCheck(relpath, session, rule.name, rule.source, rule.dataset_type)
    try:
        head, inode = await asyncio.to_thread(_head, root / relpath)
        metadata: dict[str, Any] = {"format": reader.detect(relpath, head).as_metadata()}
        if head:
            metadata.update(await reader.read(root, relpath, head, inode, rule.spec.extractor))
    except (AgentError, OSError) as exc:
        check.problems.append(f"cannot be read: {exc}")
        return check
    check.fields = candidate_fields(rule, relpath, metadata)
    validated = types.validate(rule, relpath, metadata)
    check.problems = [p.sentence() for p in validated.problems]
    if rule.spec.transform is not None and EXTRACTION_FAILURE not in metadata:
        await _check_transform(root / relpath, rule.spec.transform, metadata, check, reader.seconds)
    return check


async def _check_transform(
    path: Path, spec: TransformSpec, metadata: dict[str, Any], check: FileCheck, seconds: float
) -> None:
    """The derived table's first rows, made away from the data; what the rule cannot do there."""
    detected = {str(c.get("label", c.get("name"))): str(c.get("type")) for c in metadata.get("columns", [])}
    source = Source(path, path.name, path.parent)
    try:
        report, head = await asyncio.to_thread(
            derive_head, source, spec, Budget(seconds), detected=detected, rows=HEAD_ROWS
        )
    except Exception as exc:  # what the agent would say in the sidecar's warnings
        check.problems.append(f"transform: no derived table: {exc}")
        return
    check.problems += [f"transform: {p}" for p in report.get("problems", [])]
    # A column the rule names that the file lacks is a warning when ingesting; here it is what
    # the check is for.
    check.problems += [f"transform: {w}" for w in report.get("warnings", []) if "does not have" in w]
    check.derived_head = head if "problems" not in report else None


def _head(path: Path) -> tuple[bytes, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, HEAD_BYTES), os.fstat(fd).st_ino
    finally:
        os.close(fd)


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="load the rules strictly; with PATH, show what they would do there",
        description="Load the rule set strictly and report every error (file and key). With PATH, "
        "show for each file under it which rule claims it, which session it falls in, which fields "
        "the rule would take and what would fail validation. Writes nothing. Exit status: 0 when "
        "all is well, 1 when a file would fail validation, 3 when the rule set has errors.",
        epilog="example: fair-agent rules check --rules /etc/fair-agent/rules /data/plate-reader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "path", type=Path, nargs="?", metavar="PATH", help="a folder laid out like a watch root"
    )
    check.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_common(check)


def run(args: argparse.Namespace, config: AgentConfig) -> int:
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
        return Exit.ERROR
    advice = quality_advice(rules.all, config.site)
    if args.path is None:
        if args.json:
            rows = [_rule_row(r) for r in rules.all]
            print(json.dumps({"ok": True, "rules": rows, "advice": advice}, indent=2))
        else:
            console.print(_rules_table(rules))
            _print_advice(console, advice)
        return Exit.OK
    if not args.path.is_dir():
        raise ConfigError(f"{args.path} is not a folder")
    checks = asyncio.run(check_tree(args.path, root_name_for(args.path, config), rules, config))
    if args.json:
        ok = not any(c.problems for c in checks)
        files = [c.to_json() for c in checks]
        print(json.dumps({"ok": ok, "files": files, "advice": advice}, indent=2, default=str))
    else:
        console.print(_checks_table(args.path, checks))
        for c in checks:
            if c.derived_head:
                console.print(derived_head_table(c.relpath, c.derived_head))
        _print_advice(console, advice)
    return Exit.PROBLEMS if any(c.problems for c in checks) else Exit.OK


def _print_advice(console: Console, advice: list[str]) -> None:
    if advice:
        console.print("[yellow]RO-Crate recommends more than the configuration gives:[/yellow]")
        for sentence in advice:
            console.print(f"  {escape(sentence)}")


def _checks_table(path: Path, checks: list[FileCheck]) -> Table:
    table = Table(title=f"what the rules would do with {path}", title_justify="left")
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
    return table


def derived_head_table(relpath: str, head: list[list[str]], max_columns: int = 10) -> Table:
    """The first rows of a derived table (its first columns: a plate has a hundred)."""
    header, rows = head[0], head[1:]
    more = len(header) - max_columns
    title = f"derived table of {relpath}, first rows" + (
        f" ({more} more columns not shown)" if more > 0 else ""
    )
    table = Table(title=escape(title), title_justify="left")
    for name in header[:max_columns]:
        table.add_column(escape(name))
    for row in rows:
        table.add_row(*(escape(v) for v in row[:max_columns]))
    return table


def _rule_row(rule: Rule) -> dict[str, Any]:
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
        "transform": spec.transform.format if spec.transform else None,
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


COMMAND = Command(
    description="Work with the rule set (see rules/README.md).",
    examples=("fair-agent rules check --rules /etc/fair-agent/rules",),
    add_arguments=add_arguments,
    run=run,
)

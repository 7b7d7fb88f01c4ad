"""``fair-agent rules check PATH``: what the rules would do with the files under PATH; writes nothing.

For every file: the rule that claims it, the session it falls in, the fields the rule would take
(running the real extractor, read-only) and what would fail validation.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import AgentConfig
from ..core.errors import AgentError
from ..core.naming import IgnoreRules
from ..extractors.runner import MetadataReader
from ..rules import DatasetTypes, RuleSet
from ..rules.dataset import candidate_fields
from ..service.discover import list_session, list_top_level, split_sessions

HEAD_BYTES = 8192


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
        }


async def check_tree(root: Path, root_name: str, rules: RuleSet, config: AgentConfig) -> list[FileCheck]:
    """Every file below ``root`` (a watch root, or a folder laid out like one)."""
    ignore = IgnoreRules(config.ignore)
    types = DatasetTypes(rules.all, config.site.timezone)
    reader = MetadataReader(config.hash_threads, config.extract_timeout_s)
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
    return check


def _head(path: Path) -> tuple[bytes, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, HEAD_BYTES), os.fstat(fd).st_ino
    finally:
        os.close(fd)

"""Loading a rule set strictly, and asking it which rule a file falls under.

Loading never guesses: an unknown key, a bad regular expression, a glob that can never match, two
rules that claim the same file with equal priority, a required field with no source: each is an
error naming the file and the key, and the agent refuses to start until the rule set is fixed.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.config import CompletionPolicy
from ..core.errors import ConfigError
from .globs import globs_overlap, to_regex
from .schema import DriftSettings, RuleFile

#: Used when the rule set names no fallback: every file, no validation, no drift check.
BUILTIN_FALLBACK = RuleFile(
    name="generic",
    dataset_type="generic",
    description="Files no other rule matches: checksums and what the format tells, nothing required.",
    fallback=True,
    match=("**",),
    drift=DriftSettings(policy="off"),
)
#: What the extractor may be called besides an extractor's own name.
EXTRACTOR_CHOICES = ("auto", "none")


class RuleError(ConfigError):
    """The rule set cannot be used; every problem is listed, each naming its file and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the rule set has errors:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Rule:
    spec: RuleFile
    #: Where the rule came from, for messages ("rules/xrd.toml" or "built-in").
    source: str

    @property
    def name(self) -> str:
        return self.spec.name or "unnamed"

    @property
    def dataset_type(self) -> str:
        if self.spec.dataset_type:
            return self.spec.dataset_type
        return re.sub(r"[^a-z0-9._-]+", "-", self.name.lower()).strip("-._") or "unnamed"

    @cached_property
    def transform_json(self) -> dict[str, Any] | None:
        """The rule's [transform] as the extraction workers get it."""
        return self.spec.transform.model_dump(mode="json") if self.spec.transform else None

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{to_regex(g).pattern})" for g in self.spec.match), re.I | re.S)

    @cached_property
    def _path_regex(self) -> re.Pattern[str] | None:
        return re.compile(self.spec.path.pattern) if self.spec.path else None

    @cached_property
    def _session_regex(self) -> re.Pattern[str] | None:
        grouping = self.spec.session
        return re.compile(grouping.pattern) if grouping and grouping.pattern else None

    def matches(self, root_name: str, relpath: str) -> bool:
        if self.spec.root is not None and self.spec.root != root_name:
            return False
        return self._regex.fullmatch(relpath) is not None

    def path_fields(self, relpath: str) -> dict[str, str]:
        """Fields read from the path by the rule's named groups (those that matched)."""
        found = self._path_regex.search(relpath) if self._path_regex else None
        return {k: v for k, v in found.groupdict().items() if v is not None} if found else {}

    def session_of(self, relpath: str) -> str | None:
        """The session folder this rule groups the file into, or None for the default grouping."""
        grouping = self.spec.session
        parts = relpath.split("/")
        if grouping is None:
            return None
        if grouping.depth is not None:
            return "/".join(parts[: grouping.depth]) if len(parts) > grouping.depth else None
        assert self._session_regex is not None
        found = self._session_regex.search(relpath)
        if found is None:
            return None
        session = (found.group("session") if "session" in found.re.groupindex else found.group(0)) or ""
        session = session.rstrip("/")
        # Only a whole folder can be a session: its crate goes at its top.
        return session if session and relpath.startswith(session + "/") else None


class RuleSet:
    def __init__(self, rules: Iterable[Rule]) -> None:
        listed = list(rules)
        fallbacks = [r for r in listed if r.spec.fallback]
        self.fallback = fallbacks[0] if fallbacks else Rule(BUILTIN_FALLBACK, "built-in")
        # Highest priority first; among equals (which cannot overlap) the order does not matter.
        self.rules = sorted((r for r in listed if not r.spec.fallback), key=lambda r: -r.spec.priority)

    @property
    def all(self) -> list[Rule]:
        return [*self.rules, self.fallback]

    def rule_for(self, root_name: str, relpath: str) -> Rule:
        return next((r for r in self.rules if r.matches(root_name, relpath)), self.fallback)

    def session_of(self, root_name: str, relpath: str) -> tuple[str, bool]:
        """The session a file belongs to, and whether that session is a folder.

        By default the first folder level below the watch root is a session and a loose file is a
        session of its own; a rule may group deeper.
        """
        parts = relpath.split("/")
        if len(parts) == 1:
            return relpath, False
        session = self.rule_for(root_name, relpath).session_of(relpath)
        return (session or parts[0]), True

    def session_name(self, root_name: str, relpath: str) -> str:
        return self.session_of(root_name, relpath)[0]

    def completion_for(self, root_name: str, relpath: str, default: CompletionPolicy) -> CompletionPolicy:
        return self.rule_for(root_name, relpath).spec.completion or default

    def strictest_completion(
        self, root_name: str, relpaths: Iterable[str], default: CompletionPolicy
    ) -> CompletionPolicy:
        """The strictest completion policy of the rules of these files (``default`` without rules)."""
        policy = default
        for relpath in relpaths:
            policy = policy.strictest(self.completion_for(root_name, relpath, default))
        return policy

    def dataset_rules(self) -> dict[str, Rule]:
        """One rule per dataset type (rules sharing a type agree on validation and drift)."""
        return {r.dataset_type: r for r in reversed(self.all)}


def load_rules(folder: Path | None, extractor_names: Iterable[str]) -> RuleSet:
    """Every ``*.toml`` in ``folder`` (None: the built-in fallback only). Raises RuleError."""
    if folder is None:
        return RuleSet([])
    if not folder.is_dir():
        raise RuleError([f"{folder}: the rules folder does not exist"])
    problems: list[str] = []
    rules: list[Rule] = []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".toml")
    if not files:
        raise RuleError([f"{folder}: no rule files (*.toml) in the rules folder"])
    for path in files:
        where = f"{folder.name}/{path.name}"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{where}: cannot be read: {exc}")
            continue
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{where}: not valid TOML: {exc}")
            continue
        data.setdefault("name", path.stem)
        try:
            rules.append(Rule(RuleFile.model_validate(data), where))
        except ValidationError as exc:
            problems += [f"{where}: {_location(err['loc'])}: {_message(err)}" for err in exc.errors()]
    problems += _cross_checks(rules, set(extractor_names))
    if problems:
        raise RuleError(problems)
    return RuleSet(rules)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(err: object) -> str:
    assert isinstance(err, dict)
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "missing; the rule must say it"
    return str(err["msg"]).removeprefix("Value error, ")


def _cross_checks(rules: list[Rule], extractor_names: set[str]) -> list[str]:
    problems = [p for rule in rules for p in _rule_checks(rule, extractor_names)]
    names: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in names:
            problems.append(
                f"{rule.source}: name: {rule.name!r} is also the name of {names[rule.name].source}"
            )
        names.setdefault(rule.name, rule)
    fallbacks = [r.source for r in rules if r.spec.fallback]
    if len(fallbacks) > 1:
        problems.append(f"{fallbacks[1]}: fallback: only one rule may be the fallback; {fallbacks[0]} is too")
    by_type: dict[str, Rule] = {}
    # Without a fallback file the built-in one is in the set too: a rule that validates but names
    # no dataset type would share "generic" with it.
    builtin = [] if fallbacks else [Rule(BUILTIN_FALLBACK, "built-in")]
    for rule in builtin + rules:
        first = by_type.setdefault(rule.dataset_type, rule)
        if first is not rule and _type_definition(first) != _type_definition(rule):
            problems.append(
                f"{rule.source}: dataset_type: {rule.dataset_type!r} is also defined by {first.source} "
                "with other validation, drift or timezone settings; one dataset type has one definition "
                "(give this rule a dataset_type of its own)"
            )
    ordinary = [r for r in rules if not r.spec.fallback]
    for i, first in enumerate(ordinary):
        for second in ordinary[i + 1 :]:
            clash = _overlap(first, second)
            if clash:
                problems.append(
                    f"{second.source}: match: {clash[1]!r} and {clash[0]!r} of {first.source} can match "
                    f"the same file with the same priority ({first.spec.priority}); give one a higher "
                    "priority or narrow a glob"
                )
    return problems


def _rule_checks(rule: Rule, extractor_names: set[str]) -> list[str]:
    spec, problems = rule.spec, []
    if spec.extractor not in extractor_names and spec.extractor not in EXTRACTOR_CHOICES:
        known = ", ".join(sorted(extractor_names | set(EXTRACTOR_CHOICES)))
        problems.append(
            f"{rule.source}: extractor: {spec.extractor!r} is not an extractor here (known: {known})"
        )
    sources = set(spec.fields) | (set(re.compile(spec.path.pattern).groupindex) if spec.path else set())
    if spec.enrich.instrument is not None:
        sources.add("instrument")
    for name, field in spec.validation.items():
        if field.required and name not in sources:
            problems.append(
                f"{rule.source}: validation.{name}: required, but the rule takes it from nowhere; "
                "add it to [fields] or as a named group of [path].pattern"
            )
    if spec.session and spec.session.pattern and spec.fallback:
        problems.append(f"{rule.source}: session: the fallback rule groups sessions by default only")
    if spec.transform is not None:
        problems += _transform_checks(rule)
    return problems


def _transform_checks(rule: Rule) -> list[str]:
    spec, problems = rule.spec, []
    if spec.extractor != "tabular":
        problems.append(
            f"{rule.source}: transform: derived tables are made from tables; the rule must say "
            f'extractor = "tabular" (it says {spec.extractor!r})'
        )
    if spec.transform is not None and spec.transform.format == "parquet" and not parquet_available():
        problems.append(
            f"{rule.source}: transform.format: writing Parquet needs pyarrow, which is not installed: "
            "install the extra (pip install 'fair-agent[transform]') or write format = \"csv\""
        )
    return problems


def parquet_available() -> bool:
    """Whether pyarrow is installed (found, not imported: that takes a while)."""
    return importlib.util.find_spec("pyarrow") is not None


def _type_definition(rule: Rule) -> tuple[object, ...]:
    return (rule.spec.validation, rule.spec.drift, rule.spec.timezone)


def _overlap(first: Rule, second: Rule) -> tuple[str, str] | None:
    if first.spec.priority != second.spec.priority:
        return None
    if first.spec.root is not None and second.spec.root is not None and first.spec.root != second.spec.root:
        return None
    for a in first.spec.match:
        for b in second.spec.match:
            if globs_overlap(a, b):
                return a, b
    return None

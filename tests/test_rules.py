"""Rule sets: strict loading (each bad rule gives its own error), glob overlap, matching, grouping."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.config import CompletionPolicy
from agent.extractors import load_extractors
from agent.rules import RuleError, RuleSet, load_rules
from agent.rules.globs import globs_overlap, to_regex

from .conftest import REPO, write

EXTRACTORS = [e.name for e in load_extractors()]

GOOD = """
match = ["EXP-*/*.csv"]
dataset_type = "plate"
"""


def load(folder: Path, **files: str) -> RuleSet:
    for name, text in files.items():
        write(folder / f"{name}.toml", text)
    return load_rules(folder, EXTRACTORS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('match = ["*.csv"]\ncolour = "blue"', "rules/bad.toml: colour: unknown key"),
        ('match = ["*.csv"]\n[enrich]\nlicence = "x"', "rules/bad.toml: enrich.licence: unknown key"),
        (
            'dataset_type = "x"',
            "rules/bad.toml: (top level): 'match' is missing; the rule must say which files",
        ),
        (
            'fallback = true\nmatch = ["a/*"]',
            "the fallback rule claims every file no other rule does; remove",
        ),
        (
            'match = ["*"]\n[validation.d]\ntype = "date"\nformat = "%d %Q"',
            "'format' '%d %Q' is not a date format",
        ),
        (
            'match = ["*"]\n[validation.n]\ntype = "integer"\nenum = ["3", "4"]',
            "'enum' value '3' is not a integer",
        ),
        ('match = ["*"]\n[drift]\ncolumns = { a = "numbr" }', "drift.columns.a: Input should be 'integer'"),
        (
            'match = ["*"]\n[fields]\nparameters = "x"',
            "'parameters' is a base field that collects many values",
        ),
        (
            'match = ["*"]\n[path]\npattern = "(?P<tags>x)"',
            "'tags' is a base field that collects many values",
        ),
        ('match = ["*.csv"\n', "rules/bad.toml: not valid TOML"),
        (
            'match = ["*.csv"]\n[path]\npattern = "(?P<id>EXP-("',
            "rules/bad.toml: path.pattern: not a valid regular expression",
        ),
        ('match = ["*.csv"]\n[path]\npattern = "EXP-\\\\d+"', "path.pattern: the pattern has no named group"),
        (
            'match = ["*.csv"]\n[validation.run]\npattern = "[a-"',
            "rules/bad.toml: validation.run.pattern: not a valid regular expression",
        ),
        (
            'match = ["/data/*.csv"]',
            "rules/bad.toml: match: '/data/*.csv' can never match: globs are relative",
        ),
        ('match = ["a/../*.csv"]', "match: 'a/../*.csv' can never match: '.' and '..' never appear"),
        ('match = ["a//b.csv"]', "match: 'a//b.csv' can never match: the glob has an empty folder name"),
        ('match = ["data/"]', "match: 'data/' can never match: a glob matches files, not folders"),
        ('match = ["[abc.csv"]', "match: '[abc.csv' can never match: '[' at position 1 is never closed"),
        ('match = ["*.[z-a]"]', "can never match: range 'z-a' runs backwards"),
        ('match = ["*.csv"]\nextractor = "pdf"', "rules/bad.toml: extractor: 'pdf' is not an extractor here"),
        (
            'match = ["*.csv"]\ntimezone = "Mars/Olympus"',
            "timezone: 'Mars/Olympus' is not a known IANA time zone",
        ),
        (
            'match = ["*.csv"]\ndataset_type = "Plate Reader"',
            "rules/bad.toml: dataset_type: String should match",
        ),
        (
            'match = ["*.csv"]\n[validation.operator]\nrequired = true',
            "validation.operator: required, but the rule takes it from nowhere",
        ),
        (
            'match = ["*.csv"]\n[validation.t]\ntype = "number"\nmin = 5\nmax = 1',
            "'min' (5.0) is larger than 'max' (1.0)",
        ),
        ('match = ["*.csv"]\n[validation.t]\ntype = "number"\npattern = "x"', "'pattern' applies to strings"),
        (
            'match = ["*.csv"]\n[validation.acquisition_date]\ntype = "string"',
            "acquisition_date is a datetime",
        ),
        (
            'match = ["*.csv"]\n[session]\ndepth = 2\npattern = "x"',
            "rules/bad.toml: session: give exactly one of 'depth' or 'pattern'",
        ),
        (
            'match = ["*.csv"]\n[session]\ndepth = 0',
            "session.depth: Input should be greater than or equal to 1",
        ),
        (
            'match = ["*.csv"]\n[completion]\nquiet_period_s = -1',
            "completion.quiet_period_s: Input should be greater",
        ),
        (
            'match = ["*.csv"]\n[drift]\npolicy = "panic"',
            "drift.policy: Input should be 'off', 'warn' or 'quarantine'",
        ),
        ('match = ["*.csv"]\n[[enrich.creator]]\nname = "A"\norcid = "0000-0002"', "enrich.creator.0.orcid"),
        ('match = ["*.csv"]\n[enrich.publisher]\nname = "Lab"\nror = "ror.org/x"', "enrich.publisher.ror"),
    ],
)
def test_each_bad_rule_gives_its_own_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RuleError) as caught:
        load(tmp_path / "rules", bad=text)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_two_rules_claiming_one_file_with_equal_priority_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load(tmp_path / "rules", a='match = ["EXP-*/*.csv"]', b='match = ["*/OD600_*.CSV"]')
    (problem,) = caught.value.problems
    assert problem.startswith("rules/b.toml: match: '*/OD600_*.CSV' and 'EXP-*/*.csv' of rules/a.toml")
    # A higher priority settles it; so do different roots, or globs that cannot meet.
    load(tmp_path / "ok1", a='match = ["EXP-*/*.csv"]', b='priority = 1\nmatch = ["*/OD600_*.CSV"]')
    load(tmp_path / "ok2", a='root = "x"\nmatch = ["**"]', b='root = "y"\nmatch = ["**"]')
    load(tmp_path / "ok3", a='match = ["*/*.csv"]', b='match = ["*/*.tsv", "*.csv"]')


def test_set_level_errors_name_both_files(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load(
            tmp_path / "rules",
            a='name = "same"\nfallback = true\nmatch = ["**"]',
            b='name = "same"\nfallback = true\nmatch = ["**"]',
            c='match = ["*.csv"]\ndataset_type = "t"\n[validation.x]\nenum = ["a"]',
            d='match = ["*.tsv"]\ndataset_type = "t"\n[validation.x]\nenum = ["b"]',
        )
    problems = "\n".join(caught.value.problems)
    assert "rules/b.toml: name: 'same' is also the name of rules/a.toml" in problems
    assert "rules/b.toml: fallback: only one rule may be the fallback; rules/a.toml is too" in problems
    assert "rules/d.toml: dataset_type: 't' is also defined by rules/c.toml" in problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load(tmp_path / "rules", a='match = ["/x"]\ncolour = 1', b='match = ["*"]\nextractor = "nope"')
    assert len(caught.value.problems) == 3


def test_a_missing_rules_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="the rules folder does not exist"):
        load_rules(tmp_path / "nowhere", EXTRACTORS)
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty" / "notes.txt", "not a rule")
    with pytest.raises(RuleError, match="no rule files"):
        load_rules(tmp_path / "empty", EXTRACTORS)


def test_a_rule_without_a_dataset_type_has_its_own(tmp_path: Path) -> None:
    rules = load(tmp_path / "rules", **{"Plate_Reader": 'match = ["*.csv"]\n[validation.x]\nenum = ["a"]'})
    assert rules.rule_for("d", "a.csv").dataset_type == "plate_reader"
    # Naming the fallback's type while validating differently is refused.
    with pytest.raises(RuleError, match="'generic' is also defined by built-in"):
        load(
            tmp_path / "other", a='match = ["*.csv"]\ndataset_type = "generic"\n[validation.x]\nenum = ["a"]'
        )


def test_the_shipped_rule_set_loads() -> None:
    rules = load_rules(REPO / "rules", EXTRACTORS)
    assert rules.fallback.source == "rules/fallback.toml"
    assert {r.dataset_type for r in rules.all} >= {
        "eln-export",
        "xrd-scan",
        "uvvis-scan",
        "biologic-ec-lab",
        "tecan-spark-kinetics",
        "jcamp-spectrum",
        "ftir-spectrum",
        "plate-reader-kinetics",
        "experiment-notes",
        "generic",
    }


def test_priority_case_and_root_decide_which_rule_claims_a_file(tmp_path: Path) -> None:
    rules = load(
        tmp_path / "rules",
        kinetics='priority = 2\nmatch = ["EXP-*/*_kinetics.csv"]\ndataset_type = "kinetics"',
        session='priority = 1\nmatch = ["EXP-*/**"]\ndataset_type = "notes"',
        xrd='root = "xrd"\nmatch = ["**/*.xrdml"]\ndataset_type = "xrd"',
    )
    assert rules.rule_for("drop", "EXP-1_a/OD600_KINETICS.CSV").dataset_type == "kinetics"
    assert rules.rule_for("drop", "EXP-1_a/sub/notes.md").dataset_type == "notes"
    assert rules.rule_for("xrd", "run/scan.XRDML").dataset_type == "xrd"
    assert rules.rule_for("drop", "run/scan.xrdml").dataset_type == "generic"  # other root: fallback
    assert rules.fallback.source == "built-in"


def test_sessions_default_to_the_first_folder_and_rules_may_group_deeper(tmp_path: Path) -> None:
    rules = load(
        tmp_path / "rules",
        deep='match = ["xrd/**"]\n[session]\ndepth = 2',
        runs='match = ["ms/**"]\n[session]\npattern = "^(?P<session>ms/[^/]+/run-\\\\d+)/"',
        wrong='match = ["lc/**"]\n[session]\npattern = "^lc/(?P<session>[^/]+)/"',
    )
    assert rules.session_of("drop", "loose.csv") == ("loose.csv", False)
    assert rules.session_of("drop", "EXP-1/a/b.csv") == ("EXP-1", True)
    assert rules.session_of("drop", "xrd/run-1/scan.xrdml") == ("xrd/run-1", True)
    assert rules.session_of("drop", "xrd/readme.txt") == ("xrd", True)  # not deep enough: default
    assert rules.session_of("drop", "ms/alice/run-7/a.raw") == ("ms/alice/run-7", True)
    assert rules.session_of("drop", "ms/alice/notes.txt") == ("ms", True)  # no match: default
    # The session must be a folder the file lies in, from the root down; else the default applies.
    assert rules.session_of("drop", "lc/run-3/a.raw") == ("lc", True)


def test_session_pattern_takes_a_folder_prefix(tmp_path: Path) -> None:
    rules = load(tmp_path / "rules", runs='match = ["ms/**"]\n[session]\npattern = "^ms/[^/]+/run-\\\\d+"')
    assert rules.session_of("drop", "ms/alice/run-7/a.raw") == ("ms/alice/run-7", True)
    assert rules.session_of("drop", "ms/alice/run-7a/a.raw") == ("ms", True)  # stops mid-name


def test_completion_policy_comes_from_the_rule(tmp_path: Path) -> None:
    rules = load(
        tmp_path / "rules", slow='match = ["slow/**"]\n[completion]\nquiet_period_s = 120\nmarker = "*.done"'
    )
    default = CompletionPolicy()
    assert rules.completion_for("drop", "slow/a.csv", default).marker == "*.done"
    assert rules.completion_for("drop", "fast/a.csv", default) is default
    merged = default.strictest(rules.completion_for("drop", "slow/a.csv", default))
    assert (merged.quiet_period_s, merged.marker) == (120, "*.done")


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("**/*.csv", "EXP-*/*.CSV", True),
        ("**/*.csv", "**/*.tsv", False),
        ("a/*.txt", "a/b/*.txt", False),
        ("a/**/*.txt", "a/b/c/d.txt", True),
        ("*.[Tt][Xx][Tt]", "*.raw8.txt", True),
        ("[!a]*.x", "a*.x", False),
        ("*/*.x", "*.x", False),
        ("**", "anything/at/all", True),
        ("**/*.raw8.txt", "**/[[]FTIRText]*.txt", True),
        ("data?.csv", "data10.csv", False),
    ],
)
def test_glob_overlap_is_exact(first: str, second: str, overlap: bool) -> None:
    assert globs_overlap(first, second) is overlap
    assert globs_overlap(second, first) is overlap


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("**/*.csv", "a.csv", True),
        ("**/*.csv", "a/b/C.CSV", True),
        ("EXP-*/*.csv", "EXP-1/a/b.csv", False),
        ("xrd/**", "xrd/a/b", True),
        ("[[]FTIRText]*.txt", "[FTIRText]020.txt", True),
    ],
)
def test_glob_matching(glob: str, path: str, matches: bool) -> None:
    assert (to_regex(glob).fullmatch(path) is not None) is matches

"""Names: own outputs, ignores, percent-encoded ids, sessions, batch ids."""

from __future__ import annotations

import os
from fnmatch import fnmatchcase

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.batch import batch_id
from agent.core.config import DEFAULT_IGNORE
from agent.core.naming import IgnoreRules, is_own_output, is_own_path, relative_id, session_of


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("plate.csv", "plate.csv"),
        ("raw/scan 1.txt", "raw/scan%201.txt"),
        ("[FTIRText]020.txt", "%5BFTIRText%5D020.txt"),
        ("12:30:00.csv", "12%3A30%3A00.csv"),
        ("Δ-µ.csv", "%CE%94-%C2%B5.csv"),
        ("a#b?c%d.csv", "a%23b%3Fc%25d.csv"),
        (os.fsdecode(b"\xe9t\xe9.txt"), "%E9t%E9.txt"),
    ],
)
def test_relative_ids_are_percent_encoded(path: str, expected: str) -> None:
    assert relative_id(path) == expected


@pytest.mark.parametrize(
    ("relpath", "ours"),
    [
        ("s/a.csv.fair.json", True),
        ("a.csv.fair.json", True),
        ("s/a.csv.fair.error.json", True),
        ("s/ro-crate-metadata.json", True),  # the crate at the top of a session folder
        ("ro-crate-metadata.json", False),  # loose in the root: never ours, so data
        ("s/export/ro-crate-metadata.json", False),  # deeper: data (e.g. an unpacked ELN export)
        ("s/ro-crate-preview.html", True),  # the crate's preview, beside it
        ("ro-crate-preview.html", False),
        ("s/export/ro-crate-preview.html", False),
        ("s/.a.csv.fair.json.1a2b3c4d.fair-tmp", True),
        ("s/a.json", False),
        ("s/fair.json.csv", False),
    ],
)
def test_own_outputs(relpath: str, ours: bool) -> None:
    assert is_own_path(relpath) is ours
    assert is_own_output(relpath.rsplit("/", 1)[-1]) is (
        ours and not relpath.endswith(("ro-crate-metadata.json", "ro-crate-preview.html"))
    )


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("run.part", True),
        ("~$Book1.xlsx", True),
        (".~lock.data.ods#", True),
        ("upload.tmp", True),
        ("Thumbs.db", True),
        ("data.csv", False),
        ("partial.csv", False),
    ],
)
def test_default_ignores(name: str, ignored: bool) -> None:
    assert IgnoreRules(DEFAULT_IGNORE).ignores(name) is ignored


GLOB_PIECES = st.sampled_from(["*", "?", "[a-c]", "[!x]", ".", "a", "b", "x", "~$", "|", "(", "\\", "\n"])


NAME_PIECES = st.sampled_from(["a", "b", "c", "x", ".", "~", "$", "|", "(", "\\", "\n", "é"])


@given(
    patterns=st.lists(st.lists(GLOB_PIECES, max_size=5).map("".join), max_size=4),
    name=st.lists(NAME_PIECES, max_size=6).map("".join),
)
def test_the_globs_read_together_as_each_alone(patterns: list[str], name: str) -> None:
    """IgnoreRules matches all its globs in one expression: the same as fnmatchcase one by one."""
    if is_own_output(name):
        return
    assert IgnoreRules(patterns).ignores(name) is any(fnmatchcase(name, p) for p in patterns)


@pytest.mark.parametrize(
    ("relpath", "session", "folder"),
    [("loose.csv", "loose.csv", False), ("run-1/a.csv", "run-1", True), ("run-1/x/y/z.csv", "run-1", True)],
)
def test_sessions_are_the_first_folder_level(relpath: str, session: str, folder: bool) -> None:
    assert session_of(relpath) == (session, folder)


def test_batch_id_is_deterministic_and_order_free() -> None:
    pairs = [("s/a", "1" * 64), ("s/b", "2" * 64)]
    assert batch_id("root", "s", pairs) == batch_id("root", "s", list(reversed(pairs)))
    assert batch_id("root", "s", pairs) != batch_id("other", "s", pairs)
    assert batch_id("root", "s", pairs) != batch_id("root", "s", [("s/a", "1" * 64), ("s/b", "3" * 64)])

"""Listing sessions on the event loop's thread while it is quick, else in a thread: the same listing."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.core.naming import CRATE_NAME, IgnoreRules, temp_name
from agent.fs.fsinfo import filesystem_type
from agent.service import discover
from agent.service.discover import (
    LeftToThread,
    LoopBudget,
    LoopListing,
    SessionLister,
    list_session,
    look_session,
)

from .conftest import run_scan, write

IGNORE = IgnoreRules(["*.tmp"])


@pytest.fixture
def session(drop: Path) -> Path:
    if discover.loop_listing(drop) is None:
        pytest.skip(f"the tests' folder is on {filesystem_type(drop)}: listed in threads only")
    write(drop / "s" / "a.csv", "1\n")
    write(drop / "s" / "deeper" / "b.raw", b"\0" * 100)
    write(drop / "s" / "skipped.tmp", "x")
    write(drop / "s" / temp_name("a.csv.fair.json", "0123456789ab"), "{")
    (drop / "s" / "link.csv").symlink_to(drop / "s" / "a.csv")
    os.mkfifo(drop / "s" / "pipe")
    return drop


@pytest.fixture
def listed_in(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads list_session ran in, in order ("loop" for the test's own, the loop's)."""
    threads: list[str] = []
    loop_thread = threading.get_ident()
    original = discover.list_session

    def recorded(*args: object) -> discover.SessionListing:
        threads.append("loop" if threading.get_ident() == loop_thread else "thread")
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(discover, "list_session", recorded)
    return threads


async def test_a_quick_listing_is_taken_on_the_loop(
    session: Path, listed_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", 60.0)  # whatever else the machine is doing
    listing = await SessionLister(session, IGNORE).folder("s")
    assert listed_in == ["loop"]
    assert listing == list_session(session, "s", IGNORE)
    assert [f.relpath for f in listing.files] == ["s/a.csv", "s/deeper/b.raw"]
    assert {s.relpath for s in listing.skips} == {"s/link.csv", "s/pipe"}
    assert len(listing.temp_files) == 1


async def test_a_scanned_session_lists_the_same_on_the_loop(
    session: Path, config: AgentConfig, listed_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the agent's sidecars and crate in it, told from data by reading them."""
    await run_scan(session, config)
    listed_in.clear()
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", 60.0)
    ignore = IgnoreRules(config.ignore)
    listing = await SessionLister(session, ignore).folder("s")
    assert listed_in == ["loop"]
    assert listing == list_session(session, "s", ignore)
    assert listing.has_crate and listing.own_crates == {"s"}


async def test_a_listing_over_its_time_is_taken_again_in_a_thread(
    session: Path, listed_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", -1.0)  # spent before the first entry
    lister = SessionLister(session, IGNORE)
    listing = await lister.folder("s")
    assert listed_in == ["loop", "thread"]
    assert listing == list_session(session, "s", IGNORE)
    assert await lister.look("s") == listing
    assert await lister.look("gone") is None
    # Its next listings go to a thread at once, without spending the loop's time first...
    before = len(listed_in)
    await lister.folder("s")
    assert listed_in[before:] == ["thread"]


async def test_a_session_left_to_threads_is_tried_on_the_loop_again_after_a_while(
    session: Path, listed_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", -1.0)
    monkeypatch.setattr(discover, "THREADED_FOR_S", 0.0)  # a while that has passed at once
    lister = SessionLister(session, IGNORE)
    await lister.folder("s")
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", 60.0)
    await lister.folder("s")
    assert listed_in == ["loop", "thread", "loop"]
    assert not lister._threaded, "a session listed on the loop again is forgotten"


async def test_where_the_loop_may_list_is_read_once_and_again_when_told(
    session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service tells it at each reconciliation: a share mounted below the root since then is
    left to threads before it is ever stat'ed on the loop."""
    reads: list[Path] = []
    original = discover.loop_listing

    def counted(root: Path) -> LoopListing | None:
        reads.append(root)
        return original(root)

    monkeypatch.setattr(discover, "loop_listing", counted)
    lister = SessionLister(session, IGNORE)
    await lister.folder("s")
    await lister.look("s")
    assert len(reads) == 1
    lister.look_at_mounts_again()
    await lister.folder("s")
    assert len(reads) == 2


async def test_the_sessions_listed_in_threads_at_once_are_bounded(
    session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discover, "ON_LOOP_SECONDS", -1.0)
    monkeypatch.setattr(discover, "THREADED_MOST", 2)
    lister = SessionLister(session, IGNORE)
    for name in ("a", "b", "s", "a"):
        await lister.look(name)
    assert list(lister._threaded) == ["s", "a"]  # b was remembered longest ago


def test_a_budget_stops_at_its_deadline_at_another_device_and_at_a_mount_point(session: Path) -> None:
    device = os.stat(session).st_dev
    with pytest.raises(LeftToThread, match="took over"):
        list_session(session, "s", IGNORE, LoopBudget(-math.inf, LoopListing(device)))
    with pytest.raises(LeftToThread, match="another device"):
        look_session(session, "s", IGNORE, LoopBudget(math.inf, LoopListing(device + 1)))
    for mount in ("s", "s/deeper"):  # never stat'ed: a stat there may wait for a server
        with pytest.raises(LeftToThread, match="mount point"):
            look_session(session, "s", IGNORE, LoopBudget(math.inf, LoopListing(device, frozenset({mount}))))
    within = list_session(session, "s", IGNORE, LoopBudget(math.inf, LoopListing(device, frozenset({"t"}))))
    assert within == list_session(session, "s", IGNORE)


async def test_a_filesystem_the_loop_may_not_list_is_listed_in_threads(
    session: Path, listed_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discover, "is_loop_safe", lambda fs_type: False)  # as on NFS, SMB, FUSE
    listing = await SessionLister(session, IGNORE).folder("s")
    assert listed_in == ["thread"]
    assert listing == list_session(session, "s", IGNORE)


def test_a_large_crate_is_read_in_a_thread(session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a crate is the agent's is read from it: on the loop's thread only if it is small."""
    write(session / "s" / CRATE_NAME, "{}" * 100)
    device = os.stat(session).st_dev
    assert list_session(session, "s", IGNORE, LoopBudget(math.inf, LoopListing(device))).has_crate
    monkeypatch.setattr(discover, "ON_LOOP_BYTES", 100)
    with pytest.raises(LeftToThread, match="too large"):
        list_session(session, "s", IGNORE, LoopBudget(math.inf, LoopListing(device)))

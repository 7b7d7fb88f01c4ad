"""Native parsers run in worker processes: a crash, a hang or a memory hog ends a worker, never the
agent. The HDF5 fixtures are mutants of a NeXus file that crash libhdf5 (SIGSEGV) or make it loop
holding the GIL, found by scripts/fuzz_hdf5.py. A site's extractor stuck in native code is played by
a regular expression that backtracks forever: the re module, too, never lets go of the GIL."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from agent.core.config import AgentConfig
from agent.extractors import worker
from agent.extractors.base import Budget, ExtractionError, ExtractionTimeout, Extractor, Metadata, Source
from agent.extractors.isolation import (
    IsolatedParsers,
    OpenFile,
    ParserCrashedError,
    most_reads,
    read_message,
    send_message,
    travels_together,
)
from agent.extractors.runner import MetadataReader, Wanted
from agent.extractors.tabular import TabularExtractor
from agent.ledger import Ledger
from agent.service.daemon import Service

from .conftest import dead_letters, live_config, read_crate, read_sidecar, run_scan, wait_for, write

FIXTURES = Path(__file__).parent / "fixtures" / "hdf5"


def fixture(kind: str) -> Path:
    found = sorted(FIXTURES.glob(f"{kind}-*.nxs"))
    assert found, f"no {kind} fixture in {FIXTURES}: run scripts/fuzz_hdf5.py"
    return found[0]


class MemoryHog:
    """An extractor that asks for more memory than a worker may have."""

    name = "memory-hog"

    def accepts(self, name: str, head: bytes) -> bool:
        return True

    def extract(self, source: Source, budget: Budget) -> Metadata:
        return {"size": len(bytearray(4 << 30))}


class Spinner:
    """An extractor that never returns and never checks its budget."""

    name = "spinner"

    def accepts(self, name: str, head: bytes) -> bool:
        return True

    def extract(self, source: Source, budget: Budget) -> Metadata:
        while True:
            pass


class GilHolder:
    """An extractor stuck in native code that holds the GIL: no thread of its process runs."""

    name = "gil-holder"

    def accepts(self, name: str, head: bytes) -> bool:
        return name.endswith(".stuck")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        return {"match": bool(re.match(r"(a+)+$", "a" * 64 + "b"))}  # 2**64 steps


@pytest.fixture
def parsers() -> Iterator[IsolatedParsers]:
    pool = IsolatedParsers(2, 512 << 20)
    yield pool
    pool.close()


def extract(pool: IsolatedParsers, extractor: object, path: Path, seconds: float = 10) -> Metadata:
    fd = os.open(path, os.O_RDONLY)
    try:
        return pool.extract(extractor, fd, path.name, path.parent, seconds)  # type: ignore[arg-type]
    finally:
        os.close(fd)


def extract_each(
    pool: IsolatedParsers, files: list[tuple[Extractor, Path]], seconds: float
) -> list[Metadata | Exception]:
    """The files read as one group, each by its extractor."""
    fds = [os.open(path, os.O_RDONLY) for _, path in files]
    try:
        return pool.extract_group(
            [OpenFile(e, fd, path.name, path.parent) for (e, path), fd in zip(files, fds, strict=True)],
            seconds,
        )
    finally:
        for fd in fds:
            os.close(fd)


def test_a_crashing_parser_ends_its_worker_and_the_next_file_gets_a_fresh_one(
    parsers: IsolatedParsers,
) -> None:
    pytest.importorskip("h5py")
    from agent.extractors.hdf5 import Hdf5Extractor

    with pytest.raises(ParserCrashedError, match=r"crashed \(SIG"):
        extract(parsers, Hdf5Extractor(), fixture("crash"))
    metadata = extract(parsers, Hdf5Extractor(), FIXTURES / "base.nxs")
    assert metadata["extractor"] == "hdf5" and metadata["nexusEntries"][0]["title"] == "in-situ scan 17"


def test_a_hanging_parser_is_stopped_at_its_limits(parsers: IsolatedParsers) -> None:
    """In a thread, this file froze the whole agent: libhdf5 loops holding the GIL."""
    pytest.importorskip("h5py")
    from agent.extractors.hdf5 import Hdf5Extractor

    started = time.monotonic()
    with pytest.raises((ExtractionTimeout, ParserCrashedError), match=r"was stopped|CPU time"):
        extract(parsers, Hdf5Extractor(), fixture("hang"), seconds=1)
    assert time.monotonic() - started < 10


def test_a_parser_stuck_holding_the_gil_is_stopped_at_the_time_limit(
    parsers: IsolatedParsers, tmp_path: Path
) -> None:
    path = write(tmp_path / "x.stuck", b"x")
    started = time.monotonic()
    with pytest.raises((ExtractionTimeout, ParserCrashedError), match=r"was stopped|CPU time"):
        extract(parsers, GilHolder(), path, seconds=1)
    assert time.monotonic() - started < 10  # a limit the kernel keeps, not the GIL's mercy


def test_memory_and_cpu_limits_end_the_worker(parsers: IsolatedParsers, tmp_path: Path) -> None:
    path = write(tmp_path / "any.bin", b"x")
    with pytest.raises(ExtractionError, match="more memory"):
        extract(parsers, MemoryHog(), path)
    with pytest.raises((ParserCrashedError, ExtractionTimeout), match=r"CPU time|was stopped"):
        extract(parsers, Spinner(), path, seconds=1)


async def test_the_service_survives_both_and_ingests_the_rest_of_the_session(
    drop: Path, config: AgentConfig, ledger: Ledger
) -> None:
    pytest.importorskip("h5py")
    cfg = live_config(config, drop).model_copy(update={"extract_timeout_s": 2.0})
    service = Service(cfg, ledger)
    stuck = GilHolder()  # as a site's extractor would be: asked first
    service.pipeline.extraction.extractors.insert(0, stuck)
    async with service.running():
        write(drop / "run" / "crash.nxs", fixture("crash").read_bytes())
        write(drop / "run" / "hang.nxs", fixture("hang").read_bytes())
        write(drop / "run" / "hang.stuck", b"x")
        write(drop / "run" / "good.nxs", (FIXTURES / "base.nxs").read_bytes())
        write(drop / "run" / "notes.csv", "a,b\n1,2\n")
        await wait_for(lambda: (drop / "run" / "notes.csv.fair.json").exists(), timeout=60)
        await wait_for(lambda: service.idle, timeout=30)
    assert read_sidecar(drop / "run" / "good.nxs")["metadata"]["extractor"] == "hdf5"
    # Neither file is lost: each is ingested with its generic description and the parser's failure.
    assert dead_letters(cfg) == []
    failures = {
        name: read_sidecar(drop / "run" / name)["metadata"]["extraction_error"]
        for name in ("crash.nxs", "hang.nxs", "hang.stuck")
    }
    assert failures["crash.nxs"]["error"] == "ParserCrashedError"
    assert failures["hang.nxs"]["error"] in ("ExtractionTimeout", "ParserCrashedError")
    assert failures["hang.stuck"]["extractor"] == "gil-holder"
    assert failures["hang.stuck"]["error"] in ("ExtractionTimeout", "ParserCrashedError")
    crashed = read_sidecar(drop / "run" / "crash.nxs")
    assert crashed["encodingFormat"] == "application/x-hdf5"
    assert any(w.startswith("the hdf5 extractor could not read the file: ") for w in crashed["warnings"])
    assert "crash.nxs" in {e.get("name") for e in read_crate(drop / "run")["@graph"]}
    # Recorded: a restart does not try them again until they change.
    report = await run_scan(drop, cfg)
    assert report.bytes_hashed == 0 and report.files_ingested == 0


def test_in_a_group_the_file_that_ends_its_worker_fails_alone(
    parsers: IsolatedParsers, tmp_path: Path
) -> None:
    """One request carries a group; each file is answered on its own, so a crash or a hang in the
    middle fails that file, and the files after it are read by a fresh worker."""
    files: list[tuple[Extractor, Path]] = [
        (TabularExtractor(), write(tmp_path / "a.csv", "t,x\n0,1\n")),
        (GilHolder(), write(tmp_path / "b.stuck", b"x")),
        (MemoryHog(), write(tmp_path / "c.bin", b"x")),
        (TabularExtractor(), write(tmp_path / "d.csv", "t,y\n0,2\n1,3\n")),
    ]
    started = time.monotonic()
    results = extract_each(parsers, files, seconds=1)
    assert time.monotonic() - started < 15
    first, stuck, hog, last = results
    assert isinstance(first, dict) and first["rowCount"] == 1
    assert isinstance(stuck, ExtractionTimeout | ParserCrashedError)
    assert isinstance(hog, ExtractionError) and "memory" in str(hog)
    assert isinstance(last, dict) and last["rowCount"] == 2 and last["columns"][1]["name"] == "y"


def leave_mark(source: Source) -> None:
    """A mark in the file's folder each time an extractor starts reading it."""
    with open(source.folder / "reads", "a") as marks:
        marks.write("x")


class Crasher:
    """An extractor that ends its process as a native parser's crash does (SIGSEGV)."""

    name = "crasher"

    def accepts(self, name: str, head: bytes) -> bool:
        return name.endswith(".crash")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        leave_mark(source)
        os.kill(os.getpid(), signal.SIGSEGV)
        return {}


class MarkingGilHolder(GilHolder):
    def extract(self, source: Source, budget: Budget) -> Metadata:
        leave_mark(source)
        return super().extract(source, budget)


class CrashFreeCrasher(Crasher):
    """One that says it cannot end its worker, and does (an extractor's bug)."""

    crash_free = True


class CrashFreeGilHolder(MarkingGilHolder):
    crash_free = True


def quick_tables(folder: Path, count: int, first: int = 0) -> list[tuple[Extractor, Path]]:
    numbers = range(first, first + count)
    return [(TabularExtractor(), write(folder / f"q{n}.csv", f"t,x\n0,{n}\n")) for n in numbers]


def maxima(results: list[Metadata | Exception]) -> list[object]:
    return [r["columns"][1]["max"] if isinstance(r, dict) else r for r in results]


@pytest.mark.parametrize("bad", [CrashFreeCrasher, CrashFreeGilHolder], ids=["crash", "hang"])
def test_replies_held_back_are_not_lost_with_a_worker_that_ends_after_them(
    parsers: IsolatedParsers, tmp_path: Path, bad: type
) -> None:
    """Quick files' replies wait while a crash-free extractor reads; one that ends its worker all
    the same fails alone, and the files before it keep their metadata."""
    path = write(tmp_path / ("b.crash" if bad is CrashFreeCrasher else "b.stuck"), b"x")
    results = extract_each(
        parsers, [*quick_tables(tmp_path, 6), (bad(), path), *quick_tables(tmp_path, 3, first=6)], seconds=1
    )
    assert maxima(results[:6]) == list(range(6)) and maxima(results[7:]) == [6, 7, 8]
    if bad is CrashFreeCrasher:
        assert isinstance(results[6], ParserCrashedError) and "SIGSEGV" in str(results[6])
    else:
        assert isinstance(results[6], ExtractionTimeout | ParserCrashedError)
    # Read again alone to pin the failure on it: the price of that extractor's bug.
    assert (tmp_path / "reads").read_text() == "xx"


@pytest.mark.parametrize("bad", [Crasher, MarkingGilHolder], ids=["crash", "hang"])
def test_an_extractor_that_may_end_its_worker_fails_alone_at_the_first_try(
    parsers: IsolatedParsers, tmp_path: Path, bad: type
) -> None:
    """Between quick files: no reply is held while it reads, nor is its own, so its failure is
    pinned on it at once and it is read once (a hang costs one time limit, a crash happens once)."""
    path = write(tmp_path / ("b.crash" if bad is Crasher else "b.stuck"), b"x")
    results = extract_each(
        parsers, [*quick_tables(tmp_path, 6), (bad(), path), *quick_tables(tmp_path, 3, first=6)], seconds=1
    )
    assert maxima(results[:6]) == list(range(6)) and maxima(results[7:]) == [6, 7, 8]
    assert isinstance(results[6], ParserCrashedError if bad is Crasher else ExtractionTimeout)
    assert (tmp_path / "reads").read_text() == "x"


def test_only_an_extractor_class_that_promises_it_travels_together() -> None:
    assert travels_together(TabularExtractor(), None)
    assert not travels_together(TabularExtractor(), {"format": "parquet"})  # read twice
    assert not travels_together(Crasher(), None)  # no promise
    assert not travels_together(Picky(), None)  # a subclass may call native code of its own
    assert travels_together(CrashFreeCrasher(), None)
    # What the agent's backstop allows: a file that travels together may be read again alone.
    assert [most_reads(TabularExtractor(), None), most_reads(Crasher(), None)] == [2, 1]
    assert most_reads(Crasher(), {"format": "parquet"}) == 2


class CountingSocket(socket.socket):
    """The worker's end of its channel, counting the writes of its replies."""

    writes: list[bytes]

    def sendall(self, data: bytes, flags: int = 0) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))
        super().sendall(data, flags)


def test_the_worker_sends_quick_replies_together_and_others_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """worker.serve in this process: three quick files' replies go in one write, sent before a
    file that may end the worker is read; its reply goes at once; the last two at the end."""
    monkeypatch.setattr(worker, "TOGETHER_S", 60.0)  # nothing is sent for time spent
    monkeypatch.setattr(worker, "_limit_cpu", lambda seconds: None)  # not this test process's CPU
    agent_end, worker_end = socket.socketpair()
    counting = CountingSocket(fileno=os.dup(worker_end.fileno()))
    worker_end.close()
    counting.writes = []
    files = [*quick_tables(tmp_path, 3), (Picky(), write(tmp_path / "p.csv", "t,x\n0,9\n"))]
    files += quick_tables(tmp_path, 2, first=3)
    fds = [os.open(path, os.O_RDONLY) for _, path in files]
    request = {
        "files": [
            {
                "extractor": f"{type(e).__module__}:{type(e).__qualname__}",
                "name": path.name,
                "folder": str(path.parent),
                "derive": None,
                "together": travels_together(e, None),
            }
            for e, path in files
        ],
        "seconds": 5,
        "cpu_seconds": 5,
    }
    serving = threading.Thread(target=worker.serve, args=(counting,))
    serving.start()
    try:
        send_message(agent_end, request, fds)
        replies = agent_end.makefile("rb")
        received = [read_message(replies) for _ in files]
    finally:
        agent_end.shutdown(socket.SHUT_RDWR)
        serving.join(10)
        agent_end.close()
        counting.close()
        for fd in fds:
            os.close(fd)
    assert [r["index"] for r in received] == list(range(6))
    assert [r["metadata"]["columns"][1]["max"] for r in received] == [0, 1, 2, 9, 3, 4]
    assert [w.count(b'"index"') for w in counting.writes] == [3, 1, 2]


def test_a_group_read_together_gives_what_each_file_gives_alone(
    parsers: IsolatedParsers, tmp_path: Path
) -> None:
    files: list[tuple[Extractor, Path]] = [
        (TabularExtractor(), write(tmp_path / f"t{n}.csv", f"a,b\n{n},{n * 0.5}\n{n + 1},x\n"))
        for n in range(40)
    ]
    together = extract_each(parsers, files, seconds=5)
    assert together == [extract(parsers, e, path) for e, path in files]


class Unusual:
    """An extractor whose metadata orjson cannot write: integers beyond 64 bits."""

    name = "unusual"
    metadata: ClassVar[dict[str, int]] = {"count": 2**70, "least": -(2**63) - 1, "most": 2**64 - 1}

    def accepts(self, name: str, head: bytes) -> bool:
        return True

    def extract(self, source: Source, budget: Budget) -> Metadata:
        return dict(self.metadata)


def test_metadata_comes_back_from_the_worker_as_the_extractor_gave_it(
    parsers: IsolatedParsers, tmp_path: Path
) -> None:
    # An integer beyond 64 bits came back a float once (orjson reads it so).
    got = extract(parsers, Unusual(), write(tmp_path / "a.dat", "x"))
    assert {key: got[key] for key in Unusual.metadata} == Unusual.metadata
    assert all(type(got[key]) is int for key in Unusual.metadata)


class Chatter:
    """An extractor that writes a message of its own into the worker's channel to the agent."""

    name = "chatter"

    def accepts(self, name: str, head: bytes) -> bool:
        return name.endswith(".chat")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        import socket
        import sys

        from agent.extractors.isolation import send_message

        with socket.socket(fileno=os.dup(int(sys.argv[1]))) as channel:
            send_message(channel, {"metadata": {"forged": True}})
        return {"chatty": True}


def test_a_reply_that_is_not_the_files_never_lands_on_another_file(
    parsers: IsolatedParsers, tmp_path: Path
) -> None:
    files: list[tuple[Extractor, Path]] = [
        (TabularExtractor(), write(tmp_path / "a.csv", "t,x\n0,1\n")),
        (Chatter(), write(tmp_path / "b.chat", b"x")),
        (TabularExtractor(), write(tmp_path / "c.csv", "t,y\n0,2\n1,3\n")),
    ]
    results = extract_each(parsers, files, seconds=5)
    first, chatty, last = results
    assert isinstance(first, dict) and first["rowCount"] == 1
    assert isinstance(chatty, ExtractionError) and "channel" in str(chatty)
    assert isinstance(last, dict) and last["rowCount"] == 2 and "forged" not in last


class Picky(TabularExtractor):
    """The tabular extractor, but its ``accepts`` fails on one name (a plug-in's bug)."""

    def accepts(self, name: str, head: bytes) -> bool:
        if name == "b.csv":
            raise RuntimeError("a plug-in's bug")
        return super().accepts(name, head)


async def test_an_extractor_whose_accepts_fails_fails_that_file_alone(tmp_path: Path) -> None:
    paths = [write(tmp_path / n, "t,x\n0,1\n") for n in ("a.csv", "b.csv", "c.csv")]
    reader = MetadataReader(1, 10, [Picky()])
    try:
        results = await reader.read_group(
            tmp_path, [Wanted(p.name, p.read_bytes(), p.stat().st_ino) for p in paths]
        )
    finally:
        reader.close()
    assert isinstance(results[1], RuntimeError)
    assert [r.get("rowCount") for r in (results[0], results[2]) if isinstance(r, dict)] == [1, 1], results

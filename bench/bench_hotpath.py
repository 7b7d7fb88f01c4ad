"""The hot path's targets (issue 13), each beside a baseline measured in the same run.

Scenarios (data generated under --dir, default bench/.data, removed afterwards unless --keep):

  csv      20,000 real 4 KiB instrument CSVs (a vendor ``key: value`` block, then a numeric table)
           in 200 sessions, ``fair-agent scan`` end to end (a subprocess: start-up, hashing,
           extraction, sidecars, crates, ledger, durable). Target >= 3,000 files/s.
  binary   the same with 4 KiB binary files no extractor claims. Target >= 5,000 files/s.
  large    2 x 1 GiB, ``fair-agent scan`` end to end including start-up, against the hashlib
           ceiling (one thread per core). Target >= 85% of the ceiling.
  startup  ``--version`` <= 0.2 s and ``scan`` of an empty folder <= 0.35 s (bench_startup).
  latency  single drops, default settings, quiet period 1 s: p95 <= quiet + 250 ms (bench_service).
  writers  12 concurrent slow writers: p95 <= quiet + 500 ms (bench_service).
  burst    50,000 CSV files written into the watched folder as fast as possible: >= 2,000 files/s,
           peak RSS <= 300 MB (bench_service).

For csv and binary, three baselines: ``sha256sum`` over the tree (reading and hashing, nothing
written); the least any durable sidecar writer must do on this filesystem: create as many
files of a sidecar's size, each through a temp file and a rename, with one ``syncfs`` per 100
(creating files is the filesystem's work, and on a busy ext4 it alone can cost more than 100 µs
a file; the agent cannot be faster than that baseline); and a lean pipeline in plain Python, one
thread, doing the per-file work every ingest needs and nothing more: stat, read and hash each
file, write a sidecar-sized document (orjson) through a temp file and a rename, one ``syncfs``
per session, and a row per file in SQLite, one transaction per session. It extracts nothing and
writes no crate, so the agent cannot reach its rate; it shows what Python itself costs on this
machine. The agent's CPU per file as a multiple of the lean pipeline's is the weight of the agent's
own code, which moves less with the machine than the absolute figures do. Beside the baselines,
the scan's CPU time per file (the agent and its extraction workers, user and system) and the rate
it would allow on every core without a gap: whether a miss is the work each file costs or how it
is spread over the cores.

    python bench/bench_hotpath.py                 # every scenario, the issue's sizes
    python bench/bench_hotpath.py csv binary --files 5000
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from bench_extract import instrument_csv
from bench_ingest import hashlib_ceiling, make_large_tree, make_small_tree, warm
from bench_service import bench_burst, bench_latency, bench_writers
from bench_startup import _environment as bytecode_environment
from bench_startup import bench_empty_scan, bench_version
from benchkit import REPO, Scenario, run_scenarios

GiB = 1 << 30
#: The size of a small file's sidecar, for the file-creation baseline.
SIDECAR_BYTES = 2300


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20_000, help="small files (csv, binary)")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--large-files", type=int, default=2)
    parser.add_argument("--large-gib", type=float, default=1.0)
    # What the scenarios borrowed from bench_service and bench_startup read.
    parser.add_argument("--quiet", type=float, default=1.0, help="quiet period for latency, writers")
    parser.add_argument("--drops", type=int, default=200)
    parser.add_argument("--writers", type=int, default=12, help="sessions written at once (writers)")
    parser.add_argument("--writer-files", type=int, default=3, help="files per session (writers)")
    parser.add_argument("--writer-rows", type=int, default=20_000, help="CSV rows per file (writers)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of concurrent writers (writers)")
    parser.add_argument("--burst-files", dest="burst_files", type=int, default=50_000)
    parser.add_argument("--burst-sessions", dest="burst_sessions", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the start-up figures (best kept)")
    parser.add_argument(
        "--compile-every-start",
        dest="cached_bytecode",
        action="store_false",
        help="keep PYTHONDONTWRITEBYTECODE if set (default: bytecode cached, as an installed agent has it)",
    )
    scenarios: dict[str, Scenario] = {
        "csv": bench_csv,
        "binary": bench_binary,
        "large": bench_large_end_to_end,
        "startup": lambda args: bench_version(args) + bench_empty_scan(args),
        "latency": bench_latency,
        "writers": bench_writers,
        "burst": _burst,
    }
    return run_scenarios(parser, scenarios)


def _burst(args: argparse.Namespace) -> list[tuple[str, bool]]:
    # bench_service's burst reads --files and --sessions; here those name the csv and binary trees.
    sized = {**vars(args), "files": args.burst_files, "sessions": args.burst_sessions}
    return bench_burst(argparse.Namespace(**sized))


# --- data --------------------------------------------------------------------------------------


def instrument_file(n: int) -> tuple[str, bytes]:
    return f"read-{n:06d}.csv", instrument_csv(n)


def binary_file(n: int) -> tuple[str, bytes]:
    return f"frame-{n:06d}.raw", os.urandom(4096)


# --- baselines ---------------------------------------------------------------------------------


def sha256sum_files_per_s(root: Path, n: int) -> float:
    start = time.perf_counter()
    subprocess.run(f"find {root} -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True, check=True)
    return n / (time.perf_counter() - start)


def file_creation_files_per_s(root: Path, files: int, sessions: int) -> float:
    """Files of a sidecar's size created as a durable writer must: temp file, one syncfs per 100
    files, renames. Nothing else: no hashing, no reading, no ledger."""
    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    data = os.urandom(SIDECAR_BYTES)
    per = files // sessions
    folders = [root / f"s{s:04d}" for s in range(sessions)]
    for folder in folders:
        folder.mkdir(parents=True)
    start = time.perf_counter()
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(per):
                tmp = os.open(f".f{i}.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
                os.write(tmp, data)
                os.close(tmp)
            syncfs(fd)
            for i in range(per):
                os.replace(f".f{i}.tmp", f"f{i}.fair.json", src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    return per * sessions / (time.perf_counter() - start)


def lean_python_pipeline(paths: list[Path], root: Path) -> tuple[float, float]:
    """The lean pipeline of the module's text over ``paths`` (grouped by their folder, a session
    each); sidecars and the database go under ``root``, not beside the files, which the agent
    scans next. Its files per second, and its CPU (user and system) per file in seconds."""
    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    root.mkdir(parents=True)
    database = sqlite3.connect(root / "ledger.sqlite3", isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute(
        "CREATE TABLE files (relpath TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT,"
        " sidecar TEXT)"
    )
    sessions: dict[Path, list[Path]] = {}
    for path in paths:
        sessions.setdefault(path.parent, []).append(path)
    cpu_before, start = time.process_time(), time.perf_counter()
    for folder, files in sessions.items():
        out = root / folder.name
        out.mkdir()
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            rows, renames = [], []
            for path in files:
                stat = os.stat(path)
                with open(path, "rb", buffering=0) as f:
                    sha256 = hashlib.sha256(f.read()).hexdigest()
                sidecar = _lean_sidecar(path.name, folder.name, stat, sha256)
                temp = f".{path.name}.tmp"
                handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
                os.write(handle, orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
                os.close(handle)
                renames.append((temp, f"{path.name}.fair.json"))
                rows.append(
                    (
                        f"{folder.name}/{path.name}",
                        stat.st_size,
                        stat.st_mtime_ns,
                        sha256,
                        orjson.dumps(sidecar).decode(),
                    )
                )
            syncfs(fd)
            for temp, final in renames:
                os.replace(temp, final, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        with database:
            database.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)", rows)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_before
    database.close()
    return len(paths) / seconds, cpu / len(paths)


def _lean_sidecar(name: str, session: str, stat: os.stat_result, sha256: str) -> dict[str, object]:
    # The fields a sidecar of a file no extractor claims holds, in their shape.
    return {
        "@context": "https://w3id.org/ro/crate/1.2/context",
        "@id": name,
        "@type": "File",
        "name": name,
        "contentSize": str(stat.st_size),
        "encodingFormat": "application/octet-stream",
        "sha256": sha256,
        "dateModified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
        "session": session,
        "metadata": {"format": {"mediaType": "application/octet-stream", "detectedBy": "extension"}},
        "validation": {"status": "valid", "rule": "generic"},
        "warnings": [],
        "generatedBy": {"@type": "SoftwareApplication", "name": "fair-agent"},
    }


def agent_scan_seconds(
    drop: Path, state: Path, args: argparse.Namespace, tree: Path = REPO
) -> tuple[float, float]:
    """``fair-agent scan`` as a user runs it, start-up included (its modules' bytecode cached, as
    pip leaves an installed package, unless --compile-every-start): its wall-clock seconds, and
    the CPU seconds (user and system) of the agent and its extraction workers together. ``tree``:
    the checkout whose agent runs (bench_compare runs another revision's)."""
    environment = bytecode_environment(args)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), environment.get("PYTHONPATH")]))
    # A scan of nothing first, so that what the timed scan imports is compiled already.
    (state.parent / "empty").mkdir(exist_ok=True)
    warm_up = [sys.executable, "-m", "agent.cli", "scan", str(state.parent / "empty")]
    subprocess.run(
        [*warm_up, "--state-dir", str(state.parent / "empty-state")],
        cwd=tree,
        check=True,
        env=environment,
        capture_output=True,
    )
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "agent.cli", "scan", str(drop), "--state-dir", str(state)],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    return time.perf_counter() - start, _children_cpu_seconds() - cpu_before


def _children_cpu_seconds() -> float:
    # The agent waits for its workers when it stops, so their time is counted in the agent's.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- scenarios ---------------------------------------------------------------------------------


def _small_files(args: argparse.Namespace, kind: str, target: float) -> list[tuple[str, bool]]:
    root = args.dir / kind
    shutil.rmtree(root, ignore_errors=True)
    file_for = instrument_file if kind == "csv" else binary_file
    paths = make_small_tree(root / "drop", args.files, args.sessions, file_for)
    n = len(paths)
    os.sync()
    warm(paths)
    hashing = sha256sum_files_per_s(root / "drop", n)
    creating = file_creation_files_per_s(root / "created", n, args.sessions)
    lean, lean_cpu = lean_python_pipeline(paths, root / "lean")
    seconds, cpu = agent_scan_seconds(root / "drop", root / "state", args)
    rate = n / seconds
    cores = len(os.sched_getaffinity(0))
    what = "instrument CSVs" if kind == "csv" else "binary files no extractor claims"
    print(f"\n{n} x 4 KiB {what} in {args.sessions} sessions, warm cache, default settings")
    print(f"  sha256sum over the tree (read and hash only)       {hashing:8.0f} files/s")
    print(f"  creating {n} sidecar-sized files durably (only)  {creating:8.0f} files/s")
    print(
        f"  a lean Python pipeline, one thread (no extraction) {lean:8.0f} files/s  "
        f"({lean_cpu * 1e6:.0f} µs CPU per file)"
    )
    print(f"  fair-agent scan, end to end, durable               {rate:8.0f} files/s  ({seconds:.2f} s)")
    # What the CPU allows: the scan's CPU time per file, spread over every core without a gap.
    print(
        f"  CPU per file (agent and extraction workers)        {cpu / n * 1e6:8.0f} µs: at most "
        f"{n * cores / cpu:.0f} files/s on {cores} cores, {cpu / (seconds * cores):.0%} of them used; "
        f"{cpu / n / lean_cpu:.1f} times the lean pipeline's"
    )
    return [
        (
            f"{kind}: {rate:.0f} files/s >= {target:.0f} (file creation alone: {creating:.0f} files/s)",
            rate >= target,
        )
    ]


def bench_csv(args: argparse.Namespace) -> list[tuple[str, bool]]:
    return _small_files(args, "csv", 3000)


def bench_binary(args: argparse.Namespace) -> list[tuple[str, bool]]:
    return _small_files(args, "binary", 5000)


def bench_large_end_to_end(args: argparse.Namespace) -> list[tuple[str, bool]]:
    root = args.dir / "large-e2e"
    paths = make_large_tree(root, args)
    size = int(args.large_gib * GiB)
    total = size * len(paths)
    cores = os.cpu_count() or 1
    os.sync()  # the agent's durable writes would otherwise flush the new files' pages in its time
    warm(paths)
    ceiling = hashlib_ceiling(paths, cores)
    seconds, _ = agent_scan_seconds(root / "drop", root / "state", args)

    def mbps(seconds: float) -> float:
        return total / 1e6 / seconds

    print(f"\nLarge files: {len(paths)} x {size / GiB:.2f} GiB, {cores} cores, warm cache")
    print(f"  hashlib ceiling ({cores} threads)             {mbps(ceiling):8.0f} MB/s")
    print(
        f"  fair-agent scan, end to end with start-up  {mbps(seconds):8.0f} MB/s  "
        f"= {ceiling / seconds:.1%} of the ceiling"
    )
    return [
        (
            f"large: {mbps(seconds):.0f} MB/s end to end = {ceiling / seconds:.1%} of hashlib's "
            f"{mbps(ceiling):.0f} MB/s (>= 85%)",
            seconds <= ceiling / 0.85,
        )
    ]


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks for the extractors, each beside a baseline measured in the same run.

table  profile a generated 2 GB CSV (vendor header block + 12 numeric columns) with the tabular
       extractor, in a subprocess: peak RSS (target <= 300 MB) and MB/s, beside plain
       `pandas.read_csv(..., chunksize=...)` iterating the same file.
csv4k  extract N (default 2000) generated 4 KiB instrument CSVs (a vendor `key: value` block, then
       a numeric table): CPU µs per file on the sample path (pure Python, target <= 150 µs),
       beside the pandas path on the same files, with the same metadata.
lag    the event loop's worst lag while `scan` ingests the corpus (every extractor runs), beside
       the same loop idling: extractors run in threads, so the loop must stay responsive.

  python bench/bench_extract.py                 # all, 2 GB table
  python bench/bench_extract.py table --gb 0.2
  python bench/bench_extract.py csv4k --files 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from benchkit import run_scenarios, write_repeated  # noqa: E402  (bench/ is the script folder, on sys.path)

CORPUS = REPO.parent / "shared" / "corpus"
sys.path.insert(0, str(REPO))

CHILD = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
path = Path({path!r})
start = time.perf_counter()
if {mode!r} == "agent":
    from agent.extractors import Budget, Source
    from agent.extractors.tabular import TabularExtractor
    meta = TabularExtractor().extract(Source(path, path.name, path.parent), Budget(3600))
    rows = meta["rowCount"]
else:
    import pandas as pd
    rows = 0
    for chunk in pd.read_csv(path, skiprows={skip}, chunksize=50_000):
        rows += len(chunk)
elapsed = time.perf_counter() - start
print(rows, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=2.0, help="size of the generated CSV")
    parser.add_argument("--files", type=int, default=2000, help="4 KiB CSVs for csv4k")
    return run_scenarios(parser, {"table": bench_table, "csv4k": bench_csv4k, "lag": bench_lag})


def make_csv(path: Path, size: int) -> int:
    header = (
        "Application: PlateMaster Control,,,V4.1.2\nDevice: PlateMaster Nova,Serial number: PMN-1\n"
        "Date: 14/03/2026\nTime: 9:41 AM\n\n"
        "Cycle,Time [s],Temperature [°C]," + ",".join(f"W{i}" for i in range(9)) + "\n"
    )
    rng = random.Random(0)
    rows = "".join(
        f"{i},{i * 600},{37 + rng.uniform(-0.1, 0.1):.2f},"
        + ",".join(f"{rng.uniform(0, 2):.4f}" for _ in range(9))
        + "\n"
        for i in range(20_000)
    ).encode()
    return write_repeated(path, header, rows, size)


def run_child(mode: str, path: Path) -> tuple[int, float, float]:
    code = CHILD.format(repo=str(REPO), path=str(path), mode=mode, skip=5)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def bench_table(args: argparse.Namespace) -> list[tuple[str, bool]]:
    path = args.dir / "big.csv"
    size = make_csv(path, int(args.gb * 1e9))
    with path.open("rb") as f:  # warm cache, so both runs read from memory
        while f.read(8 << 20):
            pass
    base_rows, base_s, base_rss = run_child("pandas", path)
    rows, seconds, rss = run_child("agent", path)
    mb = size / 1e6
    print(f"\nTable profile: {mb:.0f} MB CSV, {rows} rows, warm cache")
    print(f"  pandas.read_csv in chunks (baseline)   {mb / base_s:7.1f} MB/s  peak RSS {base_rss:6.1f} MB")
    print(
        f"  fair-agent tabular extractor           {mb / seconds:7.1f} MB/s  peak RSS {rss:6.1f} MB "
        f"({base_s / seconds:.0%} of the baseline's speed)"
    )
    return [
        (f"table: peak RSS {rss:.0f} MB <= 300 MB profiling a {mb:.0f} MB CSV", rss <= 300),
        (
            f"table: {mb / seconds:.0f} MB/s (baseline pandas chunks {mb / base_s:.0f} MB/s), rows agree",
            rows == base_rows,
        ),
    ]


def instrument_csv(i: int, size: int = 4096) -> bytes:
    """A plate reader's export of about ``size`` bytes: its vendor block, then time, temperature
    and two optical densities."""
    rng = random.Random(i)
    head = (
        f"Device: Spark 10M\nSerial number: 15{i:05d}\nFirmware: V2.1{i % 7}\nOperator: ana\n"
        f"Date: 2024-03-{1 + i % 28:02d}\nTime: 10:{i % 60:02d}:12\nMode: Absorbance\n\n"
        "Time [s],Temperature [°C],OD600,OD700\n"
    )
    rows, written, t = [], len(head.encode()), 0
    while True:
        row = f"{t},{25 + rng.random():.2f},{rng.random():.4f},{rng.random():.4f}\n"
        if written + len(row) > size:
            break
        rows.append(row)
        written += len(row)
        t += 30
    return (head + "".join(rows)).encode()


def bench_csv4k(args: argparse.Namespace) -> list[tuple[str, bool]]:
    from agent.extractors import Budget, Source
    from agent.extractors.tabular import TabularExtractor

    folder = args.dir / "csv4k"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.files):
        path = folder / f"read-{i:05d}.csv"
        path.write_bytes(instrument_csv(i))
        paths.append(path)
    sources = [Source(p, p.name, p.parent) for p in paths]

    def run(extractor: TabularExtractor) -> tuple[float, list[object]]:
        extractor.extract(sources[0], Budget(60))  # imports (pandas) and caches are not the files'
        start = time.process_time()
        results: list[object] = [extractor.extract(source, Budget(60)) for source in sources]
        return (time.process_time() - start) / len(sources) * 1e6, results

    base_us, base_results = run(TabularExtractor(from_sample=False))
    us, results = run(TabularExtractor())
    same = results == base_results
    print(f"\n4 KiB instrument CSVs: {len(paths)} files, CPU time of TabularExtractor.extract per file")
    print(f"  pandas path (baseline)          {base_us:7.0f} µs")
    print(
        f"  sample path (pure Python)       {us:7.0f} µs  ({base_us / us:.1f}x faster; same metadata: {same})"
    )
    return [
        (
            f"csv4k: {us:.0f} µs per 4 KiB CSV <= 150 µs (pandas path {base_us:.0f} µs), same metadata",
            us <= 150 and same,
        )
    ]


async def _lag_during(work: object, interval: float = 0.005) -> list[float]:
    """Every overshoot of a 5 ms timer while ``work`` runs, sorted."""
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(interval)
            lags.append(time.perf_counter() - start - interval)

    task = asyncio.create_task(monitor())
    try:
        await work  # type: ignore[misc]
    finally:
        done.set()
        await task
    return sorted(lags)


def _summary(lags: list[float]) -> str:
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return (
        f"p50 {lags[len(lags) // 2] * 1000:5.1f} ms  p99 {p99 * 1000:5.1f} ms  max {lags[-1] * 1000:6.1f} ms"
    )


def bench_lag(args: argparse.Namespace) -> list[tuple[str, bool]]:
    from agent.core.config import load_config
    from agent.ledger import Ledger
    from agent.service.scan import scan

    if not CORPUS.is_dir():
        print("\nLag: corpus not found, skipped")
        return []
    drop = args.dir / "corpus"
    shutil.copytree(CORPUS / "instruments", drop / "instruments")
    shutil.copytree(CORPUS / "eln", drop / "eln")
    for p in drop.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)

    async def ingest() -> None:
        state = Path(tempfile.mkdtemp(dir=args.dir))
        config = load_config(None, overrides={"state_dir": state})
        async with Ledger.open(config.ledger_path) as ledger:
            for root in ("instruments", "eln"):
                report = await scan(drop / root, config, ledger)
                assert report.ok, report

    idle = asyncio.run(_lag_during(asyncio.sleep(2.0)))
    busy = asyncio.run(_lag_during(ingest()))
    print("\nEvent-loop lag (how late a 5 ms timer fires)")
    print(f"  idle loop (baseline)                  {_summary(idle)}")
    print(f"  scan of the corpus, every extractor   {_summary(busy)}")
    worst = (
        f"lag: worst {busy[-1] * 1000:.0f} ms while extracting the corpus "
        f"(idle worst {idle[-1] * 1000:.1f} ms)"
    )
    return [(worst, busy[-1] < 0.25)]


if __name__ == "__main__":
    sys.exit(main())

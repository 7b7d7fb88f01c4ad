"""Benchmark of derived tables (a rule's [transform]), beside a baseline measured in the same run.

table  `fair-agent scan` of one generated 2 GB plate-reader CSV (vendor header block, cycle, time,
       temperature and 24 wells, a missed read now and then) under a rule that converts time to
       minutes and temperature to kelvin, types the wells as numbers and interpolates their gaps,
       writing `<file>.tidy.parquet`: peak RSS of the agent and its extraction workers (target
       <= 300 MB) and MB/s, beside `pandas.read_csv(..., chunksize=50_000)` with each chunk written
       by a `pyarrow.parquet.ParquetWriter` (the same data, no conversions) in one process.
       The agent reads the file three times (hash, profile, derive); the baseline once.

  python bench/bench_transform.py               # 2 GB
  python bench/bench_transform.py --gb 0.2
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from benchkit import REPO, run_scenarios, write_repeated

WELLS = [f"{row}{col}" for row in "AB" for col in range(1, 13)]
RULE = """
match = ["EXP-*/*.csv"]
extractor = "tabular"
dataset_type = "bench-plate"

[transform]
format = "parquet"
[transform.columns."Time [s]"]
name = "time"
unit = "min"
[transform.columns."Temperature [°C]"]
name = "temperature"
unit = "K"
[transform.columns."re:[A-P]([1-9]|1[0-9]|2[0-4])"]
type = "number"
missing = "interpolate"
"""
BASELINE = """
import resource, sys, time
import pandas as pd, pyarrow as pa, pyarrow.parquet as pq
start = time.perf_counter()
rows, writer = 0, None
for chunk in pd.read_csv(sys.argv[1], skiprows=5, chunksize=50_000):
    table = pa.Table.from_pandas(chunk, preserve_index=False)
    writer = writer or pq.ParquetWriter(sys.argv[2], table.schema)
    writer.write_table(table)
    rows += len(chunk)
writer.close()
print(rows, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
#: Runs a command and reports its peak RSS, counting its child processes (the extraction workers).
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(code.returncode, time.perf_counter() - start, peak)
print(code.stderr[-2000:], file=sys.stderr)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=2.0, help="size of the generated CSV")
    return run_scenarios(parser, {"table": bench_table})


def make_plate_csv(path: Path, size: int) -> int:
    """A plate reader's kinetics export of about ``size`` bytes; one well read in 997 is missing."""
    header = (
        "Application: PlateMaster Control,,,V4.1.2\nDevice: PlateMaster Nova,Serial number: PMN-1\n"
        "Date: 14/03/2026\nTime: 9:41 AM\n\n"
        "Cycle,Time [s],Temperature [°C]," + ",".join(WELLS) + "\n"
    )
    rng = random.Random(0)
    block = []
    for i in range(20_000):
        wells = [f"{rng.uniform(0, 2):.4f}" if rng.randrange(997) else "" for _ in WELLS]
        block.append(f"{i + 1},{i * 60},{37 + rng.uniform(-0.1, 0.1):.2f}," + ",".join(wells) + "\n")
    rows = "".join(block).encode()
    return write_repeated(path, header, rows, size)


def bench_table(args: argparse.Namespace) -> list[tuple[str, bool]]:
    lab = args.dir / "lab"
    path = lab / "EXP-000001_bench" / "kinetics.csv"
    size = make_plate_csv(path, int(args.gb * 1e9))
    rules = args.dir / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "plate.toml").write_text(RULE, encoding="utf-8")
    with path.open("rb") as f:  # warm cache, so every run reads from memory
        while f.read(8 << 20):
            pass
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, str(path), str(args.dir / "baseline.parquet")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    base_rows, base_s, base_rss = int(out[0]), float(out[1]), float(out[2])
    (args.dir / "baseline.parquet").unlink()

    agent = [
        sys.executable,
        "-m",
        "agent.cli",
        "scan",
        str(lab),
        "--rules",
        str(rules),
        "--state-dir",
        str(args.dir / "state"),
    ]
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", MEASURE, *agent], capture_output=True, text=True, cwd=REPO)
    code, seconds, rss = run.stdout.split()[:3]
    seconds, rss = float(seconds), float(rss)
    sidecar = json.loads(path.with_name(path.name + ".fair.json").read_text(encoding="utf-8"))
    derived = sidecar.get("derived", {})
    mb = size / 1e6
    print(f"\nDerived table: {mb:.0f} MB CSV, {base_rows:,} rows, warm cache")
    print(
        f"  pandas chunks + ParquetWriter (baseline)  {mb / base_s:6.1f} MB/s  {base_s:6.1f} s  "
        f"peak RSS {base_rss:6.1f} MB"
    )
    print(
        f"  fair-agent scan, [transform] to Parquet    {mb / seconds:6.1f} MB/s  {seconds:6.1f} s  "
        f"peak RSS {rss:6.1f} MB (agent or a worker, whichever is larger)"
    )
    imputed = sum(c.get("imputed", {}).get("count", 0) for c in derived.get("columns", []))
    print(f"  derived rows {derived.get('rows', 0):,}, values imputed {imputed:,}, exit status {code}")
    if not derived:
        print(f"  no derived table; warnings: {sidecar.get('warnings')}\n{run.stderr}")
    print(f"  (whole run {time.perf_counter() - started:.1f} s)")
    return [
        (f"table: peak RSS {rss:.0f} MB <= 300 MB deriving a {mb:.0f} MB CSV", rss <= 300 and code == "0"),
        (
            f"table: derived rows {derived.get('rows', 0):,} = the baseline's {base_rows:,}",
            derived.get("rows") == base_rows,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())

"""Shipping to object storage (issue 14) against a real SeaweedFS on loopback, beside boto3's own
managed transfer of the same files to the same server in the same run.

Scenarios (data under --dir, removed afterwards unless --keep):

  large   4 x 256 MiB. Baseline: boto3 ``upload_file`` of each file (TransferConfig with the
          agent's concurrency and part size). Agent: the shipper draining the outbox. Target: the
          agent's data objects at >= 80% of the baseline's throughput.
  small   5,000 files of 64 KiB in 50 sessions. Baseline: ``upload_file`` from as many threads as
          the agent's concurrency. Agent: as above. Target >= 80%.
  memory  peak RSS of ``fair-agent ship`` shipping one 4 GiB file: <= 150 MB.
  backlog a week's backlog of 100,000 files: what the outbox adds to the ledger per file (target:
          kilobytes, not more), and the Python memory of reading all of it the shipper's way (a
          page at a time), which must not grow with the backlog.

Each side ships into its own new bucket (the agent must not find the baseline's objects). The
agent's figure is for its data objects (HEAD, checksummed PUT or parts, the ledger's bookkeeping);
the sessions' documents (sidecars, crates) that follow are timed and printed apart. The files are
ingested first (a scan without [store]); the shipper then finds them in the ledger. Settings: the
user's defaults ([store] part_size_mib 64, concurrency 4).

    python bench/bench_ship.py
    python bench/bench_ship.py small --small-files 1000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit import REPO, Scenario, peak_rss_mb, run_scenarios

sys.path.insert(0, str(REPO))

from agent.core.batch import FileStat
from agent.core.config import AgentConfig, StoreSettings
from agent.core.records import FileRecord
from agent.ledger import BatchCommit, Ledger
from agent.service.scan import scan
from agent.ship.credentials import Credentials
from agent.ship.shipper import PAGE, Shipper
from tests.s3server import S3Server

MiB = 1 << 20


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--small-files", type=int, default=5000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--memory-gib", type=float, default=4.0)
    parser.add_argument("--backlog-files", type=int, default=100_000)
    scenarios: dict[str, Scenario] = {
        "large": bench_large,
        "small": bench_small,
        "memory": bench_memory,
        "backlog": bench_backlog,
    }
    return run_scenarios(parser, scenarios)


class _Server:
    """One SeaweedFS for the whole run."""

    server: S3Server | None = None

    @classmethod
    def get(cls, args: argparse.Namespace) -> S3Server:
        if cls.server is None:
            cls.server = S3Server(args.dir / "s3server")
            cls.server.start()
        return cls.server

    @classmethod
    def stop(cls) -> None:
        if cls.server is not None:
            cls.server.stop()
            cls.server = None


def store_settings(server: S3Server, bucket: str) -> StoreSettings:
    return StoreSettings(endpoint=server.endpoint_url, bucket=bucket)


def boto3_upload(
    server: S3Server, bucket: str, files: list[Path], drop: Path, settings: StoreSettings
) -> float:
    from boto3.s3.transfer import TransferConfig

    client = server.client(max_pool_connections=settings.concurrency + 2)
    transfer = TransferConfig(
        multipart_threshold=settings.part_size,
        multipart_chunksize=settings.part_size,
        max_concurrency=settings.concurrency,
    )
    started = time.perf_counter()
    if len(files) <= settings.concurrency:
        for path in files:
            client.upload_file(str(path), bucket, path.relative_to(drop).as_posix(), Config=transfer)
    else:
        with ThreadPoolExecutor(settings.concurrency) as pool:
            list(
                pool.map(
                    lambda p: client.upload_file(
                        str(p), bucket, p.relative_to(drop).as_posix(), Config=transfer
                    ),
                    files,
                )
            )
    return time.perf_counter() - started


async def agent_ship(server: S3Server, bucket: str, drop: Path, state: Path) -> tuple[float, float, int]:
    """(seconds for the data objects, seconds for the documents after them, files stored)."""
    shutil.rmtree(state, ignore_errors=True)
    config = AgentConfig(state_dir=state, agent_name="bench", store=store_settings(server, bucket))
    credentials = Credentials(server.access_key, server.secret_key, "bench")
    async with Ledger.open(config.ledger_path) as ledger:
        await scan(drop, config.model_copy(update={"store": None}), ledger)
        await ledger.outbox.enqueue_unshipped()
        shipper = Shipper(config, ledger, credentials=credentials)
        try:
            started = time.perf_counter()
            await shipper._ship_files(probe=False)
            data_s = time.perf_counter() - started
            started = time.perf_counter()
            await shipper._ship_documents()
            documents_s = time.perf_counter() - started
        finally:
            shipper.close()
        return data_s, documents_s, shipper.stats.files


def compare(args: argparse.Namespace, name: str, files: list[Path], drop: Path) -> list[tuple[str, bool]]:
    server = _Server.get(args)
    total = sum(p.stat().st_size for p in files)
    settings = store_settings(server, "defaults")
    baseline_s = boto3_upload(server, server.make_bucket(f"baseline-{name}"), files, drop, settings)
    data_s, docs_s, stored = asyncio.run(
        agent_ship(server, server.make_bucket(f"agent-{name}"), drop, args.dir / f"state-{name}")
    )
    assert stored == len(files), (stored, len(files))
    mbps = total / 1e6
    ratio = baseline_s / data_s
    print(f"\n{name}: {len(files)} files, {total / MiB:.0f} MiB, concurrency {settings.concurrency}")
    for label, seconds in (("boto3 upload_file (baseline)", baseline_s), ("agent, data objects", data_s)):
        rate = f"{mbps / seconds:8.1f} MB/s  {len(files) / seconds:8.0f} files/s"
        print(f"  {label:30} {seconds:7.2f} s  {rate}")
    print(f"  agent, then the documents      {docs_s:7.2f} s  (sidecars, crates, previews)")
    print(f"  agent / baseline               {ratio:7.1%}")
    return [(f"{name}: agent at {ratio:.0%} of boto3's managed transfer (>= 80%)", ratio >= 0.8)]


def bench_large(args: argparse.Namespace) -> list[tuple[str, bool]]:
    drop = args.dir / "large"
    shutil.rmtree(drop, ignore_errors=True)
    files = []
    for i in range(args.large_files):
        path = drop / f"run-{i}" / "stack.raw"
        path.parent.mkdir(parents=True)
        _random_file(path, args.large_mib * MiB)
        files.append(path)
    return compare(args, "large", files, drop)


def bench_small(args: argparse.Namespace) -> list[tuple[str, bool]]:
    drop = args.dir / "small"
    shutil.rmtree(drop, ignore_errors=True)
    files = []
    for i in range(args.small_files):
        path = drop / f"session-{i % 50:02d}" / f"frame-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(args.small_kib * 1024))
        files.append(path)
    return compare(args, "small", files, drop)


def bench_memory(args: argparse.Namespace) -> list[tuple[str, bool]]:
    server = _Server.get(args)
    drop = args.dir / "memory"
    shutil.rmtree(drop, ignore_errors=True)
    path = drop / "run" / "volume.raw"
    path.parent.mkdir(parents=True)
    _random_file(path, int(args.memory_gib * 1024) * MiB)
    state = args.dir / "state-memory"
    asyncio.run(_ingest_only(drop, state))
    credentials = args.dir / "memory.credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id={server.access_key}\naws_secret_access_key={server.secret_key}\n"
    )
    credentials.chmod(0o600)
    config = args.dir / "memory.toml"
    bucket = server.make_bucket("agent-memory")
    config.write_text(
        f'state_dir = "{state}"\n[store]\nendpoint = "{server.endpoint_url}"\nbucket = "{bucket}"\n'
        f'credentials_file = "{credentials}"\n'
    )
    started = time.perf_counter()
    rss = peak_rss_mb([sys.executable, "-m", "agent.cli", "ship", "--config", str(config)])
    took = time.perf_counter() - started
    size = path.stat().st_size
    print(
        f"\nmemory: one {size / MiB / 1024:.1f} GiB file shipped by `fair-agent ship` in {took:.1f} s "
        f"({size / 1e6 / took:.0f} MB/s), peak RSS {rss:.0f} MB"
    )
    return [(f"memory: peak RSS {rss:.0f} MB shipping {size / MiB / 1024:.1f} GiB (<= 150 MB)", rss <= 150)]


def bench_backlog(args: argparse.Namespace) -> list[tuple[str, bool]]:
    without = asyncio.run(_ledger_of(args.dir / "state-plain", args.backlog_files, ship=False))
    with_outbox = asyncio.run(_ledger_of(args.dir / "state-outbox", args.backlog_files, ship=True))
    per_file = (with_outbox - without) / args.backlog_files
    peak_small = asyncio.run(_page_through(args.dir / "state-outbox", args.backlog_files // 10))
    peak_all = asyncio.run(_page_through(args.dir / "state-outbox", args.backlog_files))
    print(f"\nbacklog: {args.backlog_files} files waiting")
    print(f"  ledger without an outbox       {without / 1e6:8.1f} MB")
    print(f"  ledger with the outbox         {with_outbox / 1e6:8.1f} MB  ({per_file:.0f} bytes a file)")
    for count, peak in ((args.backlog_files // 10, peak_small), (args.backlog_files, peak_all)):
        print(f"  reading {count:>7} of them, page by page: Python peak {peak / 1e6:.2f} MB")
    return [
        (f"backlog: the outbox costs {per_file:.0f} bytes a file in the ledger (<= 4 KiB)", per_file <= 4096),
        (
            f"backlog: paging through {args.backlog_files} files peaks at {peak_all / 1e6:.2f} MB, "
            f"{peak_small / 1e6:.2f} MB for a tenth (memory does not follow the backlog)",
            peak_all <= 2 * peak_small + 1e6,
        ),
    ]


async def _ledger_of(state: Path, files: int, *, ship: bool) -> int:
    """Size of a ledger holding ``files`` ingested files in 1,000-file batches (queued: ``ship``)."""
    shutil.rmtree(state, ignore_errors=True)
    config = AgentConfig(state_dir=state)
    entity = '{"@id": "x", "@type": "File"}'
    async with Ledger.open(config.ledger_path) as ledger:
        root = await ledger.ensure_root(state.parent / "backlog-root", "instrument")
        for start in range(0, files, 1000):
            session = f"session-{start // 1000:04d}"
            records = [
                FileRecord(
                    stat=FileStat(f"{session}/frame-{n:06d}.tif", 4_000_000, 1_700_000_000_000_000_000, n, 0),
                    session=session,
                    sha256=hashlib.sha256(str(n).encode()).hexdigest(),
                    encoding_format="image/tiff",
                    batch_id=f"batch-{start}",
                    sequence=n - start,
                    version=1,
                )
                for n in range(start, min(files, start + 1000))
            ]
            entities = {r.relpath: entity for r in records}
            await ledger.commit_batch(
                BatchCommit(root, session, f"batch-{start}", records, entities, [], [], ship=ship)
            )
    # Closed: the last connection checkpoints the WAL into the database file.
    return await asyncio.to_thread(_size, state, config.ledger_path.name)


def _size(state: Path, name: str) -> int:
    return sum(p.stat().st_size for p in state.glob(name + "*"))


async def _page_through(state: Path, limit: int) -> int:
    """Python's peak memory while reading ``limit`` pending shipments as the shipper does."""
    config = AgentConfig(state_dir=state)
    async with Ledger.open(config.ledger_path) as ledger:
        tracemalloc.start()
        cursor, seen = 0, 0
        while seen < limit and (page := await ledger.outbox.pending(PAGE, cursor)):
            cursor, seen = page[-1].id, seen + len(page)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


async def _ingest_only(drop: Path, state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
    config = AgentConfig(state_dir=state, agent_name="bench")
    async with Ledger.open(config.ledger_path) as ledger:
        await scan(drop, config, ledger)


def _random_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(MiB))
    with path.open("wb") as f:
        for index in range(size // MiB):
            block[:8] = index.to_bytes(8, "little")
            f.write(block)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        _Server.stop()

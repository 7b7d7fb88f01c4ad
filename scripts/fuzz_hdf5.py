"""Find HDF5 inputs that crash or hang libhdf5, for the isolation tests' fixtures.

    python scripts/fuzz_hdf5.py [--tries 2000] [--seed 1] [--out tests/fixtures/hdf5]

Builds a small NeXus file with h5py (an NXentry with title, times, an instrument, a sample and a
data array), then mutates 1 to 32 random bytes of it, again and again, and reads each mutant with
the agent's HDF5 extractor through the isolation boundary (a worker process with hard limits).
A mutant that ends its worker with a signal (a crash) or is stopped at the wall-clock limit while
libhdf5 holds the GIL (a hang) is written to --out as crash-<signal>-<n>.nxs or hang-<n>.nxs, until
one of each is found (kinds already there are not looked for again). The base file is written there
too, as base.nxs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.extractors.base import ExtractionError, ExtractionTimeout  # noqa: E402
from agent.extractors.hdf5 import Hdf5Extractor  # noqa: E402
from agent.extractors.isolation import IsolatedParsers, ParserCrashedError  # noqa: E402


def build_base(path: Path, *, dense: bool = False) -> bytes:
    """The NeXus file to mutate. ``dense``: the newest file format, with enough attributes per
    group that libhdf5 keeps them in fractal heaps and B-trees (more structure to get lost in)."""
    with h5py.File(path, "w", libver="latest" if dense else "earliest") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["creator"] = "fair-agent fuzz base"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "in-situ scan 17"
        entry["start_time"] = "2026-03-14T09:41:00+01:00"
        entry["end_time"] = "2026-03-14T10:12:30+01:00"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument["name"] = "Empyrean"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["name"] = "LiFePO4 cathode"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.create_dataset("counts", data=np.arange(2048, dtype="<i4"), chunks=(256,), compression="gzip")
        data["two_theta"] = np.linspace(10, 80, 512)
        # Attributes of many kinds on every group: libhdf5's attribute code is where damage bites.
        for group in (f, entry, instrument, sample, data):
            group.attrs["note"] = "a variable-length string"
            group.attrs["labels"] = np.array([b"alpha", b"beta", b"gamma"], dtype=h5py.string_dtype())
            group.attrs["vector"] = np.arange(16, dtype="<f8")
            group.attrs["fixed"] = np.bytes_("fixed-width")
            for n in range(24 if dense else 0):
                group.attrs[f"extra_{n}"] = f"value {n}"
    return path.read_bytes()


def mutate(base: bytes, rng: random.Random) -> bytes:
    """1 to 32 random bytes; or, half the time, an 8-byte address replaced by another plausible one
    (an offset inside the file), which makes the cycles in trees and heaps that loop a parser."""
    data = bytearray(base)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(0, len(data) - 8, 8)
            data[at : at + 8] = rng.randrange(0, len(data), 8).to_bytes(8, "little")
        return bytes(data)
    for _ in range(rng.randint(1, 32)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def keep(found: dict[str, Path], kind: str, path: Path, data: bytes) -> None:
    """The first mutant of each kind becomes a fixture."""
    if kind not in found:
        path.write_bytes(data)
        found[kind] = path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="time limit per mutant")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "hdf5")
    parser.add_argument("--dense", action="store_true", help="mutate a file of the newest format")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = build_base(args.out / ("base-dense.nxs" if args.dense else "base.nxs"), dense=args.dense)
    rng = random.Random(args.seed)
    pool = IsolatedParsers(2, 1 << 30)
    extractor = Hdf5Extractor()
    # Fixtures found by an earlier run are kept: a run looks only for the kinds still missing.
    found = {kind: path for kind in ("crash", "hang") for path in sorted(args.out.glob(f"{kind}-*.nxs"))[:1]}
    counts = {"ok": 0, "refused": 0, "crash": 0, "hang": 0}
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(args.tries):
            mutant = mutate(base, rng)
            path = Path(scratch) / "mutant.nxs"
            path.write_bytes(mutant)
            fd = os.open(path, os.O_RDONLY)
            try:
                pool.extract(extractor, fd, path.name, path.parent, args.seconds)
                counts["ok"] += 1
            except ParserCrashedError as exc:
                if "CPU time" in str(exc):  # looped until the kernel stopped it: a hang
                    counts["hang"] += 1
                    keep(found, "hang", args.out / f"hang-{n}.nxs", mutant)
                    continue
                counts["crash"] += 1
                signal_name = str(exc).split("(")[1].split(")")[0] if "crashed (" in str(exc) else "exit"
                keep(found, "crash", args.out / f"crash-{signal_name}-{n}.nxs", mutant)
            except ExtractionTimeout as exc:
                if "was stopped" in str(exc):  # killed at the wall-clock limit: a thread could not be
                    counts["hang"] += 1
                    keep(found, "hang", args.out / f"hang-{n}.nxs", mutant)
                else:
                    counts["refused"] += 1
            except ExtractionError:
                counts["refused"] += 1
            finally:
                os.close(fd)
            if {"crash", "hang"} <= found.keys():
                break
    pool.close()
    print(f"{n + 1} mutants: {counts}")
    for kind, path in found.items():
        print(f"{kind}: {path}")
    return 0 if {"crash", "hang"} <= found.keys() else 1


if __name__ == "__main__":
    sys.exit(main())

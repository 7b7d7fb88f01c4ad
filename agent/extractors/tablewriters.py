"""Writing a derived table chunk by chunk, to Parquet (pyarrow) or CSV, hashed as it is written;
and reading the first rows of one back (for people: the demo, ``rules check``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
#: The key of a derived table's provenance in its Parquet metadata.
PARQUET_KEY = b"fair-agent"


class HashingSink(io.RawIOBase):
    """Writes to a descriptor and hashes what it writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        self.digest.update(view)
        self.size += written
        while view:
            view = view[os.write(self.fd, view) :]
        return written


class TableWriter:
    """Writes a table of fixed columns (name, type) a chunk (a DataFrame) at a time."""

    def write(self, frame: Any) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def table_writer(
    fmt: str, sink: HashingSink, columns: list[tuple[str, str]], provenance: dict[str, Any]
) -> TableWriter:
    """``columns``: (name, type), the type one of number, integer, datetime, string, boolean."""
    if fmt == "parquet":
        return ParquetTableWriter(sink, columns, provenance)
    return CsvTableWriter(sink, [name for name, _ in columns])


class ParquetTableWriter(TableWriter):
    def __init__(self, sink: HashingSink, columns: list[tuple[str, str]], provenance: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {
            "number": pa.float64(),
            "integer": pa.int64(),
            # Microseconds: nanoseconds end in 2262, and instruments do not time below a microsecond.
            "datetime": pa.timestamp("us"),
            "string": pa.string(),
            "boolean": pa.bool_(),
        }
        meta = json.dumps(provenance, sort_keys=True, ensure_ascii=False).encode()
        self._schema = pa.schema([pa.field(n, types[t]) for n, t in columns]).with_metadata(
            {PARQUET_KEY: meta}
        )
        self._pa = pa
        self._writer = pq.ParquetWriter(sink, self._schema)

    def write(self, frame: Any) -> int:
        if not len(frame):
            return 0
        # safe=False: a time's nanoseconds are cut to microseconds rather than refused.
        table = self._pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False, safe=False)
        self._writer.write_table(table)
        return len(frame)

    def close(self) -> None:
        self._writer.close()


class CsvTableWriter(TableWriter):
    def __init__(self, sink: HashingSink, names: list[str]) -> None:
        self._sink = sink
        self._names = names
        self._header = True

    def write(self, frame: Any) -> int:
        if not len(frame) and not self._header:
            return 0
        # 15 significant digits: what a double holds reliably (310.15, not 310.15000000000003).
        text = frame.to_csv(index=False, header=self._header, lineterminator="\n", float_format="%.15g")
        self._sink.write(text.encode("utf-8"))
        self._header = False
        return len(frame)

    def close(self) -> None:
        if self._header:  # no rows at all: the file still says which columns it has
            import pandas as pd

            self.write(pd.DataFrame(columns=self._names))


def read_head(path: Path, rows: int = 5) -> list[list[str]]:
    """The first rows of a derived table on disk, as text (header first)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as table:
            batch = next(table.iter_batches(batch_size=rows), None)
            names = table.schema_arrow.names
            records = batch.to_pylist() if batch is not None else []
        return [names, *([_text(r[n]) for n in names] for r in records)]
    with path.open(encoding="utf-8", newline="") as text:
        return csv_head(text, rows)


def csv_head(text: Any, rows: int) -> list[list[str]]:
    return [row for _, row in zip(range(rows + 1), csv.reader(text), strict=False)]


def _text(value: Any) -> str:
    return "" if value is None else f"{value:.15g}" if isinstance(value, float) else str(value)

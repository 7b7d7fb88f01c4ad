"""A table wholly in the sample is profiled in pure Python (sampletable): exactly as pandas would.

Both paths of the tabular extractor run on the same generated exports (vendor blocks, units rows,
integers, floats in every spelling, decimal commas, missing values, text, quotes, booleans,
dates, short rows, several tables...) and must give the same metadata, or the same error.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.extractors import Budget, Source, sampletable
from agent.extractors import tablereading as tablereading_module
from agent.extractors.base import ExtractionError
from agent.extractors.sampletable import NA_VALUES
from agent.extractors.tabular import TabularExtractor
from agent.extractors.vendorheader import BLANKS

from .conftest import REPO

SAMPLE_PATH = TabularExtractor()
PANDAS_PATH = TabularExtractor(from_sample=False)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


def outcome(extractor: TabularExtractor, path: Path) -> Any:
    try:
        return extractor.extract(Source(path, path.name, path.parent), Budget(60))
    except ExtractionError as exc:
        return ("error", str(exc))


def as_written(result: Any) -> str:
    """A result as the sidecar would differ: in key order, and -0.0 is not 0.0 (as == says)."""
    return repr(result)


class SamplePaths:
    """Counts how often the sample path answered (and how often it left the table to pandas)."""

    def __init__(self) -> None:
        self.answered = self.declined = 0
        self._profile = sampletable.profile_sample

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found = self._profile(*args, **kwargs)
        if found is None:
            self.declined += 1
        else:
            self.answered += 1
        return found


@pytest.fixture(scope="module")
def paths() -> Iterator[SamplePaths]:
    spy = SamplePaths()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tablereading_module, "profile_sample", spy)
        yield spy


def both(path: Path, data: bytes, paths: SamplePaths) -> tuple[Any, Any, bool | None]:
    """Both paths' outcomes, and whether the sample path answered (None: no table to ask about)."""
    path.write_bytes(data)
    answered, declined = paths.answered, paths.declined
    fast = outcome(SAMPLE_PATH, path)
    took = None if (answered, declined) == (paths.answered, paths.declined) else paths.answered > answered
    event({None: "no table", True: "profiled from the sample", False: "left to pandas"}[took])
    return fast, outcome(PANDAS_PATH, path), took


# --- generated exports -------------------------------------------------------------------------

WORDS = st.sampled_from(
    ["Time", "Temp", "OD600", "A1", "B2", "C3", "Sample", "Well", "Cycle Nr.", "Value", "x", "Date", "n"]
)
UNITS = st.sampled_from(["", " [s]", " [°C]", " (nm)", " / V", "/mA", " [a.u.]", " (%)"])
NAME = st.one_of(
    st.builds(lambda w, u: w + u, WORDS, UNITS),
    st.just(""),
    st.text(alphabet="abcXYZ #:=µ°-_.", max_size=8),
)


#: How a column writes its numbers: one way per column, as instruments do.
FLOAT_STYLES = ["fixed"] * 4 + ["short", "short", "exponent", "exponent", "repr", "signed"]
SIGNED = ["+1.5", "-0.0", "0.0", "-0", "+0", ".5", "5.", "-.25", "007.5", "1e5", "2E-3", "-7.25"]
ODD = ["1e", "1e+", "1.2.3", "--1", "inf", "-Infinity", "NAN", "1_000", "0x1F", " 4 ", "5\t", "OVER", "-"]
INTEGER_RANGES = [st.integers(0, 100_000), st.integers(-1000, 1000), st.integers(-(2**70), 2**70)]


def _float(draw: st.DrawFn, style: str, mark: str) -> str:
    number = draw(st.floats(-1e6, 1e6, allow_nan=False))
    if style == "fixed":
        text = f"{abs(number) / 1000:.{draw(st.integers(0, 6))}f}"
    elif style == "short":
        text = f"{number:.{draw(st.integers(1, 7))}g}"
    elif style == "exponent":
        scale = 10.0 ** draw(st.one_of(st.integers(-12, 12), st.integers(-300, 300)))
        text = f"{number * scale:.{draw(st.integers(0, 6))}e}"
        text = text.upper() if draw(st.booleans()) else text
    elif style == "repr":  # 17 digits, as spreadsheets write them
        text = repr(number)
    else:
        text = draw(st.sampled_from(SIGNED))
    return text.replace(".", mark) if mark == "," else text


def _int(draw: st.DrawFn, style: str) -> str:
    if style == "w":  # fixed width, as counters and well numbers are written: "007"
        return f"{draw(st.integers(0, 999)):03d}"
    text = str(draw(INTEGER_RANGES[int(style)]))
    return draw(st.sampled_from([text] * 6 + [f"+{text}".replace("+-", "-"), f"0{text}".replace("0-", "-0")]))


@st.composite
def cell(draw: st.DrawFn, kind: str, style: str, mark: str, odd: bool) -> str:
    if draw(st.integers(0, 9)) == 0:  # a missing value, as labs write them
        return draw(st.sampled_from(["", "", " ", "NA", "nan", "N/A", "null", "#N/A", "None", "n.d."]))
    if odd and draw(st.integers(0, 39)) == 0:
        return draw(st.sampled_from(ODD))
    if kind == "int":
        return _int(draw, style)
    if kind == "float":
        return _float(draw, style, mark)
    if kind == "bool":
        return draw(st.sampled_from(["True", "False", "TRUE", "false", "tRuE", "yes"]))
    if kind == "date":
        return draw(
            st.sampled_from(["2024-03-01", "01/03/2024", "10:00:12", "2024-03-01 10:00:12", "45352.5"])
        )
    if kind == "text":
        return draw(st.text(alphabet="abc XYZ-_/µ°.:#", min_size=1, max_size=6))
    if kind == "quoted":
        inner = draw(st.text(alphabet=f'ab 1.{mark};,|\t"', max_size=6)).replace('"', '""')
        return f'"{inner}"'
    mixed = draw(st.sampled_from(["int", "float", "OVER", "x"]))
    return _int(draw, "1") if mixed == "int" else _float(draw, "short", mark) if mixed == "float" else mixed


KINDS = ["int", "float", "float", "float", "bool", "date", "text", "quoted", "mixed"]


@st.composite
def column(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(KINDS))
    if kind == "int":
        return kind, draw(st.sampled_from("0011112ww"))
    return kind, draw(st.sampled_from(FLOAT_STYLES))


@st.composite
def export(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    mark = "," if delimiter != "," and draw(st.booleans()) else "."
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):  # the vendor block
        key = draw(st.sampled_from(["Device", "Serial number", "Date", "Time", "Mode", "Operator", "#Gain"]))
        value = draw(st.sampled_from(["Spark 10M", "1500000", "2024-03-01", "10:00:12", "Absorbance", "ana"]))
        pad = delimiter * draw(st.integers(0, 3))
        lines.append(draw(st.sampled_from([f"{key}: {value}", f"{key}:{pad}{value}{pad}", f"{key}={value}"])))
    if draw(st.booleans()) and lines:
        lines.append("")
    width = draw(st.integers(1, 6))
    columns = [draw(column()) for _ in range(width)]
    odd = draw(st.integers(0, 3)) == 0
    header = draw(st.sampled_from(["names", "names", "none", "comment"]))
    if header != "none":
        names = [draw(NAME) for _ in range(width)]
        if draw(st.integers(0, 3)):  # most exports name each column once
            names = [f"{name}{i}" if name else name for i, name in enumerate(names)]
        if draw(st.integers(0, 5)) == 0:
            names = [f'"{n}"' for n in names]
        lines.append(("#" if header == "comment" else "") + delimiter.join(names))
        if draw(st.integers(0, 4)) == 0:
            lines.append(
                delimiter.join(f"[{draw(st.sampled_from(['s', 'nm', 'AU', '°C']))}]" for _ in range(width))
            )
    space = draw(st.sampled_from(["", "", "", " "]))
    for _ in range(draw(st.integers(0, 40))):
        row = [draw(cell(kind, style, mark, odd)) for kind, style in columns]
        shape = draw(st.integers(0, 19))
        if shape == 0:
            row = row[: draw(st.integers(0, width))]  # a short row
        elif shape == 1:
            row.append("")  # a trailing delimiter
        elif shape == 2:
            lines.append(draw(st.sampled_from(["", "  ", "\t", delimiter * width])))
        lines.append((delimiter + space).join(row))
    for _ in range(draw(st.integers(0, 2))):  # a second table, a trailer
        lines += ["", draw(st.sampled_from(["End Time: 10:30:00", "OD700", lines[-1] if lines else "x"]))]
    newline = draw(st.sampled_from(["\n"] * 6 + ["\r\n"] * 3 + ["\r"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252"]))
    return text.encode(encoding, errors="replace")


@PROPERTY
@given(data=export())
def test_the_sample_path_gives_what_pandas_gives(tmp_path: Path, paths: SamplePaths, data: bytes) -> None:
    fast, slow, _ = both(tmp_path / "export.csv", data, paths)
    assert as_written(fast) == as_written(slow)


JUNK = st.text(alphabet=st.sampled_from(list("0123456789.,;:\t\n\r -+eE#=[]()abcXYZ°µ\"'")), max_size=1500)


@PROPERTY
@given(text=JUNK)
def test_text_that_almost_looks_right_too(tmp_path: Path, paths: SamplePaths, text: str) -> None:
    fast, slow, _ = both(tmp_path / "junk.txt", text.encode(), paths)
    assert as_written(fast) == as_written(slow)


@st.composite
def instrument_export(draw: st.DrawFn) -> tuple[bytes, int]:
    """What instruments write: a vendor block, named columns of one kind each (time first), plain
    or scientific numbers, a few gaps; and the number of rows."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    mark = "," if delimiter != "," and draw(st.booleans()) else "."
    lines = [f"Device: Spark 10M{i}" for i in range(draw(st.integers(0, 8)))] + [""]
    kinds = ["time"] + [draw(st.sampled_from(["fixed", "fixed", "short", "int", "text"])) for _ in range(5)]
    width = draw(st.integers(2, 6))
    lines.append(delimiter.join(f"{draw(WORDS)} {i}{draw(UNITS)}" for i in range(width)))
    rows = draw(st.integers(3, 120))
    for r in range(rows):
        row = []
        for position, kind in enumerate(kinds[:width]):
            number = draw(st.integers(-(10**9), 10**9)) / 1000
            if kind == "time":
                text = str(30 * r)
            elif position < width - 1 and draw(st.integers(0, 19)) == 0:  # a gap (not last: padding)
                text = draw(st.sampled_from(["", "NA", "nan"]))
            elif kind == "fixed":
                text = f"{abs(number):.{draw(st.integers(1, 4))}f}"
            elif kind == "short":
                text = f"{number * 10.0 ** draw(st.integers(-9, 3)):.5g}"
            elif kind == "int":
                text = str(int(number))
            else:
                text = draw(st.sampled_from(["OK", "OVER", "A1", "sample 2"]))
            row.append(text.replace(".", mark) if mark == "," else text)
        lines.append(delimiter.join(row))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"])), errors="replace"), rows


@PROPERTY
@given(export_and_rows=instrument_export())
def test_what_instruments_write_is_profiled_without_pandas(
    tmp_path: Path, paths: SamplePaths, export_and_rows: tuple[bytes, int]
) -> None:
    data, rows = export_and_rows
    fast, slow, took = both(tmp_path / "read.csv", data, paths)
    assert took is True
    assert as_written(fast) == as_written(slow)
    assert fast["rowCount"] == rows


# --- examples ----------------------------------------------------------------------------------

INSTRUMENT = (
    "Device: Spark 10M\nSerial number: 1500000\nFirmware: V2.10\nOperator: ana\nDate: 2024-03-01\n"
    "Time: 10:00:12\nMode: Absorbance\n\nTime [s],Temperature [°C],OD600,OD700\n"
    + "".join(f"{30 * i},{25 + i % 7 / 10:.2f},{0.1 + i / 97:.4f},{0.4 - i / 300:.4f}\n" for i in range(140))
)

EXAMPLES = {
    "instrument export": INSTRUMENT,
    "decimal commas": "Wave;Sample\n400,5;0,25\n401,0;-0,5\n401,5;1,0E-3\n",
    "missing values make integers floats": "a,b\n1,2\n,3\n4,NA\n",
    "negative zero beside zero": "a,b\n-0.0,1\n0.0,2\n1.5,3\n",
    "minus zero among missing values": "c0,c1,c2\n-0,273,79.5\n333,,54.0\nN/A,1e5,-3\nNaN,+4,0x10\n",
    "booleans in any case": "a,b\nTrue,1\nfalse,2\ntRuE,3\n",
    "booleans with a gap are text": "a,b\nTrue,1\n,2\nFalse,3\n",
    "padding columns": "Time,OD,,,\n0,0.1,,,\n1,0.2,,,\n2,0.3,,,\n",
    "quoted fields": 'x,y\n"1,5",2\n"a ""b""",3\n  "4",5\n',
    "spaces after delimiters": "x, y, z\n1, 2, 3\n4, 5,  \n 7, 8, 9\n",
    "short rows": "a,b,c\n1,2,3\n4\n5,6\n",
    "integers of one width": "Well,Count,Flag\n007,12,0\n010,34,0\n099,56,0\n",
    "integers beyond int64": "a,b\n1,99999999999999999999\n2,3\n",
    "integers beyond uint64 keep missing values": "a,b\n1,NA\n2,18446744073709551616\n3,n.d.\n",
    "long mantissas": "a\n0.1234567890123456789\n2.5\n",
    "big exponents": "a\n1e300\n2e-300\n",
    "infinity": "a\ninf\n2\n",
    "a units row": "Wave;Intensity\n[nm];[counts]\n400;10\n401;12\n402;13\n",
    "headerless": "1,2\n3,4\n5,6\n",
    "names in a comment": "#Wave\t#Intensity\n400\t10\n401\t12\n402\t14\n",
    "two tables": "Cycle,Time [s]\n1,0\n2,60\n3,120\n\nCycle,Time [s]\n1,0\n2,60\n3,120\n",
    "blank lines of delimiters end the block": "a;b\n1;2\n3;4\n5;6\n,,,\n7;8\n",
    "lone carriage returns": "a,b\r1,2\r3,4\r5,6\r",
    "crlf": "a,b\r\n1,2\r\n3,4\r\n5,6\r\n",
    "duplicate names": "a,a,b\n1,2,3\n4,5,6\n7,8,9\n",
    "a wider first row": "a,b\n1,2,3\n4,5,6\n7,8,9\n",
    "a quote across lines": 'a,b\n"1\n2",3\n4,5\n6,7\n',
    "a quote in the vendor block": 'Comment: "hello\nworld"\n\na,b\n1,2\n3,4\n5,6\n',
    "dates and times": "Date,Time,OD\n2024-03-01,10:00:12,0.5\n2024-03-02,10:00:42,6\n2024-03-03,10:01:12,\n",
    "excel serial days": "Date,OD\n45352.5,0.5\n45353,0.6\n45354.25,0.7\n",
    "placeholders are text": "a,b\n-,1\n2,2\n3,3\n",
    "plate wells": "Time [s],Temp. [°C],A1,A2,A3\n0,37,0.1,0.2,0.3\n600,37.1,0.11,0.21,0.31\n1200,37,0.1,,\n",
}


@pytest.mark.parametrize("text", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_examples_give_what_pandas_gives(tmp_path: Path, text: str) -> None:
    path = tmp_path / "example.csv"
    path.write_bytes(text.encode())
    assert as_written(outcome(SAMPLE_PATH, path)) == as_written(outcome(PANDAS_PATH, path))


def test_a_cp1252_export_gives_what_pandas_gives(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Temp [°C]\tµA\n20,5\t1\n21,0\t2\n21,5\t3\n".encode("cp1252") + b"\x81\n")
    assert as_written(outcome(SAMPLE_PATH, path)) == as_written(outcome(PANDAS_PATH, path))


def test_the_instrument_export_is_profiled_without_importing_pandas(tmp_path: Path) -> None:
    path = tmp_path / "read-0001.csv"
    path.write_text(INSTRUMENT, encoding="utf-8")
    code = (
        "import sys; from pathlib import Path\n"
        "from agent.extractors import Budget, Source\n"
        "from agent.extractors.tabular import TabularExtractor\n"
        f"path = Path({str(path)!r})\n"
        "meta = TabularExtractor().extract(Source(path, path.name, path.parent), Budget(60))\n"
        "print(meta['rowCount'], 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["140", "False"]


def test_a_file_beyond_the_sample_is_read_with_pandas(tmp_path: Path, paths: SamplePaths) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i / 7:.6f}\n" for i in range(9000)), encoding="utf-8")
    calls = paths.answered + paths.declined
    meta = outcome(SAMPLE_PATH, path)
    assert paths.answered + paths.declined == calls  # never offered to the sample path
    assert meta["rowCount"] == 9000 and meta["columns"][1]["max"] == pytest.approx(8999 / 7)


@pytest.mark.parametrize(
    ("values", "span"),
    [
        (["7"] * 100, (True, "7", "7")),
        (["12", "34", "56"], (True, "12", "56")),
        (["010", "007", "099"], (True, "007", "099")),
        (["25.10", "24.98", "25.00"], (False, "24.98", "25.10")),
        (["1.5", "35", "2.5"], None),  # one without its decimals: parsed instead
    ],
)
def test_numbers_of_one_width_are_ordered_as_text(values: list[str], span: Any) -> None:
    # The shortcut that parses only the lowest and the highest, for columns of integers too.
    assert sampletable._plain_span(values, "\n".join(values), ".") == span


def test_the_missing_values_are_pandas_own() -> None:
    from pandas._libs.parsers import STR_NA_VALUES

    assert NA_VALUES == STR_NA_VALUES


def test_blanks_are_what_str_strip_strips() -> None:
    assert set(BLANKS) == {chr(c) for c in range(0x110000) if chr(c).isspace()}

"""The FCS extractor on the corpus's three real FCS files and on FCS files built byte by byte here.

The values asserted for the real files were read from them by hand and confirmed with flowio 1.4.0
(the FlowIO project these samples come from), outside the project.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors.base import Budget, ExtractionError, Source
from agent.extractors.fcs import MAX_TEXT_BYTES, FcsExtractor

from .conftest import CORPUS

FLOW = CORPUS / "instruments" / "flow_cytometry"
REAL = ["G11.fcs", "variable_int_example.fcs", "data_start_offset_discrepancy_example.fcs"]
OFFSETS = ["$BEGINDATA", "$ENDDATA", "$BEGINSTEXT", "$ENDSTEXT"]
Pairs = dict[str, str | bytes]


def extract(path: Path) -> dict[str, Any]:
    return FcsExtractor().extract(Source(path, path.name, path.parent), Budget(20))


def real(name: str) -> Path:
    path = FLOW / name
    if not path.exists():
        pytest.skip(f"corpus file {path} not found")
    return path


def segment(pairs: Pairs, delimiter: bytes) -> bytes:
    """A TEXT segment, delimiters inside keywords and values doubled as the standard says."""

    def escape(item: str | bytes) -> bytes:
        return (item.encode() if isinstance(item, str) else item).replace(delimiter, delimiter * 2)

    return delimiter + b"".join(escape(k) + delimiter + escape(v) + delimiter for k, v in pairs.items())


def build(
    pairs: Pairs,
    *,
    version: str = "3.1",
    delimiter: bytes = b"/",
    supplemental: Pairs | None = None,
    data: bytes = bytes(16),
    header_data: tuple[int, int] | None = None,
    text_data: tuple[int, int] | None = None,
) -> bytes:
    """An FCS file: HEADER, TEXT, supplemental TEXT, DATA, with every offset where the standard puts it.

    FCS 3 files get $BEGINDATA, $ENDDATA, $BEGINSTEXT and $ENDSTEXT in the TEXT, written with twelve
    digits so that the TEXT's length does not depend on them.
    """

    def text(offsets: tuple[int, ...]) -> bytes:
        in_text = dict(zip(OFFSETS, offsets, strict=True)) if version >= "3" else {}
        return segment({**pairs, **{key: f"{value:012d}" for key, value in in_text.items()}}, delimiter)

    text_end = 58 + len(text((0, 0, 0, 0))) - 1
    extra = segment(supplemental, delimiter) if supplemental else b""
    stext = (text_end + 1, text_end + len(extra)) if extra else (0, 0)
    data_begin = text_end + 1 + len(extra)
    in_data = (data_begin, data_begin + len(data) - 1)
    offsets = (58, text_end, *(header_data or in_data), 0, 0)
    header = f"FCS{version}    ".encode() + "".join(f"{n:>8}" for n in offsets).encode()
    return header + text((*(text_data or in_data), *stext)) + extra + data


def write_fcs(folder: Path, content: bytes, name: str = "built.fcs") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


MINIMAL: Pairs = {
    "$BYTEORD": "1,2,3,4",
    "$DATATYPE": "F",
    "$MODE": "L",
    "$PAR": "1",
    "$TOT": "4",
    "$P1N": "FSC-A",
}


# -- what it accepts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "accepted"),
    [
        ("G11.fcs", b"", True),
        ("TUBE_001.FCS", b"", True),
        ("export.lmd", b"FCS3.0    00000058", True),  # Beckman's LMD files are FCS inside
        ("run.dat", b"FCS2.0          58", True),
        ("notes.txt", b"FCS results: see below", False),
        ("table.csv", b"a,b\n1,2\n", False),
    ],
)
def test_accepts_fcs_by_suffix_or_header(name: str, head: bytes, accepted: bool) -> None:
    assert FcsExtractor().accepts(name, head) is accepted


# -- the real files ------------------------------------------------------------------------------------------


def test_attune_nxt_fcs_3_1() -> None:
    meta = extract(real("G11.fcs"))
    cytometer = "4486521 Attune NxT Acoustic Focusing Cytometer (Lasers: BRVY)"
    assert meta["fcsVersion"] == "3.1"
    assert (meta["events"], meta["parameters"], meta["keywordCount"]) == (5785, 12, 157)
    assert (
        meta["description"]
        == f"FCS 3.1 flow cytometry data recorded on {cytometer}: 5,785 events, 12 parameters"
    )
    assert meta["acquisition"] == {
        "start": "2020-03-02T09:50:15",
        "end": "2020-03-02T09:50:30",
        "source": "$DATE $BTIM $ETIM",
    }
    assert meta["instrument"] == {
        "model": cytometer,
        "serialNumber": "2AFC210070815",
        "manufacturer": "Thermo Fisher Scientific",
    }
    assert (meta["dataType"], meta["byteOrder"], meta["mode"]) == ("F", "1,2,3,4", "L")
    assert (meta["operator"], meta["investigator"], meta["institution"]) == (
        "Cole Urnes",
        "Ben Oakes",
        "UC Berkeley",
    )
    assert (meta["sample"], meta["title"], meta["filename"]) == ("Plate 1", "Plate 1", "G11.fcs")
    assert "specimen" not in meta  # $SRC is "NA", the Attune's word for no value
    names = [channel["name"] for channel in meta["channels"]]
    assert names == [
        "Time",
        "FSC-A",
        "SSC-A",
        "BL1-A",
        "YL2-A",
        "VL1-A",
        "FSC-H",
        "SSC-H",
        "VL1-H",
        "FSC-W",
        "SSC-W",
        "VL1-W",
    ]
    assert meta["channels"][3] == {
        "name": "BL1-A",
        "label": "GFP-A",
        "range": 1048576,
        "bits": 32,
        "amplification": "0,0",
    }
    assert meta["channels"][5]["label"] == "Alexa Fluor\u2122 405-A"  # UTF-8, as FCS 3.1 says
    assert meta["keywords"]["$P3F"] == "488/10"  # written 488//10: a doubled delimiter in a real file
    assert meta["keywords"]["#LASERCONFIG"] == "BRVY"
    assert "warnings" not in meta


@pytest.mark.parametrize("name", REAL[1:])
def test_s1400exi_fcs_3_0(name: str) -> None:
    meta = extract(real(name))
    assert meta["fcsVersion"] == "3.0"
    assert (meta["events"], meta["parameters"], meta["keywordCount"]) == (2, 26, 268)  # $TOT is "000002"
    assert meta["description"] == "FCS 3.0 flow cytometry data recorded on S1400EXi: 2 events, 26 parameters"
    # $BTIM 17:29:39:51 and $ETIM 17:32:04:01: FCS 3.0's sixtieths of a second are dropped.
    assert meta["acquisition"] == {
        "start": "2019-06-28T17:29:39",
        "end": "2019-06-28T17:32:04",
        "source": "$DATE $BTIM $ETIM",
    }
    assert meta["cytometer"] == "S1400EXi"
    assert meta["instrument"]["serialNumber"] == "S1417EXiBRVY01052015-45"
    assert "manufacturer" not in meta["instrument"]  # the file does not say, and "S1400EXi" alone is no proof
    assert meta["channels"][0] == {
        "name": "FSC LogH",
        "label": "FSC LogH",
        "range": 65536,
        "bits": 16,
        "amplification": "4,1",
    }
    assert meta["channels"][25] == {
        "name": "Time",
        "label": "Time",
        "range": 11209599,
        "bits": 32,
        "amplification": "0,0",
        "gain": 78125.000109,
    }
    assert meta["keywords"]["P1DETECTORNAME"] == "FSC"  # vendor keywords without "$" are kept


def test_header_data_offsets_that_disagree_with_the_text_are_a_warning() -> None:
    meta = extract(real("data_start_offset_discrepancy_example.fcs"))
    assert meta["warnings"] == [
        "The HEADER puts the DATA segment at bytes 5555 to 6188, the TEXT ($BEGINDATA, $ENDDATA) "
        "at 6081 to 6188; the keywords were read all the same."
    ]
    assert "warnings" not in extract(real("variable_int_example.fcs"))  # same TEXT and DATA, HEADER intact


# -- files built here ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [b"/", b"|", b"\\", b"*", b"]", b"-", b",", b"\x0c"], ids=repr)
def test_fcs_3_2_with_doubled_delimiters_and_supplemental_text(tmp_path: Path, delimiter: bytes) -> None:
    d = delimiter.decode()
    pairs: Pairs = {
        **MINIMAL,
        "$PAR": "2",
        "$TOT": "1000",
        "$CYT": "CytoFLEX S",
        "$CYTSN": "AX12345",
        "CREATOR": "CytExpert 2.4",
        "$P1N": f"FSC{d}A",
        "$P1S": f"forward{d}{d}scatter{d}",
        "$P1R": "262144",
        "$P1B": "32",
        "$P1E": "0,0",
        "$p2n": "SSC-A",  # keywords are case-insensitive
        "$p2g": "2.5",
        f"MY{d}KEY": "value",
        "$DATE": "01-JAN-1999",  # FCS 3.2's $BEGINDATETIME is preferred to $DATE and $BTIM
        "$BTIM": "01:02:03",
        "$BEGINDATETIME": "2023-11-05T23:58:10.25+01:00",
        "$ENDDATETIME": "2023-11-06T00:03:00+01:00",
    }
    supplemental: Pairs = {"$COM": "from the supplemental TEXT", "$CYT": "not this: the primary TEXT wins"}
    meta = extract(
        write_fcs(tmp_path, build(pairs, version="3.2", delimiter=delimiter, supplemental=supplemental))
    )
    assert "warnings" not in meta, meta["warnings"]
    assert meta["acquisition"] == {
        "start": "2023-11-05T23:58:10+01:00",
        "end": "2023-11-06T00:03:00+01:00",
        "source": "$BEGINDATETIME $ENDDATETIME",
    }
    assert meta["channels"] == [
        {
            "name": f"FSC{d}A",
            "label": f"forward{d}{d}scatter{d}",
            "range": 262144,
            "bits": 32,
            "amplification": "0,0",
        },
        {"name": "SSC-A", "gain": 2.5},
    ]
    assert meta["keywords"][f"MY{d}KEY"] == "value"
    assert meta["keywords"]["$COM"] == "from the supplemental TEXT"
    assert meta["cytometer"] == "CytoFLEX S"
    assert meta["instrument"] == {
        "model": "CytoFLEX S",
        "serialNumber": "AX12345",
        "manufacturer": "Beckman Coulter",
        "software": "CytExpert 2.4",
    }
    assert (
        meta["description"]
        == "FCS 3.2 flow cytometry data recorded on CytoFLEX S: 1,000 events, 2 parameters"
    )


def test_a_run_past_midnight_ends_the_next_day(tmp_path: Path) -> None:
    pairs: Pairs = {**MINIMAL, "$DATE": "31-Dec-2021", "$BTIM": "23:59:30.50", "$ETIM": "00:01:10.00"}
    meta = extract(write_fcs(tmp_path, build(pairs)))
    assert meta["acquisition"] == {
        "start": "2021-12-31T23:59:30",
        "end": "2022-01-01T00:01:10",
        "source": "$DATE $BTIM $ETIM",
    }


@pytest.mark.parametrize(
    ("date", "btim", "start"),
    [
        ("02-Mar-2020", "09:50:15", "2020-03-02T09:50:15"),  # FCS 3.x
        ("28-JUN-2019", "17:29:39:51", "2019-06-28T17:29:39"),  # FCS 3.0's 60ths
        ("2020-03-02", "9:05:01.99", "2020-03-02T09:05:01"),  # FCS 3.1's hundredths
        ("05-jan-99", "10:11:12", "1999-01-05T10:11:12"),  # FCS 2.0's two-digit year
        ("05-Jan-05", "10:11", "2005-01-05T10:11:00"),
    ],
)
def test_acquisition_date_and_time_formats(tmp_path: Path, date: str, btim: str, start: str) -> None:
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$DATE": date, "$BTIM": btim})))
    assert meta["acquisition"] == {"start": start, "source": "$DATE $BTIM"}


def test_a_date_without_time_is_a_day(tmp_path: Path) -> None:
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$DATE": "02-Mar-2020"})))
    assert meta["acquisition"] == {"start": "2020-03-02", "source": "$DATE"}


def test_dates_in_no_fcs_format_are_named_in_a_warning(tmp_path: Path) -> None:
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$DATE": "03/02/2020", "$BTIM": "10:00:00"})))
    assert "acquisition" not in meta
    assert any("'03/02/2020'" in w for w in meta["warnings"])
    pairs: Pairs = {**MINIMAL, "$BEGINDATETIME": "yesterday", "$DATE": "30-Feb-2020", "$BTIM": "25:00:00"}
    meta = extract(write_fcs(tmp_path, build(pairs)))
    assert "acquisition" not in meta
    assert [w.split(" is ")[0] for w in meta["warnings"]] == ["$BEGINDATETIME", "$DATE"]
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$DATE": "02-Mar-2020", "$BTIM": "25:00:00"})))
    assert meta["acquisition"] == {"start": "2020-03-02", "source": "$DATE"}
    assert meta["warnings"] == [
        "$BTIM is '25:00:00', a date or time in no format the FCS standard describes."
    ]


def test_missing_or_unreadable_counts(tmp_path: Path) -> None:
    no_tot = {k: v for k, v in MINIMAL.items() if k != "$TOT"}
    meta = extract(write_fcs(tmp_path, build(no_tot)))
    assert "events" not in meta
    assert meta["warnings"] == ["The TEXT segment has no $TOT, which the FCS standard requires."]
    assert meta["description"] == "FCS 3.1 flow cytometry data: 1 parameter"
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$TOT": "many"})))
    assert meta["warnings"] == ["$TOT is 'many', not a count."]


def test_fcs_2_0_latin_1_and_no_closing_delimiter(tmp_path: Path) -> None:
    pairs: Pairs = {"$PAR": "1", "$P1N": "FL1", "$P1S": b"Gr\xfcn 520 \xb5m", "$DATE": "05-jan-99"}
    content = build(pairs, version="2.0", data=b"", header_data=(0, 0))
    # Drop the closing delimiter, as some FCS 2.0 writers do; the HEADER's TEXT end moves with it.
    content = content[:18] + f"{int(content[18:26]) - 1:>8}".encode() + content[26:-1]
    meta = extract(write_fcs(tmp_path, content))
    assert meta["fcsVersion"] == "2.0"
    assert meta["channels"] == [{"name": "FL1", "label": "Gr\u00fcn 520 \u00b5m"}]
    assert meta["acquisition"] == {"start": "1999-01-05", "source": "$DATE"}
    assert "warnings" not in meta  # $TOT is optional in FCS 2.0


def test_offsets_too_large_for_the_header_are_no_discrepancy(tmp_path: Path) -> None:
    # FCS 3.x: DATA ending past byte 99,999,999 is in the TEXT only, with 0 in the HEADER. The file is
    # sparse: its 100 MB of events cost no disk and are never read.
    text_end = len(build(MINIMAL, data=b"")) - 1
    path = write_fcs(
        tmp_path, build(MINIMAL, data=b"", header_data=(0, 0), text_data=(text_end + 1, 100_000_099))
    )
    os.truncate(path, 100_000_100)
    meta = extract(path)
    assert meta["events"] == 4
    assert "warnings" not in meta


def test_header_data_offsets_that_are_not_numbers_are_a_warning(tmp_path: Path) -> None:
    content = build(MINIMAL)
    meta = extract(write_fcs(tmp_path, content[:26] + b"    abcd" + content[34:]))
    assert meta["warnings"] == ["The HEADER's DATA offsets, '    abcd     230', are not numbers."]


def test_a_following_data_set_is_named(tmp_path: Path) -> None:
    meta = extract(write_fcs(tmp_path, build({**MINIMAL, "$NEXTDATA": "000123456"})))
    assert meta["nextDataSet"] == 123456


def test_data_ending_one_byte_past_the_file_is_a_writers_slip(tmp_path: Path) -> None:
    content = build(MINIMAL, data=bytes(16))
    path = write_fcs(tmp_path, content[:-1])  # $ENDDATA is now the file's size: one past its last byte
    assert extract(path)["events"] == 4


def test_supplemental_text_outside_the_file_is_a_warning(tmp_path: Path) -> None:
    content = build(MINIMAL, supplemental={"$COM": "x"})
    content = re.sub(rb"\$ENDSTEXT/\d{12}", b"$ENDSTEXT/009999999999", content)
    meta = extract(write_fcs(tmp_path, content))
    assert "$COM" not in meta["keywords"] and meta["events"] == 4
    # The supplemental TEXT starts at byte 215, after the HEADER and the TEXT; the file has 239 bytes.
    assert meta["warnings"] == [
        "The supplemental TEXT segment (bytes 215 to 9,999,999,999) lies beyond the end of the file "
        "(239 bytes); its keywords were not read."
    ]


def test_output_is_bounded(tmp_path: Path) -> None:
    pairs: Pairs = {**MINIMAL, "$PAR": "300", "LONG": "x" * 5000}
    pairs |= {f"$P{n}N": f"channel {n}" for n in range(1, 301)} | {f"$P{n}B": "16" for n in range(1, 301)}
    meta = extract(write_fcs(tmp_path, build(pairs)))
    assert meta["parameters"] == 300 and len(meta["channels"]) == 200
    assert meta["keywordCount"] == len(pairs) + len(OFFSETS) and len(meta["keywords"]) == 500
    assert meta["keywords"]["LONG"] == "x" * 1000


# -- files it refuses ----------------------------------------------------------------------------------------


def test_truncated_real_files_are_refused(tmp_path: Path) -> None:
    data = real("G11.fcs").read_bytes()
    for cut, reason in [
        (0, "not an FCS file"),
        (57, "not an FCS file"),
        (58, "beyond the end of the file"),
        (8191, "beyond the end of the file"),
        (8192, "truncated: its DATA segment ends at byte 285,871 of 8,192"),
        (200_000, "truncated: its DATA segment"),
    ]:
        with pytest.raises(ExtractionError, match=reason):
            extract(write_fcs(tmp_path, data[:cut], f"cut{cut}.fcs"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c[:18] + b"   99999" + c[26:], r"TEXT segment \(bytes 58 to 99,999\) lies beyond the end"),
        (lambda c: c[:10] + b" " * 16 + c[26:], "declares no TEXT segment"),
        (lambda c: c[:10] + b"      20" + c[18:], "is not a place in an FCS file"),
        (lambda c: c[:10] + b"    12ab" + c[18:], "declares no TEXT segment"),
        (lambda c: c.replace(b"$", b"#"), "holds no FCS keywords"),
        (lambda c: b"FCS3.1x" + c[7:], "not an FCS file"),
        (lambda c: b"PK\x03\x04" + c[4:], "not an FCS file"),
    ],
    ids=[
        "text-beyond-file",
        "no-text",
        "text-in-header",
        "offset-not-a-number",
        "no-keywords",
        "bad-magic",
        "zip",
    ],
)
def test_damaged_headers_are_refused(tmp_path: Path, change: Callable[[bytes], bytes], reason: str) -> None:
    with pytest.raises(ExtractionError, match=reason):
        extract(write_fcs(tmp_path, change(build(MINIMAL))))


def test_a_text_segment_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    end = 58 + MAX_TEXT_BYTES  # one byte more than the cap
    path = write_fcs(
        tmp_path, b"FCS3.1    " + f"{58:>8}{end:>8}{0:>8}{0:>8}{0:>8}{0:>8}".encode() + b"/$A/1/"
    )
    os.truncate(path, end + 1)
    with pytest.raises(ExtractionError, match="larger than the 4 MiB"):
        extract(path)


# -- whatever the bytes: metadata or an ExtractionError ------------------------------------------------------

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def survives(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = extract(write_fcs(Path(folder), data))
        except ExtractionError:
            return
        assert isinstance(result, dict)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    survives(data)


@FUZZ
@given(
    text=st.binary(min_size=1, max_size=2048)
    | st.text(alphabet=st.sampled_from(list("/|\\$PNRTOEDA0123456789-:.T+ ")), min_size=1, max_size=2048).map(
        str.encode
    ),
    version=st.sampled_from(["2.0", "3.0", "3.1", "3.2"]),
)
def test_random_text_behind_a_valid_header(text: bytes, version: str) -> None:
    offsets = f"{58:>8}{57 + len(text):>8}{0:>8}{0:>8}{0:>8}{0:>8}"
    survives(f"FCS{version}    {offsets}".encode() + text)


@pytest.mark.parametrize("name", REAL)
@FUZZ
@given(cut=st.floats(min_value=0.0, max_value=1.0))
def test_truncated_real_files(name: str, cut: float) -> None:
    data = real(name).read_bytes()
    survives(data[: int(len(data) * cut)])


@pytest.mark.parametrize("name", REAL)
@FUZZ
@given(
    changes=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=32
    )
)
def test_real_files_mutated(name: str, changes: list[tuple[float, int]]) -> None:
    data = bytearray(real(name).read_bytes())
    parsed = min(len(data), 8192)  # HEADER and TEXT: the bytes that are read
    for where, value in changes:
        data[int(where * parsed)] = value
    survives(bytes(data))

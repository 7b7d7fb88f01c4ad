"""Property-based tests: whatever the bytes, an extractor returns metadata or an ExtractionError.

Never another exception, never a hang (each run has a budget), never unbounded memory (inputs are
bounded here; the size limits are tested with real large inputs in test_extractors.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.extractors import Budget, Extractor, Source
from agent.extractors.base import ExtractionError
from agent.extractors.eln import ElnExtractor
from agent.extractors.hdf5 import Hdf5Extractor
from agent.extractors.hdf5 import available as hdf5_available
from agent.extractors.isolation import IsolatedParsers
from agent.extractors.jcamp import JcampExtractor
from agent.extractors.tabular import TabularExtractor
from agent.extractors.xmlformats import XmlExtractor

from .conftest import CORPUS

CASES: list[tuple[Extractor, str]] = [
    (TabularExtractor(), ".csv"),
    (TabularExtractor(), ".txt"),
    (JcampExtractor(), ".jdx"),
    (XmlExtractor(), ".xrdml"),
    (ElnExtractor(), ".eln"),
]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(extractor: Extractor, data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            result = extractor.extract(Source(path, path.name, path.parent), Budget(20))
        except ExtractionError:
            return
        assert isinstance(result, dict)


@pytest.mark.parametrize(("extractor", "suffix"), CASES, ids=[f"{e.name}{s}" for e, s in CASES])
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_with_a_valid_extension(extractor: Extractor, suffix: str, data: bytes) -> None:
    run(extractor, data, suffix)


TEXTISH = st.text(alphabet=st.sampled_from(list("0123456789.,;:\t\n\r -eE#=[]()abcXYZ°µ\"'")), max_size=3000)


@pytest.mark.parametrize(("extractor", "suffix"), CASES[:3], ids=["csv", "txt", "jdx"])
@FUZZ
@given(text=TEXTISH)
def test_text_that_almost_looks_right(extractor: Extractor, suffix: str, text: str) -> None:
    run(extractor, text.encode("utf-8"), suffix)


CORPUS_FILES = [
    ("instruments/plate_reader/200228_example_data.csv", TabularExtractor()),
    ("instruments/uvvis_timeseries/1908047U1_0000.Raw8.TXT", TabularExtractor()),
    ("instruments/jcamp/TESTSPEC.DX", JcampExtractor()),
    ("instruments/xrd_session/Scan_C1.xrdml", XmlExtractor()),
    ("eln/elabftw/export.eln", ElnExtractor()),
    ("eln/PASTA/PASTA.eln", ElnExtractor()),
]


@pytest.mark.parametrize(
    ("rel", "extractor"), CORPUS_FILES, ids=[r.rsplit("/", 1)[-1] for r, _ in CORPUS_FILES]
)
@FUZZ
@given(cut=st.floats(min_value=0.0, max_value=1.0))
def test_truncated_real_files(rel: str, extractor: Extractor, cut: float) -> None:
    path = CORPUS / rel
    if not path.exists():
        pytest.skip("corpus not found")
    data = path.read_bytes()
    run(extractor, data[: int(len(data) * cut)], path.suffix)


# Through the isolation boundary: every extractor, in a worker process, on random bytes and on real
# files with random bytes changed. Whatever happens in the worker, the agent gets metadata or an
# ExtractionError (a crash or a limit is a ParserCrashedError), and the next file a working worker.
ISOLATED = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
POOL = IsolatedParsers(2, 512 << 20)
ALL_CASES = [*CASES, *([(Hdf5Extractor(), ".nxs")] if hdf5_available() else [])]
SEEDS = {
    ".csv": "instruments/plate_reader/200228_example_data.csv",
    ".txt": "instruments/uvvis_timeseries/1908047U1_0000.Raw8.TXT",
    ".jdx": "instruments/jcamp/TESTSPEC.DX",
    ".xrdml": "instruments/xrd_session/Scan_C1.xrdml",
    ".eln": "eln/PASTA/PASTA.eln",
}


def isolated(extractor: Extractor, data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            result = POOL.extract(extractor, fd, path.name, path.parent, 5)
        except ExtractionError:
            return
        finally:
            os.close(fd)
        assert isinstance(result, dict) and result["extractor"] == extractor.name


@pytest.mark.parametrize(("extractor", "suffix"), ALL_CASES, ids=[f"{e.name}{s}" for e, s in ALL_CASES])
@ISOLATED
@given(data=st.binary(max_size=4096))
def test_random_bytes_through_the_isolation_boundary(extractor: Extractor, suffix: str, data: bytes) -> None:
    isolated(extractor, data, suffix)


@pytest.mark.parametrize(("extractor", "suffix"), ALL_CASES, ids=[f"{e.name}{s}" for e, s in ALL_CASES])
@ISOLATED
@given(
    changes=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=32
    )
)
def test_real_files_mutated_through_the_isolation_boundary(
    extractor: Extractor, suffix: str, changes: list[tuple[float, int]]
) -> None:
    seed = (
        Path(__file__).parent / "fixtures" / "hdf5" / "base.nxs"
        if suffix == ".nxs"
        else CORPUS / SEEDS[suffix]
    )
    if not seed.exists():
        pytest.skip(f"{seed} not found")
    data = bytearray(seed.read_bytes())
    for where, value in changes:
        data[int(where * len(data))] = value
    isolated(extractor, bytes(data), suffix)

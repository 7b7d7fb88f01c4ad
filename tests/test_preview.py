"""``ro-crate-preview.html``: written beside every crate, readable offline, escaped against hostile
names and contents (checked in a real headless Chromium), never written over someone else's."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.core.config import AgentConfig
from agent.core.naming import CRATE_NAME, PREVIEW_NAME
from agent.ingest.preview import MAX_ROWS, FileRow, _link, render_preview

from .conftest import REPO, read_sidecar, run_scan, sha256sum, validate_crate, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: A name a file may have on Linux (no "/"), which would run script if it reached the page unescaped.
HOSTILE = """<img src=x onerror="document.title='pwned'">.csv"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_every_crate_has_its_preview_and_the_crate_still_validates(
    tmp_path: Path, config: AgentConfig
) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(REPO / "sample_data" / "EXP-000123_alice", drop / "EXP-000123_alice")
    assert (await run_scan(drop, config.model_copy(update={"rules_dir": REPO / "rules"}))).ok
    page = (drop / "EXP-000123_alice" / PREVIEW_NAME).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for text in ("OD600_kinetics.csv", "PMN-20419", "Josiah Carberry", "2026-03-14T09:41:00+01:00", "valid"):
        assert text in page
    crate = json.loads((drop / "EXP-000123_alice" / CRATE_NAME).read_text())
    parts = crate["@graph"][1]["hasPart"]
    assert PREVIEW_NAME not in {p["@id"] for p in parts}  # the page is not data
    assert validate_crate(drop / "EXP-000123_alice").returncode == 0  # its HTML5 check included


async def test_hostile_names_and_contents_stay_text_in_a_real_browser(
    drop: Path, config: AgentConfig
) -> None:
    write(drop / "s" / HOSTILE, "<script>document.title='pwned'</script>,b\n1,2\n")
    write(drop / "s" / "notes.txt", "fine\n")
    assert (await run_scan(drop, config)).ok
    preview = drop / "s" / PREVIEW_NAME
    page = preview.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>document" not in page
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;.csv" in page
    dom = chromium("--dump-dom", preview.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert "<title>s</title>" in dom.stdout and "pwned</title>" not in dom.stdout
    assert "<img" not in dom.stdout and "<script" not in dom.stdout
    shot = drop.parent / "preview.png"
    chromium("--window-size=1280,800", f"--screenshot={shot}", preview.as_uri())
    assert shot.stat().st_size > 10_000  # a page was drawn, not a blank one


async def test_a_preview_written_by_someone_else_is_data(drop: Path, config: AgentConfig) -> None:
    theirs = "<!DOCTYPE html><html><body>Our own notes on this run</body></html>\n"
    write(drop / "s" / PREVIEW_NAME, theirs)
    write(drop / "s" / "a.csv", "1\n")
    report = await run_scan(drop, config)
    assert report.files_ingested == 2
    assert (drop / "s" / PREVIEW_NAME).read_text() == theirs
    assert read_sidecar(drop / "s" / PREVIEW_NAME)["sha256"] == sha256sum(drop / "s" / PREVIEW_NAME)


async def test_a_missing_preview_comes_back_without_rehashing(drop: Path, config: AgentConfig) -> None:
    write(drop / "s" / "a.csv", "1\n")
    await run_scan(drop, config)
    original = (drop / "s" / PREVIEW_NAME).read_bytes()
    (drop / "s" / PREVIEW_NAME).unlink()
    report = await run_scan(drop, config)
    assert report.bytes_hashed == 0 and (drop / "s" / PREVIEW_NAME).read_bytes() == original


def test_a_large_session_lists_its_first_files_and_says_how_many_more() -> None:
    root = {"@id": "./", "name": "big", "license": {"@id": "#license-not-chosen"}}
    files: list[FileRow] = [
        ({"@id": f"f{n}.csv", "name": f"f{n}.csv"}, None, {}) for n in range(MAX_ROWS + 5)
    ]
    page = "".join(render_preview(root, files, MAX_ROWS + 5, {}))
    assert page.count("<tr><td>") == MAX_ROWS
    assert "… and 5 more files, listed in ro-crate-metadata.json." in page


def test_only_web_mail_and_relative_links_become_links() -> None:
    root = {"@id": "./", "name": "s", "license": {"@id": "javascript:alert(1)"}}
    entity = {"@id": "a%20b.csv", "name": "a b.csv", "description": "d"}
    page = "".join(render_preview(root, [(entity, None, {})], 1, {}))
    assert 'href="javascript' not in page
    assert '<a href="a%20b.csv">a b.csv</a>' in page


@pytest.mark.parametrize("target", ["//evil.example/x", " //evil.example/x", "\\\\share\\x", "/\\host/x"])
def test_a_path_to_another_host_is_no_link(target: str) -> None:
    assert _link(target, "label") == "label"


@pytest.mark.parametrize("target", ["http://[x", "//[x", "https://[::1"])
def test_what_is_not_a_url_is_its_label_alone(target: str) -> None:
    assert _link(target, "label") == "label"


def test_links_within_the_crate_and_to_the_web_stay_links() -> None:
    for target in ("s1/a.csv", "a%20b.csv", "./", "https://example.org/x", "mailto:a@example.org"):
        assert _link(target, "l") == f'<a href="{html.escape(target, quote=True)}">l</a>'

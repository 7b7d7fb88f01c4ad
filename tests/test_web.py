"""The catalogue's web page in a real browser (Debian's chromium through chromium-driver), against a
hub with a real PostgreSQL filled through real agent events over a real NATS.

Screenshots go to $FAIR_TEST_ARTIFACTS (default: the test's temporary folder) as artefacts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.hub.config import WebSettings
from agent.hub.service import Hub
from tests.conftest import agent_cli, write
from tests.natsserver import NatsServer
from tests.pgserver import PostgresServer
from tests.test_fleet import agent_config, bus, hub_settings, hub_toml, running_hub, secret_file

__all__ = ["bus"]  # the fixture, imported for these tests

HOSTILE = "<img src=x onerror=alert(1)>.csv"


def _browser_missing() -> str | None:
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install chromium chromium-driver; .ci/run installs them)"
    return None


async def _fill(tmp_path: Path, bus: NatsServer, hub: Hub) -> None:
    """Two agents' sessions (one file with a hostile name) into the hub's catalogue, as real events."""
    first, drop1 = agent_config(tmp_path, "pc-1", bus)
    second, drop2 = agent_config(tmp_path, "pc-2", bus)
    session = drop1 / "EXP-000777_alice"
    write(session / "kinetics.csv", "time,od600\n0,0.1\n1,0.2\n")
    write(session / HOSTILE, "a,b\n1,2\n")
    write(drop2 / "EXP-000778_bob" / "spectrum.csv", "nm,abs\n400,0.5\n")
    for config, drop in ((first, drop1), (second, drop2)):
        done = await asyncio.to_thread(agent_cli, "scan", str(drop), "--config", str(config))
        assert done.returncode == 0, done.stderr[-2000:]
    assert hub.catalogue is not None
    for _ in range(100):
        if await hub.catalogue.count_files() == 3:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the catalogue did not get the three files")


@pytest.fixture
async def site(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> AsyncIterator[tuple[Hub, str]]:
    """A hub serving a filled catalogue on a free loopback port: (hub, base URL)."""
    settings = hub_settings(tmp_path, bus, pg_server, pg_database).model_copy(
        update={"web": WebSettings(port=0)}
    )
    async with running_hub(settings) as hub:
        await _fill(tmp_path, bus, hub)
        yield hub, hub.web.url


async def test_search_to_session_in_a_real_browser(site: tuple[Hub, str], tmp_path: Path) -> None:
    if reason := _browser_missing():
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, base = site
    shots = Path(os.environ.get("FAIR_TEST_ARTIFACTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    def browse() -> dict[str, Any]:
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
            options.add_argument(flag)
        options.binary_location = shutil.which("chromium") or "chromium"
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(shutil.which("chromedriver"))
        )
        try:
            driver.get(base)
            field = driver.find_element(By.NAME, "experiment")
            field.send_keys("EXP-000777")
            field.send_keys(Keys.ENTER)
            count = driver.find_element(By.ID, "count").text
            driver.save_screenshot(str(shots / "search.png"))
            driver.find_element(By.PARTIAL_LINK_TEXT, "EXP-000777_alice").click()
            heading = driver.find_element(By.TAG_NAME, "h1").text
            rows = [
                [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in driver.find_elements(By.CSS_SELECTOR, "tbody tr")
            ]
            images = driver.find_elements(By.TAG_NAME, "img")
            driver.save_screenshot(str(shots / "session.png"))
            driver.set_window_size(390, 844)  # a phone
            driver.save_screenshot(str(shots / "session-phone.png"))
            return {"count": count, "heading": heading, "rows": rows, "images": len(images)}
        finally:
            driver.quit()

    seen = await asyncio.to_thread(browse)
    assert seen["count"].startswith("2 file(s)"), seen
    assert seen["heading"] == "Session EXP-000777_alice"
    files = {row[0]: row for row in seen["rows"]}
    assert set(files) == {"EXP-000777_alice/kinetics.csv", f"EXP-000777_alice/{HOSTILE}"}
    # File, size, format, sha256, acquired, validation, drift, stored at, safe to delete.
    kinetics = files["EXP-000777_alice/kinetics.csv"]
    assert kinetics[1] == "23 B" and kinetics[3].endswith("…") and kinetics[5] == "valid"
    assert kinetics[7] == "not stored yet" and kinetics[8] == "no"
    assert seen["images"] == 0  # the hostile name made no element
    assert (shots / "session.png").stat().st_size > 1000


async def test_hostile_names_are_text_and_every_answer_carries_the_csp(site: tuple[Hub, str]) -> None:
    _, base = site
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/sessions/pc-1/drop/EXP-000777_alice")
        assert page.status_code == 200
        assert "<img src=x" not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;.csv" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        for path in ("/", "/agents", "/api/search?q=kinetics", "/api/agents", "/nothing-here"):
            answer = await client.get(path)
            assert "default-src 'none'" in answer.headers["content-security-policy"], path


async def test_the_api_and_catalogue_search_give_the_same_records(
    site: tuple[Hub, str], tmp_path: Path
) -> None:
    hub, base = site
    async with httpx.AsyncClient(base_url=base) as client:
        api = (await client.get("/api/search", params={"experiment": "EXP-000777"})).json()
        session = (await client.get("/api/sessions/pc-1/drop/EXP-000777_alice")).json()
        agents = (await client.get("/api/agents")).json()
        schema = (await client.get("/openapi.json")).json()
    cli = await asyncio.to_thread(
        agent_cli,
        "catalogue",
        "search",
        "--experiment",
        "EXP-000777",
        "--json",
        "--config",
        str(hub_toml(tmp_path, hub.settings.model_copy(update={"web": None}))),
    )
    assert cli.returncode == 0, cli.stderr
    assert api["results"] == json.loads(cli.stdout)
    assert api["total"] == 2
    assert {f["path"] for f in session["files"]} == {
        "EXP-000777_alice/kinetics.csv",
        f"EXP-000777_alice/{HOSTILE}",
    }
    assert {a["agent"] for a in agents} == {"pc-1", "pc-2"}
    assert all(len(a["activity"]) == 30 and not a["quiet"] for a in agents)
    assert {"/api/search", "/api/agents", "/api/sessions/{agent}/{root}/{session}"} <= set(schema["paths"])


async def test_a_token_is_required_when_configured(
    tmp_path: Path, bus: NatsServer, pg_server: PostgresServer, pg_database: str
) -> None:
    token = "t0k3n-" + os.urandom(12).hex()
    web = WebSettings(port=0, token_file=secret_file(tmp_path / "web.token", token + "\n"))
    settings = hub_settings(tmp_path, bus, pg_server, pg_database).model_copy(update={"web": web})
    async with running_hub(settings) as hub, httpx.AsyncClient(base_url=hub.web.url) as client:
        assert (await client.get("/api/agents")).status_code == 401
        assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (
            await client.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200


def test_the_hub_refuses_to_serve_beyond_loopback_unprotected(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        '[hub]\nbus_url = "nats://127.0.0.1:4222"\ncatalogue_dsn = "postgresql://fair@127.0.0.1/fair"\n'
        '[hub.web]\naddress = "0.0.0.0"\n'
    )
    refused = agent_cli("hub", "--config", str(config))
    assert refused.returncode == 3
    assert "beyond loopback" in refused.stderr and "token_file or trusted_proxy" in refused.stderr

"""Prometheus metrics, scraped over HTTP from a running service."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.core.config import AgentConfig
from agent.core.naming import sidecar_name
from agent.ledger import Ledger
from agent.service.daemon import Service

from .conftest import live_config, wait_for, write


async def scrape(url: str) -> dict[str, float]:
    """Every sample of the exposition, keyed by name and labels as Prometheus prints them."""
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_metrics_move_as_files_are_ingested(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    rules = write(
        drop.parent / "rules" / "strict.toml",
        'match = ["bad-*/**"]\ndataset_type = "strict"\n[path]\npattern = "^bad-(?P<run>\\\\d+)/"\n'
        '[validation.run]\nrequired = true\ntype = "integer"\nmax = 10',
    ).parent
    config = AgentConfig.model_validate(
        {
            **live_config(config, drop).model_dump(),
            "rules_dir": rules,
            "metrics": {"enabled": True, "address": "127.0.0.1", "port": 0},
        }
    )
    async with Service(config, ledger).running() as service:
        assert service.metrics_endpoint is not None
        url = service.metrics_endpoint.url
        before = await scrape(url)
        assert before["fair_agent_files_ingested_total"] == 0
        assert (
            before[
                f'fair_agent_build_info{{python="{__import__("platform").python_version()}",version="{__version__}"}}'
            ]
            == 1
        )
        assert before["fair_agent_last_successful_batch_timestamp_seconds"] == 0

        write(drop / "run-1" / "a.csv", "x,y\n1,2\n")
        write(drop / "run-1" / "b.bin", b"\0" * 1000)
        await wait_for(lambda: len(service.tracker) == 1)
        pending = await scrape(url)
        assert pending["fair_agent_sessions_pending"] == 1
        await wait_for(lambda: Path(sidecar_name(str(drop / "run-1" / "b.bin"))).exists())
        await wait_for(lambda: service.idle)

        after = await scrape(url)
        assert after["fair_agent_files_ingested_total"] == 2
        assert after["fair_agent_ingested_bytes_total"] == 8 + 1000
        assert after["fair_agent_batches_total"] == 1
        assert after["fair_agent_batch_duration_seconds_count"] >= 1
        assert after["fair_agent_hash_slot_wait_seconds_count"] >= 1
        assert (
            after["fair_agent_last_successful_batch_timestamp_seconds"]
            > before["fair_agent_start_time_seconds"] - 1
        )
        assert after["fair_agent_sessions_pending"] == 0 and after["fair_agent_queue_depth"] == 0
        assert after["fair_agent_helper_processes"] == 0  # a burst starts them (test_offload)
        assert after['fair_agent_retries_total{kind="changing"}'] == 0
        assert after["fair_agent_dead_letters_total"] == 0

        # A session its rule rejects counts as a validation failure of its dataset type.
        write(drop / "bad-99" / "a.csv", "x\n1\n")
        await wait_for(lambda: (drop / "bad-99.fair.error.json").exists())
        await wait_for(lambda: service.idle)
        rejected = await scrape(url)
        assert rejected['fair_agent_validation_failures_total{dataset_type="strict"}'] == 1
        assert rejected["fair_agent_dead_letters_total"] == 1
        assert rejected["fair_agent_files_ingested_total"] == 2


async def test_metrics_are_off_by_default(drop: Path, config: AgentConfig, ledger: Ledger) -> None:
    async with Service(live_config(config, drop), ledger).running() as service:
        assert service.metrics_endpoint is None
    assert config.metrics.address == "127.0.0.1"

"""A helper process of the service (see offload): ``python -m agent.service.offloadworker PARENT_PID``.

Reads its OffloadJob on standard input, then batches, each a pickled (number, Batch), and ingests
them with its own pipeline and ledger connection, ``workers`` at a time. It answers on the
standard output it was started with, each answer a length and a pickle: "ready" once it can take
batches, then an Answer for each batch. When its standard input closes it finishes the batches it
holds and ends; SIGTERM ends it at once (what it held is redone by the service, from the ledger).
Its logs go to standard error, as the service's own do.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from .children import die_with_parent, take_standard_output, write_all
from .offload import FRAME, Answer

log = logging.getLogger("fair_agent.workers")

if TYPE_CHECKING:
    from ..core.batch import Batch
    from ..ingest.pipeline import Pipeline
    from .offload import OffloadJob


class _Answers:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, message: Any) -> None:
        data = pickle.dumps(message)
        write_all(self._fd, FRAME.pack(len(data)) + data)


def _read_batches(loop: asyncio.AbstractEventLoop, batches: asyncio.Queue[tuple[int, Batch] | None]) -> None:
    """In a thread: each batch from standard input to the loop; None when it closes."""
    try:
        while True:
            item = pickle.load(sys.stdin.buffer)
            loop.call_soon_threadsafe(batches.put_nowait, item)
    except (EOFError, OSError):
        pass
    finally:
        loop.call_soon_threadsafe(batches.put_nowait, None)


async def _serve(job: OffloadJob, answers: _Answers) -> None:
    from ..ingest.curate import load_rule_set
    from ..ingest.pipeline import own_pipeline
    from ..ledger import Ledger

    config = job.config
    seconds: list[float] = []
    rules = await asyncio.to_thread(load_rule_set, config)
    async with Ledger.open(config.ledger_path) as ledger:
        with own_pipeline(config, ledger, rules, on_batch=seconds.append) as pipeline:
            await _ingest_batches(pipeline, config.workers, seconds, answers)


async def _ingest_batches(pipeline: Pipeline, workers: int, seconds: list[float], answers: _Answers) -> None:
    """Batches from standard input, ``workers`` at a time, each answered, until it closes."""

    async def ingest(number: int, batch: Batch) -> None:
        retry = None
        try:
            retry = await pipeline.process_batch(batch)
        except Exception:  # as the service's own worker pool does: said, and the batch let go
            log.exception("worker caught an unexpected error")
        finally:
            slots.release()
        durations = tuple(seconds)
        seconds.clear()
        answers.send(Answer(number, retry, durations, pipeline.tally))

    loop = asyncio.get_running_loop()
    batches: asyncio.Queue[tuple[int, Batch] | None] = asyncio.Queue()
    threading.Thread(target=_read_batches, args=(loop, batches), daemon=True).start()
    slots = asyncio.Semaphore(workers)
    running: set[asyncio.Task[None]] = set()
    answers.send("ready")
    while (item := await batches.get()) is not None:
        await slots.acquire()
        task = asyncio.create_task(ingest(*item))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)


def main() -> int:
    die_with_parent(int(sys.argv[1]))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    job: OffloadJob = pickle.load(sys.stdin.buffer)
    answers = _Answers(take_standard_output(job.logging))
    asyncio.run(_serve(job, answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

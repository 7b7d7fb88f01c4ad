"""Where the service's batches go (service.room): its own workers first, the oldest batch first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from agent.service.room import LOCAL, Room
from agent.service.workers import WorkerPool


class Helper:
    """A helper with ``room`` places: each promised to an item, or given back."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.given_back = 0

    def give_back(self) -> None:
        self.room += 1
        self.given_back += 1


def helper_with_room(helper: Helper, local_only: Collection[str] = ()) -> Callable[[str], Helper | None]:
    """Room's helper_for: the helper while it has room, for any item but those in ``local_only``."""

    def helper_for(item: str) -> Helper | None:
        if item in local_only or not helper.room:
            return None
        helper.room -= 1
        return helper

    return helper_for


async def test_a_freed_place_goes_to_the_item_that_waited_longest_not_to_a_newcomer() -> None:
    room: Room[str, Helper] = Room(1, lambda item: None)
    assert await room.place_for("a") is LOCAL
    b = asyncio.ensure_future(room.place_for("b"))
    c = asyncio.ensure_future(room.place_for("c"))
    await asyncio.sleep(0)
    room.free_local()  # a is done...
    d = asyncio.ensure_future(room.place_for("d"))  # ...as d comes off the queue
    await asyncio.sleep(0)
    assert b.done() and b.result() is LOCAL
    assert not c.done() and not d.done() and room.waiting == 2
    room.free_local()
    await asyncio.sleep(0)
    assert c.done() and not d.done()


async def test_an_item_only_the_service_may_take_lets_the_next_go_to_a_helper() -> None:
    helper = Helper(room=0)
    room: Room[str, Helper] = Room(0, helper_with_room(helper, local_only={"lost"}))
    lost = asyncio.ensure_future(room.place_for("lost"))
    other = asyncio.ensure_future(room.place_for("other"))
    await asyncio.sleep(0)
    helper.room = 1
    room.give()  # the helper answered a batch
    await asyncio.sleep(0)
    assert other.done() and other.result() is helper
    assert not lost.done()
    room.free_local()
    await asyncio.sleep(0)
    assert lost.result() is LOCAL


async def test_closed_every_item_waiting_and_every_later_one_gets_no_place() -> None:
    room: Room[str, Helper] = Room(0, lambda item: None)
    waiting = asyncio.ensure_future(room.place_for("a"))
    await asyncio.sleep(0)
    room.close()
    assert await waiting is None
    assert await room.place_for("b") is None


async def test_a_place_given_to_an_item_cancelled_before_it_took_it_is_given_back() -> None:
    helper = Helper(room=0)
    room: Room[str, Helper] = Room(0, helper_with_room(helper))
    first = asyncio.ensure_future(room.place_for("a"))
    second = asyncio.ensure_future(room.place_for("b"))
    await asyncio.sleep(0)
    helper.room = 1
    room.give()  # promised to a, which is cancelled before it runs
    first.cancel()
    await asyncio.sleep(0)
    assert first.cancelled() and helper.given_back == 1
    await asyncio.sleep(0)
    assert second.done() and second.result() is helper, "the place given back went to the next"


async def test_a_pool_with_more_tasks_than_places_ingests_in_the_order_of_the_queue() -> None:
    """The service's pool: a task for each place of its own and each of its helpers', the helpers
    not started. Before Room, a waiting batch was overtaken by every newer one until the queue
    emptied (batches 1 and 2 of 200 finished last)."""
    room: Room[int, Helper] = Room(1, lambda item: None)
    finished: list[int] = []

    async def ingest(n: int) -> None:
        place = await room.place_for(n)
        assert place is LOCAL
        try:
            await asyncio.sleep(0.001)
            finished.append(n)
        finally:
            room.free_local()

    pool = WorkerPool(ingest, workers=3, queue_size=8)
    pool.start()
    for n in range(100):
        await pool.submit(n)
    await pool.join()
    await pool.shutdown(0)
    assert finished == list(range(100))


async def test_an_item_cancelled_while_it_waits_leaves_no_place_behind() -> None:
    room: Room[str, Helper] = Room(1, lambda item: None)
    assert await room.place_for("a") is LOCAL
    cancelled = asyncio.ensure_future(room.place_for("b"))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert room.waiting == 0
    room.free_local()
    assert await room.place_for("c") is LOCAL, "the freed place was kept for the cancelled item"


async def test_an_item_a_failing_helper_for_cannot_place_waits_for_a_place_of_the_service() -> None:
    def helper_for(item: str) -> Helper | None:
        raise RuntimeError("a bug")

    room: Room[str, Helper] = Room(0, helper_for)
    waiting = asyncio.ensure_future(room.place_for("a"))
    await asyncio.sleep(0)
    assert not waiting.done() and room.waiting == 1
    room.free_local()
    assert await waiting is LOCAL


async def test_room_given_or_closed_before_a_cancelled_item_leaves_the_line_skips_it() -> None:
    """Between a cancel and the cancelled task's next step, other callbacks may give room."""
    room: Room[str, Helper] = Room(1, lambda item: None)
    assert await room.place_for("a") is LOCAL
    cancelled = asyncio.ensure_future(room.place_for("b"))
    later = asyncio.ensure_future(room.place_for("c"))
    await asyncio.sleep(0)
    cancelled.cancel()  # its future is cancelled now, its task runs later
    room.free_local()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert await later is LOCAL and room.waiting == 0
    last = asyncio.ensure_future(room.place_for("d"))
    await asyncio.sleep(0)
    last.cancel()
    room.close()
    await asyncio.gather(last, return_exceptions=True)
    assert last.cancelled() and room.waiting == 0

"""Where the service ingests a batch: with one of its own workers, or in a helper process
(offload), the batch that has waited longest first.

The service's pool runs a task for each of its own workers and for each slot its helpers may have,
so that a batch goes to whichever frees first. In a burst every task holds a batch; out of one
(no helper started, or one that could not start) the tasks beyond the service's own workers hold
batches that wait here. Room is handed over, not announced: a worker that frees gives its place to
the oldest batch waiting, where a wake-up let the next batch off the queue take it first, again
and again while the queue was not empty, and a waiting batch (its session counted in flight,
never sealed again meanwhile) waited for the queue to empty.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("fair_agent.offload")


class Local(enum.Enum):
    """A place among the service's own workers."""

    LOCAL = "local"


LOCAL = Local.LOCAL


class Promising(Protocol):
    """A helper as Room sees it: one of its places was promised to an item, which may give it back
    unused (it was cancelled before it could take it)."""

    def give_back(self) -> None: ...


Helper = TypeVar("Helper", bound=Promising)
Item = TypeVar("Item")


@dataclass(slots=True)
class _Waiting(Generic[Item, Helper]):
    item: Item
    place: asyncio.Future[Local | Helper | None]


class Room(Generic[Item, Helper]):
    """``local`` places of the service's own, and the helpers' (``helper_for``: a helper with room
    for the item, its place promised to it; None if none may take it), handed out in order of
    arrival to the items that can take them."""

    def __init__(self, local: int, helper_for: Callable[[Item], Helper | None]) -> None:
        self._free = local
        self._helper_for = helper_for
        self._waiting: deque[_Waiting[Item, Helper]] = deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        """Items waiting for a place."""
        return len(self._waiting)

    async def place_for(self, item: Item) -> Local | Helper | None:
        """A place for ``item`` once it is its turn: LOCAL (give it back with ``free_local``), or a
        helper whose place is promised to it. None once Room is closed (the service stops)."""
        if self._closed:
            return None
        waiting: _Waiting[Item, Helper] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        try:
            self.give()
            return await waiting.place
        except BaseException:
            # Cancelled after a place was given, before the item could take it: the place goes
            # back. Cancelled while it waited (its future cancelled with it): it waits no more.
            if waiting.place.done() and not waiting.place.cancelled():
                if (place := waiting.place.result()) is not None:
                    self._give_back(place)
            elif waiting in self._waiting:
                self._waiting.remove(waiting)
            raise

    def free_local(self) -> None:
        """One of the service's own places is free again."""
        self._free += 1
        self.give()

    def give(self) -> None:
        """Hand out what is free, oldest item first. Called whenever room may have appeared: a
        place freed, a helper became ready or answered, an item arrived."""
        for waiting in list(self._waiting):
            if waiting.place.done():
                continue  # cancelled: its item leaves the line when it runs
            place: Local | Helper | None = None
            if self._free:
                self._free -= 1
                place = LOCAL
            else:
                # An item only the service's own workers may take waits; the next may go to a helper.
                try:
                    place = self._helper_for(waiting.item)
                except Exception:  # a bug: said, and the item waits for a place of the service's
                    log.exception("could not ask for a helper's place")
            if place is None:
                continue
            self._waiting.remove(waiting)
            waiting.place.set_result(place)

    def close(self) -> None:
        """No more places: every item waiting, and every later one, gets None."""
        self._closed = True
        while self._waiting:
            place = self._waiting.popleft().place
            if not place.done():
                place.set_result(None)

    def _give_back(self, place: Local | Helper) -> None:
        if place is LOCAL:
            self.free_local()
        else:
            assert not isinstance(place, Local)
            place.give_back()
            self.give()

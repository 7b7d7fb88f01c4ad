"""The agent's connection to the event bus (NATS JetStream), and what its failures mean.

The agent connects with its own inbox prefix (``_INBOX_<agent>``), so the bus can allow it to read
replies to itself and nothing else; its subjects are its own (``fair.v1.<agent>.>``, see
core.events). Failures leave here as ``BusUnavailableError`` (everything waits, with backoff) or
``EventRefusedError`` (this one event can never be published).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from ..core.config import BusSettings
from ..core.errors import RetryableError, TerminalError
from ..core.events import subject_token
from .credentials import bus_credentials

log = logging.getLogger("fair_agent.bus")
#: Seconds the first connection to the bus may take (every server of the list tried).
FIRST_CONNECT_S = 15.0
#: The least a connection is given, however near the caller's deadline: one try.
ONE_TRY_S = 2.0


class BusUnavailableError(RetryableError):
    """The bus cannot be reached, refuses the agent, or cannot take events now."""

    advice = (
        "Check [bus] url and credentials_file, and that the hub has created its stream; the agent "
        "keeps its events and tries again by itself."
    )


class EventRefusedError(TerminalError):
    """The bus will never take this event (larger than the server allows)."""


#: How the server names the subject of a publish it refused this connection.
_REFUSED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


class BusErrors:
    """What the bus said on one connection outside any reply (a permission refused): the last of it
    explains the failures it causes. The server refuses a publish at once, but a JetStream publish
    waits for an acknowledgement that never comes until it times out; ``refusal`` ends that wait."""

    def __init__(self) -> None:
        self.said: list[str] = []
        #: Subjects the bus acknowledged a publish on: no refusal is waited for on them any more.
        self.accepted: set[str] = set()
        #: What the bus said refusing each subject it refused.
        self._refused: dict[str, str] = {}
        self._heard = asyncio.Event()

    def hear(self, text: str) -> None:
        self.said.append(text)
        if (refused := _REFUSED_PUBLISH.search(text)) is not None:
            self._refused[refused[1]] = text
            self._heard.set()

    async def refusal(self, subject: str) -> str:
        """Once the bus has refused a publish on ``subject``: what it said."""
        while subject not in self._refused:
            self._heard.clear()
            await self._heard.wait()
        return self._refused[subject]


async def connect(
    settings: BusSettings, agent_name: str, *, errors: BusErrors, deadline: float | None = None
) -> Any:
    """A connected NATS client; what the bus says outside replies (a permission refused) goes to
    ``errors``. It gives up at ``deadline`` (time.monotonic()), but not before one try: a `scan`
    told to give up on the bus after 5 s must not wait FIRST_CONNECT_S first."""
    within = FIRST_CONNECT_S
    if deadline is not None:
        within = min(within, max(ONE_TRY_S, deadline - time.monotonic()))
    import nats

    async def on_error(exc: Exception) -> None:
        errors.hear(str(exc))
        log.warning(f"bus: {exc}")

    try:
        # Bounded: with reconnects allowed, nats-py's first connect would retry for ever, and a
        # scan could never give up on a bus that is down.
        return await asyncio.wait_for(_connect(nats, settings, agent_name, on_error), within)
    except Exception as exc:
        raise BusUnavailableError(f"cannot connect to the bus at {settings.url}: {_words(exc)}") from None


async def _connect(nats: Any, settings: BusSettings, agent_name: str, on_error: Any) -> Any:
    return await nats.connect(
        servers=settings.servers,
        name=f"fair-agent {agent_name}",
        inbox_prefix=f"_INBOX_{subject_token(agent_name)}",
        connect_timeout=5,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=2,
        error_cb=on_error,
        **bus_credentials(settings),
    )


def classify(exc: BaseException, subject: str, problems: list[str]) -> Exception:
    """What a failed publish means."""
    from nats.errors import MaxPayloadError
    from nats.js.errors import APIError, NoStreamResponseError

    if isinstance(exc, (BusUnavailableError, EventRefusedError)):
        return exc  # classified already
    if isinstance(exc, MaxPayloadError):
        return EventRefusedError(f"the event is larger than the bus allows ({exc})")
    if isinstance(exc, NoStreamResponseError):
        return BusUnavailableError(
            f"no JetStream stream takes {subject}: start the hub (it creates the stream), "
            "or check that this agent may publish there"
            + (f" (the bus said: {problems[-1]})" if problems else "")
        )
    if isinstance(exc, APIError) and "maximum" in str(exc).lower():
        return BusUnavailableError(f"the hub's stream is full and refuses new events for now ({exc})")
    said = f" (the bus said: {problems[-1]})" if problems else ""
    return BusUnavailableError(f"cannot publish to {subject}: {_words(exc)}{said}")


def _words(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"

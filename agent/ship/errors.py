"""What can go wrong while shipping, in words a person can act on."""

from __future__ import annotations

from ..core.errors import RetryableError


class StoreUnavailableError(RetryableError):
    """The store cannot be reached or refuses the agent: everything waits, and is tried again."""

    advice = (
        "Check the endpoint, the bucket and the credentials in [store]; the agent keeps the backlog "
        "and tries again by itself."
    )


class ObjectRejectedError(RetryableError):
    """The server refused these bytes (its checksum of what arrived differs from the agent's)."""

    advice = "The file is read and sent again; if it keeps happening, the file is still being written."

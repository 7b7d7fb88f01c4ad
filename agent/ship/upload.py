"""One file version to its content-addressed object: looked up first, sent whole or in parts.

The bytes sent are hashed while they are read, and the server checks each request against the
checksum it carries. A file whose bytes no longer hash to the ledger's SHA-256 is never stored
under it: a single PUT is not sent, a multipart upload is aborted before completion, and the file
is reported as changed. A multipart upload is recorded in the ledger before its first part and
each part as it completes, so a restart sends only what was in flight.

Every blocking step runs in the shipper's threads, each under one of its ``slots`` (at most
``concurrency`` requests or part readings at once). Each step opens the file itself: a step that
outlives a cancelled caller never reads through a descriptor someone else closed.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from ..core.errors import FileReadError
from ..fs.buffers import read_buffer
from ..fs.safepath import open_file_beneath
from ..ledger.outbox import LostState, Outbox, Shipment, UploadedPart
from .errors import ObjectRejectedError, StoreUnavailableError
from .keys import data_key
from .objectstore import (
    SHA256_METADATA,
    FileRange,
    ObjectStore,
    UploadGoneError,
    b64,
    composite_checksum,
)

log = logging.getLogger("fair_agent.ship")
T = TypeVar("T")
Run = Callable[[Callable[[], T]], Awaitable[T]]

#: Files up to this size are read into memory once (hashed and sent from the same bytes).
WHOLE_IN_MEMORY = 8 << 20
_READ_CHUNK = 1 << 20
#: S3 allows at most this many parts per upload.
MAX_PARTS = 10_000
#: An unfinished upload of a key this old was left by a crashed uploader (of any PC): aborted.
STALE_UPLOAD = timedelta(days=1)


class FileLostError(Exception):
    """The file no longer holds the ledger's bytes (or is gone): never shipped under them."""

    def __init__(self, state: LostState, reason: str) -> None:
        super().__init__(reason)
        self.state = state


@dataclass(slots=True)
class Sent:
    """What shipping one file took: bytes and parts actually sent (0 when already stored)."""

    bytes: int = 0
    parts: int = 0
    resumed_parts: int = 0


def part_size_for(size: int, configured: int) -> int:
    """The configured part size, or the smallest whole MiB that keeps a file within 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(configured, -(-needed // (1 << 20)) << 20)


def part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part number, offset, length) of each part."""
    return [
        (i + 1, offset, min(part_size, size - offset)) for i, offset in enumerate(range(0, size, part_size))
    ]


class Uploader:
    def __init__(
        self,
        store: ObjectStore,
        outbox: Outbox,
        run: Run[Any],
        slots: asyncio.Semaphore,
        on_bytes: Callable[[int], None],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self._run = run
        self._slots = slots
        self._on_bytes = on_bytes
        self._prefix = store.settings.prefix
        self._part_size = store.settings.part_size

    async def ship(self, shipment: Shipment) -> tuple[str, Sent]:
        """Store the file's bytes under their hash; returns the key and what was sent.

        Raises FileLostError, FileReadError, ObjectRejectedError, StoreUnavailableError.
        """
        key = data_key(self._prefix, shipment.sha256)
        if shipment.size <= self._part_size and shipment.upload_id is None:
            async with self._slots:
                sent = await self._run(lambda: self._ship_whole(shipment, key))
            self._on_bytes(shipment.size)
            return key, sent
        return key, await self._ship_in_parts(shipment, key)

    def _ship_whole(self, shipment: Shipment, key: str) -> Sent:
        found = self.store.head(key)
        if found is not None and found.holds(shipment.sha256, shipment.size):
            return Sent()
        with _opened(shipment) as fd:
            body: bytes | FileRange
            if shipment.size <= WHOLE_IN_MEMORY:
                body = _read_exactly(fd, shipment)
                digest = hashlib.sha256(body).digest()
            else:
                digest = _hash_range(fd, 0, shipment.size, None)
                body = FileRange(fd, 0, shipment.size)
            _same_bytes(shipment, digest)
            checksum = b64(digest)
            answered = self.store.put(key, body, checksum, {SHA256_METADATA: shipment.sha256})
        _server_agrees(key, answered, checksum)
        return Sent(bytes=shipment.size, parts=1)

    async def _ship_in_parts(self, shipment: Shipment, key: str) -> Sent:
        async with self._slots:
            found = await self._run(lambda: self.store.head(key))
        if found is not None and found.holds(shipment.sha256, shipment.size):
            if shipment.upload_id is not None:
                # Stored meanwhile (another PC, another row): our unfinished upload goes.
                async with self._slots:
                    await self._run(lambda: self.store.abort(key, shipment.upload_id or ""))
            self._on_bytes(shipment.size)
            return Sent()
        upload_id, part_size, done = await self._resume(shipment, key)
        if upload_id is None:
            upload_id, part_size = await self._begin(shipment, key)
        sent = Sent(resumed_parts=len(done))
        parts = await self._send_parts(shipment, key, upload_id, part_size, done, sent)
        listed = [
            {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.checksum_sha256} for p in parts
        ]
        async with self._slots:
            try:
                answered = await self._run(lambda: self.store.complete(key, upload_id, listed))
            except UploadGoneError:
                await self.outbox.forget_upload(shipment.id)
                raise
        _server_agrees(key, answered, composite_checksum([p.checksum_sha256 for p in parts]))
        return sent

    async def _resume(self, shipment: Shipment, key: str) -> tuple[str | None, int, dict[int, UploadedPart]]:
        """The recorded upload and the parts both the ledger and the server hold."""
        upload_id, part_size = shipment.upload_id, shipment.upload_part_size or 0
        if upload_id is None:
            return None, 0, {}
        try:
            async with self._slots:
                on_server = await self._run(lambda: self.store.list_parts(key, upload_id))
        except UploadGoneError:
            await self.outbox.forget_upload(shipment.id)
            return None, 0, {}
        recorded = await self.outbox.parts(shipment.id, upload_id)
        done = {n: p for n, p in recorded.items() if on_server.get(n) == (p.size, p.etag)}
        log.info(
            f"resuming the upload of {shipment.relpath!r}: {len(done)} part(s) already stored",
            extra={"file": shipment.relpath, "parts": len(done)},
        )
        return upload_id, part_size, done

    async def _begin(self, shipment: Shipment, key: str) -> tuple[str, int]:
        part_size = part_size_for(shipment.size, self._part_size)
        async with self._slots:
            upload_id = await self._run(lambda: self._create_upload(key, shipment.sha256))
        await self.outbox.record_upload(shipment.id, upload_id, part_size)
        return upload_id, part_size

    def _create_upload(self, key: str, sha256: str) -> str:
        # Uploads of this key left for a day by a crashed uploader (ours from before this ledger
        # knew them, or another PC's) will never be completed: abort them, not let them pile up.
        cutoff = datetime.now(UTC) - STALE_UPLOAD
        for stale, initiated in self.store.uploads_of(key):
            if initiated < cutoff:
                self.store.abort(key, stale)
        return self.store.create_upload(key, {SHA256_METADATA: sha256})

    async def _send_parts(
        self,
        shipment: Shipment,
        key: str,
        upload_id: str,
        part_size: int,
        done: dict[int, UploadedPart],
        sent: Sent,
    ) -> list[UploadedPart]:
        """Read the file once in order (the whole-file hash), sending the parts the server lacks."""
        whole = hashlib.sha256()
        sending: list[asyncio.Task[UploadedPart]] = []
        parts: dict[int, UploadedPart] = dict(done)
        try:
            for number, offset, length in part_ranges(shipment.size, part_size):
                if any(t.done() and not t.cancelled() and t.exception() for t in sending):
                    break
                await self._slots.acquire()
                try:
                    digest = await self._run(partial(_hash_part, shipment, offset, length, whole))
                except BaseException:
                    self._slots.release()
                    raise
                checksum = b64(digest)
                if number in done:
                    self._slots.release()
                    if done[number].checksum_sha256 != checksum:
                        raise FileLostError("changed", _changed_message(shipment))
                    self._on_bytes(length)
                    continue
                task = asyncio.create_task(
                    self._send_part(shipment, key, upload_id, (number, offset, length), checksum, sent)
                )
                # The slot taken for the reading goes with the part, and comes back when its task
                # ends in any way (even cancelled before it began).
                task.add_done_callback(lambda _: self._slots.release())
                sending.append(task)
            # Every part is in flight or waiting: finished ones, failed ones, all of them.
            for part in await asyncio.gather(*sending, return_exceptions=True):
                if isinstance(part, BaseException):
                    raise part
                parts[part.number] = part
            if whole.hexdigest() != shipment.sha256:
                raise FileLostError("changed", _changed_message(shipment))
        except FileLostError:
            # Parts still in flight could land after an abort: let them end first.
            await asyncio.gather(*sending, return_exceptions=True)
            async with self._slots:
                await self._run(lambda: self.store.abort(key, upload_id))
            raise
        finally:
            await asyncio.gather(*sending, return_exceptions=True)
        return [parts[n] for n in sorted(parts)]

    async def _send_part(
        self,
        shipment: Shipment,
        key: str,
        upload_id: str,
        part: tuple[int, int, int],
        checksum: str,
        sent: Sent,
    ) -> UploadedPart:
        number, _, length = part
        etag, answered = await self._run(lambda: self._upload_part(shipment, key, upload_id, part, checksum))
        _server_agrees(f"{key} part {number}", answered, checksum)
        uploaded = UploadedPart(number, length, etag, checksum)
        await self.outbox.record_part(shipment.id, upload_id, uploaded)
        sent.bytes += length
        sent.parts += 1
        self._on_bytes(length)
        return uploaded

    def _upload_part(
        self, shipment: Shipment, key: str, upload_id: str, part: tuple[int, int, int], checksum: str
    ) -> tuple[str, str | None]:
        number, offset, length = part
        with _opened(shipment) as fd:
            return self.store.upload_part(key, upload_id, number, FileRange(fd, offset, length), checksum)


class _opened:
    """The shipment's file, opened without following symlinks, closed on leaving."""

    def __init__(self, shipment: Shipment) -> None:
        self._shipment = shipment
        self._fd = -1

    def __enter__(self) -> int:
        s = self._shipment
        if not s.root_path.is_dir():
            # An unmounted share or disk: the file is not lost, only out of reach for now.
            raise FileReadError(f"the watch root {s.root_name!r} is not available; {s.relpath!r} waits")
        try:
            self._fd = open_file_beneath(s.root_path, s.relpath)
        except FileNotFoundError:
            raise FileLostError(
                "missing", f"{s.relpath!r} was removed before it was shipped; version {s.version} is lost"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FileLostError("changed", f"{s.relpath!r} was replaced by a symlink") from None
            raise FileReadError(f"cannot open {s.relpath!r} to ship it: {exc.strerror or exc}") from None
        if os.fstat(self._fd).st_size != s.size:
            os.close(self._fd)
            raise FileLostError("changed", _changed_message(s))
        return self._fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _hash_part(shipment: Shipment, offset: int, length: int, whole: Any) -> bytes:
    with _opened(shipment) as fd:
        return _hash_range(fd, offset, length, whole)


def _hash_range(fd: int, offset: int, length: int, whole: Any) -> bytes:
    """The SHA-256 of a range, feeding ``whole`` (the file's running hash) with the same bytes."""
    digest = hashlib.sha256()
    buffer = read_buffer(min(_READ_CHUNK, max(length, 1)))
    view = memoryview(buffer)
    position, end = offset, offset + length
    while position < end:
        n = os.preadv(fd, [view[: min(len(buffer), end - position)]], position)
        if n == 0:
            raise OSError(errno.EIO, "the file ended early")
        digest.update(view[:n])
        if whole is not None:
            whole.update(view[:n])
        position += n
    return digest.digest()


def _read_exactly(fd: int, shipment: Shipment) -> bytes:
    data = os.pread(fd, shipment.size + 1, 0)
    if len(data) != shipment.size:
        raise FileLostError("changed", _changed_message(shipment))
    return data


def _same_bytes(shipment: Shipment, digest: bytes) -> None:
    if digest.hex() != shipment.sha256:
        raise FileLostError("changed", _changed_message(shipment))


def _server_agrees(what: str, answered: str | None, checksum: str) -> None:
    # The server already refused a body that did not match the header; a server that answers
    # with another checksum, or none (it may not check them at all), is not trusted either: the
    # bytes are hashed on one reading and sent from another.
    if answered is None:
        raise StoreUnavailableError(
            f"the store did not confirm the SHA-256 checksum of {what}: it may not verify "
            "checksums, and the agent will not store data it cannot prove intact there"
        )
    if answered != checksum:
        raise ObjectRejectedError(
            f"the store's checksum of {what} ({answered}) is not the agent's ({checksum})"
        )


def _changed_message(shipment: Shipment) -> str:
    return (
        f"{shipment.relpath!r} changed after it was ingested: its bytes are no longer those of "
        f"version {shipment.version}, which is not shipped; the new bytes are ingested and shipped "
        "as a new version"
    )

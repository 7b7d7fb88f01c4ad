"""The S3 calls the shipper makes, through boto3 (one client, one connection pool, many threads).

Every method blocks; the shipper runs them in its own threads. Each upload carries the SHA-256 of
its bytes (``x-amz-checksum-sha256``), so the server checks what arrived and refuses anything else
(BadDigest). Payload signing is off for that reason: it would hash every byte once more and, unlike
the checksum, not every server checks it against the body. Failures leave here as the ship errors:
the store unavailable (everything waits) or these bytes rejected (the file is sent again).
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from .. import __version__
from ..core.config import StoreSettings
from .credentials import Credentials
from .errors import ObjectRejectedError, StoreUnavailableError

T = TypeVar("T")
#: The user metadata key (x-amz-meta-sha256) holding the whole object's SHA-256 in hex: a
#: multipart object's own checksum is composite, a checksum of its parts' checksums.
SHA256_METADATA = "sha256"
_REJECTED_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
#: The upload cannot be completed as recorded: begin it again.
_GONE_CODES = {"NoSuchUpload", "InvalidPart", "InvalidPartOrder"}
#: Refusals of one object (its key, its size), not of the agent: that object waits, the rest goes on.
_OBJECT_CODES = {
    "KeyTooLongError",
    "InvalidObjectName",
    "InvalidArgument",
    "EntityTooLarge",
    "MetadataTooLarge",
}


class UploadGoneError(Exception):
    """The multipart upload is unknown to the server (aborted, expired, or never completed)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    checksum_sha256: str | None  # base64; a multipart object's is composite ("...-N")
    sha256_metadata: str | None  # hex, as the agent wrote it

    def holds(self, sha256: str, size: int) -> bool:
        """Whether this object provably holds ``size`` bytes with that SHA-256."""
        if self.size != size:
            return False
        if self.checksum_sha256 == b64(bytes.fromhex(sha256)):
            return True
        # A multipart object: its metadata is written by an uploader that completes the upload
        # only after checking the whole file's hash, and each part was checked by the server.
        return self.sha256_metadata == sha256 and self.checksum_sha256 is not None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_checksums: list[str]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' digests, then "-<parts>"."""
    import hashlib

    joined = b"".join(base64.b64decode(c) for c in part_checksums)
    return f"{b64(hashlib.sha256(joined).digest())}-{len(part_checksums)}"


class FileRange:
    """Bytes [offset, offset + length) of an open file, as a seekable body for boto3.

    Reads with pread, so parts of one file share a descriptor from several threads.
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._offset, self._length = fd, offset, length
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._position
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._offset + self._position)
        self._position += len(data)
        return data

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = max(0, min(self._length, base + position))
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return self._length


class ObjectStore:
    def __init__(self, settings: StoreSettings, credentials: Credentials) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.bucket = settings.bucket
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=Config(
                max_pool_connections=settings.concurrency + 2,
                connect_timeout=5,
                read_timeout=120,
                # One quick retry for a pooled connection the server closed; longer outages are the
                # shipper's backoff, which keeps the backlog in the ledger meanwhile.
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"payload_signing_enabled": False, "addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                user_agent_extra=f"fair-agent/{__version__}",
            ),
        )

    def close(self) -> None:
        self._client.close()

    def head(self, key: str) -> StoredObject | None:
        def call() -> StoredObject | None:
            try:
                found = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except Exception as exc:
                # 403: without s3:ListBucket, S3 answers so for a key that does not exist.
                if _status(exc) in (404, 403):
                    return None
                raise
            return StoredObject(
                found["ContentLength"],
                found.get("ChecksumSHA256"),
                (found.get("Metadata") or {}).get(SHA256_METADATA),
            )

        return self._call(call, f"look up {key}")

    def check_bucket(self) -> None:
        self._call(lambda: self._client.head_bucket(Bucket=self.bucket), f"open the bucket {self.bucket}")

    def put(
        self,
        key: str,
        body: bytes | FileRange,
        checksum: str,
        metadata: Mapping[str, str],
        content_type: str = "application/octet-stream",
    ) -> str | None:
        """One object; returns the checksum the server computed of what it received."""
        reply = self._call(
            lambda: self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentLength=len(body),
                ContentType=content_type,
                ChecksumSHA256=checksum,
                Metadata=dict(metadata),
            ),
            f"store {key}",
        )
        return reply.get("ChecksumSHA256")  # type: ignore[no-any-return]

    def create_upload(self, key: str, metadata: Mapping[str, str]) -> str:
        reply = self._call(
            lambda: self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata=dict(metadata)
            ),
            f"begin the upload of {key}",
        )
        return reply["UploadId"]  # type: ignore[no-any-return]

    def upload_part(
        self, key: str, upload_id: str, number: int, body: FileRange, checksum: str
    ) -> tuple[str, str | None]:
        """(ETag, the server's checksum of the part)."""
        reply = self._call(
            lambda: self._client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=len(body),
                ChecksumSHA256=checksum,
            ),
            f"send part {number} of {key}",
        )
        return reply["ETag"], reply.get("ChecksumSHA256")

    def list_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        """The parts the server holds: number -> (size, ETag)."""

        def call() -> dict[int, tuple[int, str]]:
            parts: dict[int, tuple[int, str]] = {}
            marker = 0
            while True:
                page = self._client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
                for part in page.get("Parts", []):
                    parts[part["PartNumber"]] = (part["Size"], part["ETag"])
                if not page.get("IsTruncated"):
                    return parts
                marker = int(page["NextPartNumberMarker"])

        return self._call(call, f"list the parts of {key}")

    def complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> str | None:
        reply = self._call(
            lambda: self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
            f"complete the upload of {key}",
        )
        return reply.get("ChecksumSHA256")  # type: ignore[no-any-return]

    def abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadGoneError):
            self._call(
                lambda: self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id),
                f"abort the upload of {key}",
            )

    def uploads_of(self, key: str) -> list[tuple[str, datetime]]:
        """Incomplete multipart uploads of exactly this key: (upload id, initiated)."""
        reply = self._call(
            lambda: self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=key),
            f"list the unfinished uploads of {key}",
        )
        return [(u["UploadId"], u["Initiated"]) for u in reply.get("Uploads", []) if u["Key"] == key]

    def _call(self, call: Callable[[], T], what: str) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "") or code
            if code in _GONE_CODES:
                raise UploadGoneError(f"cannot {what}: the server no longer knows the upload") from None
            if code in _OBJECT_CODES:
                raise ObjectRejectedError(f"the store refused {what}: {code}: {message}") from None
            if code in _REJECTED_CODES:
                raise ObjectRejectedError(
                    f"the store refused the bytes sent to {what} ({code}: the checksum of what arrived "
                    "differs from the agent's)"
                ) from None
            raise StoreUnavailableError(f"cannot {what}: {_explain(code, message, self.bucket)}") from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(
                f"cannot {what}: the store at {self.settings.endpoint} is unreachable ({exc})"
            ) from None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None


def _explain(code: str, message: str, bucket: str) -> str:
    if code == "NoSuchBucket":
        return f"the bucket {bucket} does not exist; the agent never creates buckets, ask the storage admins"
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return f"the store refused the agent's credentials ({code}); check them and the bucket's policy"
    return f"{code}: {message}"

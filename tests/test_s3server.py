"""What the object-storage design relies on, established against the real server (SeaweedFS 4.48).

The uploader will send content-addressed objects with `x-amz-checksum-sha256` (single PUTs) or per-part
SHA-256 checksums (multipart), HEAD before uploading, and resume multipart uploads from ListParts after
a crash. Each test pins one behaviour of the server; if an upgrade changes it, the test says which.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zlib
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.s3server import S3Server

PART = 5 * 1024 * 1024  # the smallest size S3 allows for every part but the last
# What the server answers when the bytes do not match the checksum sent with them.
BAD_DIGEST = ("BadDigest", 400)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def composite_sha256(*parts: bytes) -> str:
    """S3's checksum of a multipart object: the SHA-256 of the parts' digests, then '-<count>'."""
    digests = b"".join(hashlib.sha256(part).digest() for part in parts)
    return f"{sha256_b64(digests)}-{len(parts)}"


def error_of(call: Callable[..., object], /, **arguments: Any) -> tuple[str, int]:
    """The S3 error code and HTTP status `call(**arguments)` fails with (the test fails if it succeeds)."""
    with pytest.raises(ClientError) as caught:
        call(**arguments)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def corrupt_first_byte_in_transit(client: Any, operation: str) -> None:
    """Flip the body's first byte after botocore has hashed and signed it, as a bad link would."""

    def corrupt(request: Any, **_: object) -> None:
        body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
        request.body = bytes([body[0] ^ 0xFF]) + body[1:]

    client.meta.events.register(f"before-send.s3.{operation}", corrupt)


class StallingBody:
    """A request body that stops halfway while being sent, until released: an upload caught mid-flight.

    botocore reads the body once to sign it (over plain HTTP); `sending` is set by a before-send hook,
    so only the read that goes on the wire stalls.
    """

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._halfway = len(data) // 2
        self.sending = threading.Event()
        self.stalled = threading.Event()
        self.released = threading.Event()

    def read(self, size: int = -1) -> bytes:
        if self.sending.is_set() and self._data.tell() >= self._halfway:
            self.stalled.set()
            self.released.wait(30)
        return self._data.read(64 * 1024 if size < 0 else min(size, 64 * 1024))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()


def kill_mid_upload(
    server: S3Server, client: Any, operation: str, send: Callable[[StallingBody], object], data: bytes
) -> None:
    """Start `send` in a thread, kill -9 the server once half the body is on the wire, then restart it."""
    body = StallingBody(data)
    client.meta.events.register(f"before-send.s3.{operation}", lambda **_: body.sending.set())
    failures: list[BaseException] = []

    def upload() -> None:
        try:
            send(body)
        except BaseException as error:  # the connection dies with the server; that is the point
            failures.append(error)

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert body.stalled.wait(10), "the upload never reached the halfway point"
        server.kill()
    finally:
        body.released.set()
        thread.join(30)
        server.start()
    assert failures, "the upload succeeded although the server was killed during it"


# --- identity -------------------------------------------------------------------------------------------


def test_requests_are_signed_and_checked(s3_server: S3Server) -> None:
    s3_server.client().list_buckets()

    anonymous = s3_server.client(signature_version=UNSIGNED)
    assert error_of(anonymous.list_buckets) == ("AccessDenied", 403)

    impostor = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="not-the-secret",
        region_name=s3_server.region,
    )
    assert error_of(impostor.list_buckets) == ("SignatureDoesNotMatch", 403)


# --- single PUT -----------------------------------------------------------------------------------------


def test_put_with_sha256_is_stored_and_head_returns_the_checksum(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    data = b"a file as the instrument wrote it\n"
    key = f"sha256/{hashlib.sha256(data).hexdigest()}"
    assert not exists(client, s3_bucket, key)  # HEAD of an absent object: 404, the "upload it" signal

    put = client.put_object(Bucket=s3_bucket, Key=key, Body=data, ChecksumSHA256=sha256_b64(data))
    assert put["ChecksumSHA256"] == sha256_b64(data)

    head = client.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256_b64(data)
    assert head["ContentLength"] == len(data)
    # Without ChecksumMode the server leaves the checksum out, as S3 does.
    assert "ChecksumSHA256" not in client.head_object(Bucket=s3_bucket, Key=key)
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data


def test_put_with_a_wrong_sha256_is_rejected_and_stores_nothing(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    wrong = sha256_b64(b"other bytes")
    put = client.put_object
    assert error_of(put, Bucket=s3_bucket, Key="new", Body=b"bytes", ChecksumSHA256=wrong) == BAD_DIGEST
    assert not exists(client, s3_bucket, "new")

    # A rejected overwrite leaves the stored object as it was.
    client.put_object(Bucket=s3_bucket, Key="old", Body=b"good", ChecksumSHA256=sha256_b64(b"good"))
    claimed = sha256_b64(b"good")
    assert error_of(put, Bucket=s3_bucket, Key="old", Body=b"evil", ChecksumSHA256=claimed) == BAD_DIGEST
    assert client.get_object(Bucket=s3_bucket, Key="old")["Body"].read() == b"good"


@pytest.mark.parametrize(
    "checksum",
    [
        pytest.param(lambda data: {"ChecksumSHA256": sha256_b64(data)}, id="x-amz-checksum-sha256"),
        pytest.param(lambda data: {"ContentMD5": md5_b64(data)}, id="content-md5"),
    ],
)
def test_bytes_corrupted_in_transit_are_rejected(
    s3_server: S3Server, s3_bucket: str, checksum: Callable[[bytes], dict[str, str]]
) -> None:
    # Only the checksum we ask for: botocore's own default CRC32 would otherwise catch it too.
    client = s3_server.client(request_checksum_calculation="when_required")
    corrupt_first_byte_in_transit(client, "PutObject")
    data = b"bytes that will be damaged on the way"
    put = client.put_object
    assert error_of(put, Bucket=s3_bucket, Key="k", Body=data, **checksum(data)) == BAD_DIGEST
    assert not exists(s3_server.client(), s3_bucket, "k")


def test_the_signed_payload_hash_alone_does_not_protect_bytes(s3_server: S3Server, s3_bucket: str) -> None:
    # SeaweedFS checks the signature over the x-amz-content-sha256 *header* but never hashes an S3 body
    # against it (weed/s3api/auth_signature_v4.go), so without a checksum header damaged bytes are
    # stored. Hence: every upload carries x-amz-checksum-sha256. If this test fails, SeaweedFS started
    # verifying the payload hash, which only adds protection.
    client = s3_server.client(request_checksum_calculation="when_required")
    corrupt_first_byte_in_transit(client, "PutObject")
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"hello")
    assert s3_server.client().get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"\x97ello"


def test_an_upload_killed_mid_flight_leaves_no_object(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    data = bytes(range(256)) * 8192  # 2 MiB
    key = f"sha256/{hashlib.sha256(data).hexdigest()}"

    def send(body: StallingBody) -> object:
        return client.put_object(
            Bucket=s3_bucket, Key=key, Body=body, ContentLength=len(data), ChecksumSHA256=sha256_b64(data)
        )

    kill_mid_upload(s3_server, client, "PutObject", send, data)
    assert not exists(s3_server.client(), s3_bucket, key)


# --- multipart ------------------------------------------------------------------------------------------


def test_multipart_with_sha256_parts(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    first, last = b"a" * PART, b"b" * 1000
    created = client.create_multipart_upload(Bucket=s3_bucket, Key="big", ChecksumAlgorithm="SHA256")
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == ("SHA256", "COMPOSITE")
    upload = {"Bucket": s3_bucket, "Key": "big", "UploadId": created["UploadId"]}

    wrong = sha256_b64(last)
    assert (
        error_of(client.upload_part, **upload, PartNumber=1, Body=first, ChecksumSHA256=wrong) == BAD_DIGEST
    )
    # In an upload created with SHA256 a part without its checksum is refused outright.
    assert error_of(client.upload_part, **upload, PartNumber=1, Body=first) == ("InvalidRequest", 400)

    one = client.upload_part(**upload, PartNumber=1, Body=first, ChecksumSHA256=sha256_b64(first))
    two = client.upload_part(**upload, PartNumber=2, Body=last, ChecksumSHA256=sha256_b64(last))
    assert (one["ChecksumSHA256"], two["ChecksumSHA256"]) == (sha256_b64(first), sha256_b64(last))

    # ListParts returns number, ETag and size, but NOT the parts' checksums (AWS does): a resumed upload
    # must keep each part's SHA-256 itself (or re-read the part from disk) to complete.
    listed = client.list_parts(**upload)["Parts"]
    assert [(part["PartNumber"], part["ETag"], part["Size"]) for part in listed] == [
        (1, one["ETag"], PART),
        (2, two["ETag"], len(last)),
    ]
    assert not any("ChecksumSHA256" in part for part in listed)

    parts = [
        {"PartNumber": 1, "ETag": one["ETag"], "ChecksumSHA256": sha256_b64(first)},
        {"PartNumber": 2, "ETag": two["ETag"], "ChecksumSHA256": sha256_b64(last)},
    ]
    mismatched = [parts[0], {**parts[1], "ChecksumSHA256": sha256_b64(first)}]
    complete = client.complete_multipart_upload
    assert error_of(complete, **upload, MultipartUpload={"Parts": mismatched}) == BAD_DIGEST

    done = complete(**upload, MultipartUpload={"Parts": parts})
    assert (done["ChecksumSHA256"], done["ChecksumType"]) == (composite_sha256(first, last), "COMPOSITE")
    head = client.head_object(Bucket=s3_bucket, Key="big", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite_sha256(first, last)
    body = client.get_object(Bucket=s3_bucket, Key="big")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(first + last).digest()


def test_a_full_object_checksum_is_crc_only(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    # As on AWS, FULL_OBJECT exists for the CRC family only; a whole-file SHA-256 cannot be asked of S3.
    sha_full = {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"}
    create = client.create_multipart_upload
    assert error_of(create, Bucket=s3_bucket, Key="whole", **sha_full) == ("InvalidRequest", 400)

    first, last = b"c" * PART, b"d" * 1000
    created = client.create_multipart_upload(
        Bucket=s3_bucket, Key="whole", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    upload = {"Bucket": s3_bucket, "Key": "whole", "UploadId": created["UploadId"]}
    one = client.upload_part(**upload, PartNumber=1, Body=first, ChecksumCRC32=crc32_b64(first))
    two = client.upload_part(**upload, PartNumber=2, Body=last, ChecksumCRC32=crc32_b64(last))
    parts = [
        {"PartNumber": 1, "ETag": one["ETag"], "ChecksumCRC32": crc32_b64(first)},
        {"PartNumber": 2, "ETag": two["ETag"], "ChecksumCRC32": crc32_b64(last)},
    ]

    def complete(whole: bytes) -> Any:
        return client.complete_multipart_upload(
            **upload,
            ChecksumCRC32=crc32_b64(whole),
            ChecksumType="FULL_OBJECT",
            MultipartUpload={"Parts": parts},
        )

    assert error_of(complete, whole=first) == BAD_DIGEST  # the server checks the whole object
    assert complete(first + last)["ChecksumCRC32"] == crc32_b64(first + last)
    head = client.head_object(Bucket=s3_bucket, Key="whole", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc32_b64(first + last), "FULL_OBJECT")


def test_an_aborted_upload_leaves_nothing_behind(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    created = client.create_multipart_upload(Bucket=s3_bucket, Key="gone", ChecksumAlgorithm="SHA256")
    upload = {"Bucket": s3_bucket, "Key": "gone", "UploadId": created["UploadId"]}
    client.upload_part(**upload, PartNumber=1, Body=b"e" * 1000, ChecksumSHA256=sha256_b64(b"e" * 1000))
    assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]] == [
        created["UploadId"]
    ]

    client.abort_multipart_upload(**upload)
    assert "Uploads" not in client.list_multipart_uploads(Bucket=s3_bucket)
    assert error_of(client.list_parts, **upload) == ("NoSuchUpload", 404)
    assert not exists(client, s3_bucket, "gone")


# --- crash and restart ----------------------------------------------------------------------------------


def test_after_kill_9_objects_and_upload_ids_survive_and_the_upload_resumes(
    s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    stored = b"written before the crash"
    client.put_object(Bucket=s3_bucket, Key="before", Body=stored, ChecksumSHA256=sha256_b64(stored))
    first, last = b"f" * PART, b"g" * PART
    created = client.create_multipart_upload(Bucket=s3_bucket, Key="resumed", ChecksumAlgorithm="SHA256")
    upload = {"Bucket": s3_bucket, "Key": "resumed", "UploadId": created["UploadId"]}
    one = client.upload_part(**upload, PartNumber=1, Body=first, ChecksumSHA256=sha256_b64(first))
    endpoint, pid = s3_server.endpoint_url, s3_server.pid

    def send_part_two(body: StallingBody) -> object:
        return client.upload_part(
            **upload, PartNumber=2, Body=body, ContentLength=len(last), ChecksumSHA256=sha256_b64(last)
        )

    kill_mid_upload(s3_server, client, "UploadPart", send_part_two, last)
    assert (s3_server.endpoint_url, s3_server.pid != pid) == (endpoint, True)

    client = s3_server.client()
    head = client.head_object(Bucket=s3_bucket, Key="before", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256_b64(stored)
    assert client.get_object(Bucket=s3_bucket, Key="before")["Body"].read() == stored
    # The upload id is still valid; ListParts shows the part that completed, not the one cut off.
    assert [(p["PartNumber"], p["ETag"]) for p in client.list_parts(**upload)["Parts"]] == [(1, one["ETag"])]

    two = client.upload_part(**upload, PartNumber=2, Body=last, ChecksumSHA256=sha256_b64(last))
    parts = [
        {"PartNumber": 1, "ETag": one["ETag"], "ChecksumSHA256": sha256_b64(first)},
        {"PartNumber": 2, "ETag": two["ETag"], "ChecksumSHA256": sha256_b64(last)},
    ]
    done = client.complete_multipart_upload(**upload, MultipartUpload={"Parts": parts})
    assert done["ChecksumSHA256"] == composite_sha256(first, last)
    body = client.get_object(Bucket=s3_bucket, Key="resumed")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(first + last).digest()

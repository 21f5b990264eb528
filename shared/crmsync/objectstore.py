"""Attachments too large for the CRM, kept in an object store (EML-2): a bucket spoken
to through the S3 API with Signature Version 4, which Amazon S3, S3-compatible stores
and Google Cloud Storage (its XML API, with an HMAC key of a service account) all
accept. Plain HTTP through requests: no cloud SDK is imported at a function's cold
start.

- `put` stores an object (PUT, signed headers, the payload's SHA-256 signed too);
  putting the same key again replaces it, so a retried pass stores nothing twice.
- `link` gives a presigned GET URL valid for `seconds` (at most a week, SigV4's limit)
  that downloads the object under its file name.

Keys and secrets never reach a log line; a signed URL is a secret while it is valid.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import requests

from crmsync.errors import PermanentError, TransientError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_LINK_SECONDS = 7 * 24 * 3600  # SigV4's longest presigned URL
UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Bucket:
    """Where objects go: the store's endpoint (https://storage.googleapis.com for Cloud
    Storage, https://s3.<region>.amazonaws.com for S3, another for an S3-compatible
    store), the bucket, the region the signature names ("auto" for Cloud Storage), and
    an access key with its secret."""

    endpoint: str
    name: str
    region: str
    access_key: str
    secret_key: str = field(repr=False)


class ObjectStore:
    """One bucket, path-style (endpoint/bucket/key)."""

    def __init__(
        self,
        bucket: Bucket,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 30.0,
    ) -> None:
        if not bucket.endpoint.startswith(("https://", "http://")):
            raise ValueError("the object store's endpoint is an http(s) URL")
        self.bucket = bucket
        self.session = session or requests.Session()
        self.clock = clock
        self.timeout = timeout

    def __repr__(self) -> str:  # never the secret
        return f"ObjectStore({self.bucket.endpoint!r}, {self.bucket.name!r})"

    def put(self, key: str, content_type: str, data: bytes, filename: str = "") -> None:
        """Store `data` under `key` (downloaded as `filename` when one is given);
        TransientError when the store may take it later, PermanentError when it refuses
        it."""
        url = self._url(key)
        payload = hashlib.sha256(data).hexdigest()
        now = self.clock()
        headers = {
            "content-type": content_type or "application/octet-stream",
            "x-amz-content-sha256": payload,
            "x-amz-date": _stamp(now),
        }
        if filename:
            headers["content-disposition"] = _disposition(filename)
        headers["authorization"] = self._authorization("PUT", url, headers, payload, now)
        try:
            answer = self.session.put(url, data=data, headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"object store unreachable: {type(exc).__name__}") from exc
        if answer.status_code in (429, 500, 502, 503, 504):
            raise TransientError(f"object store answered {answer.status_code}")
        if answer.status_code >= 400:
            raise PermanentError(f"object store refused the attachment ({answer.status_code})")

    def link(self, key: str, filename: str = "", seconds: int = 3600) -> str:
        """A presigned URL that downloads the object for `seconds` (as `filename` when
        one is given, else under the name it was stored with)."""
        seconds = max(1, min(seconds, MAX_LINK_SECONDS))
        now = self.clock()
        url = self._url(key)
        scope = self._scope(now)
        query = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{self.bucket.access_key}/{scope}",
            "X-Amz-Date": _stamp(now),
            "X-Amz-Expires": str(seconds),
            "X-Amz-SignedHeaders": "host",
        }
        if filename:
            query["response-content-disposition"] = _disposition(filename)
        canonical_query = _query(query)
        host = urlsplit(url).netloc
        request = "\n".join(
            ["GET", urlsplit(url).path, canonical_query, f"host:{host}\n", "host", UNSIGNED]
        )
        signature = self._sign(now, scope, request)
        return f"{url}?{canonical_query}&X-Amz-Signature={signature}"

    # -- Signature Version 4 -----------------------------------------------------------------
    def _url(self, key: str) -> str:
        path = quote(f"{self.bucket.name}/{key}", safe="/-_.~")
        return f"{self.bucket.endpoint.rstrip('/')}/{path}"

    def _scope(self, now: datetime) -> str:
        return f"{now.strftime('%Y%m%d')}/{self.bucket.region}/s3/aws4_request"

    def _authorization(
        self, method: str, url: str, headers: dict[str, str], payload: str, now: datetime
    ) -> str:
        parts = urlsplit(url)
        signed = {"host": parts.netloc, **{k.lower(): v.strip() for k, v in headers.items()}}
        names = ";".join(sorted(signed))
        lines = "".join(f"{k}:{signed[k]}\n" for k in sorted(signed))
        request = "\n".join([method, parts.path, "", lines, names, payload])
        scope = self._scope(now)
        signature = self._sign(now, scope, request)
        credential = f"{self.bucket.access_key}/{scope}"
        return f"{ALGORITHM} Credential={credential}, SignedHeaders={names}, Signature={signature}"

    def _sign(self, now: datetime, scope: str, canonical_request: str) -> str:
        digest = hashlib.sha256(canonical_request.encode()).hexdigest()
        text = "\n".join([ALGORITHM, _stamp(now), scope, digest])
        key = ("AWS4" + self.bucket.secret_key).encode()
        for part in (now.strftime("%Y%m%d"), self.bucket.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _query(params: dict[str, str]) -> str:
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


def _disposition(filename: str) -> str:
    """Content-Disposition for a download: an ASCII fallback and the RFC 5987 name."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"

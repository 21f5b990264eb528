"""Cloud KMS v1, the two methods crmsync's token vault uses: cryptoKeys.encrypt and
cryptoKeys.decrypt on symmetric keys, with additional authenticated data and the
CRC32C integrity fields both ways (a wrong checksum is refused, as KMS does).

Keys exist only once a test adds them with `add_key`; their material never leaves the
sandbox, like KMS key material never leaves KMS.
"""

from __future__ import annotations

import base64
import binascii
import os
import weakref
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from werkzeug.wrappers import Request, Response

from crmsync.auth.crc32c import crc32c
from sandbox.google.core import (
    SCOPE,
    Account,
    ApiError,
    GoogleSandbox,
    Route,
    json_response,
    read_json,
    route,
)

KMS_SCOPES = frozenset({SCOPE + "cloud-platform", SCOPE + "cloudkms"})
KEY = "v1/projects/{project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"


def add_key(sandbox: GoogleSandbox, name: str) -> None:
    """Create the symmetric key `name` (projects/P/locations/L/keyRings/R/cryptoKeys/K)."""
    with sandbox.lock:
        _keys(sandbox)[name] = AESGCM.generate_key(bit_length=256)


_KEYS: weakref.WeakKeyDictionary[GoogleSandbox, dict[str, bytes]] = weakref.WeakKeyDictionary()


def _keys(sandbox: GoogleSandbox) -> dict[str, bytes]:
    return _KEYS.setdefault(sandbox, {})


def routes(sandbox: GoogleSandbox) -> list[Route]:
    def encrypt(request: Request, account: Account | None, **names: str) -> Response:
        return _encrypt(sandbox, request, _name(names))

    def decrypt(request: Request, account: Account | None, **names: str) -> Response:
        return _decrypt(sandbox, request, _name(names))

    return [
        route("POST", KEY + ":encrypt", encrypt, KMS_SCOPES),
        route("POST", KEY + ":decrypt", decrypt, KMS_SCOPES),
    ]


def _name(names: dict[str, str]) -> str:
    return (
        f"projects/{names['project']}/locations/{names['location']}"
        f"/keyRings/{names['ring']}/cryptoKeys/{names['key']}"
    )


def _material(sandbox: GoogleSandbox, name: str) -> bytes:
    key = _keys(sandbox).get(name)
    if key is None:
        raise ApiError(404, "notFound", f"{name} not found.")
    return key


def _field(body: dict[str, Any], name: str, required: bool = False) -> bytes:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "badRequest", f"{name} is required.")
        return b""
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "badRequest", f"Invalid value at '{name}'.") from exc


def _check(body: dict[str, Any], name: str, data: bytes) -> bool:
    """Whether the client sent a checksum for `name`; a wrong one is refused."""
    given = body.get(name + "Crc32c")
    if given is None:
        return False
    if int(given) != crc32c(data):
        raise ApiError(400, "badRequest", f"The checksum in field {name}_crc32c did not match.")
    return True


def _encrypt(sandbox: GoogleSandbox, request: Request, name: str) -> Response:
    body = read_json(request)
    key = _material(sandbox, name)
    plaintext = _field(body, "plaintext", required=True)
    aad = _field(body, "additionalAuthenticatedData")
    verified_plain = _check(body, "plaintext", plaintext)
    verified_aad = _check(body, "additionalAuthenticatedData", aad)
    nonce = os.urandom(12)
    ciphertext = nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
    return json_response(
        {
            "name": f"{name}/cryptoKeyVersions/1",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "ciphertextCrc32c": str(crc32c(ciphertext)),
            "verifiedPlaintextCrc32c": verified_plain,
            "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
            "protectionLevel": "SOFTWARE",
        }
    )


def _decrypt(sandbox: GoogleSandbox, request: Request, name: str) -> Response:
    body = read_json(request)
    key = _material(sandbox, name)
    ciphertext = _field(body, "ciphertext", required=True)
    aad = _field(body, "additionalAuthenticatedData")
    _check(body, "ciphertext", ciphertext)
    _check(body, "additionalAuthenticatedData", aad)
    try:
        plaintext = AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], aad)
    except (InvalidTag, ValueError) as exc:
        raise ApiError(400, "badRequest", "Decryption failed: the ciphertext is invalid.") from exc
    return json_response(
        {
            "plaintext": base64.b64encode(plaintext).decode(),
            "plaintextCrc32c": str(crc32c(plaintext)),
            "usedPrimary": True,
            "protectionLevel": "SOFTWARE",
        }
    )

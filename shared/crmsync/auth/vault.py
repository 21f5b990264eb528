"""The token vault: provider grants encrypted at rest with envelope encryption (AUTH-2).

Each sealed secret has its own random data key (AES-256-GCM); the data key is stored
only wrapped by a key-encryption key that never leaves its keeper: Cloud KMS in
production, a local key in development and tests. The connection it belongs to is
bound in as associated data, so a sealed grant copied to another connection does not
open.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crmsync.ports import KeyEncryptionKey

if TYPE_CHECKING:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class VaultError(ValueError):
    """A sealed secret that does not open: wrong key, wrong connection, or tampered."""


def _aes_gcm() -> tuple[type[AESGCM], type[InvalidTag]]:
    """AES-GCM and the error of a secret that does not open. The cryptography library
    loads at the first secret sealed or opened, not at the cold start of a function
    that has none (a webhook, the fan-out)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM, InvalidTag


class LocalKek:
    """A key-encryption key held in process memory (development and tests)."""

    def __init__(self, key: bytes, key_id: str = "local") -> None:
        if len(key) != 32:
            raise ValueError("a local key-encryption key is 32 bytes")
        self.key_id = key_id
        aes_gcm, self._invalid = _aes_gcm()
        self._aead = aes_gcm(key)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context)
        except self._invalid as exc:
            raise VaultError("the data key does not unwrap") from exc


class TokenVault:
    def __init__(self, kek: KeyEncryptionKey) -> None:
        self.kek = kek

    def seal(self, secret: bytes, context: str) -> dict[str, str]:
        """`secret` encrypted for `context` (e.g. "tenant/connection"), as stored data."""
        aes_gcm, _ = _aes_gcm()
        data_key = aes_gcm.generate_key(bit_length=256)
        nonce = os.urandom(12)
        bound = context.encode()
        sealed = aes_gcm(data_key).encrypt(nonce, secret, bound)
        return {
            "kek": self.kek.key_id,
            "key": _b64(self.kek.wrap(data_key, bound)),
            "nonce": _b64(nonce),
            "data": _b64(sealed),
        }

    def open(self, sealed: Mapping[str, str], context: str) -> bytes:
        if sealed.get("kek") != self.kek.key_id:
            raise VaultError("sealed with another key-encryption key")
        bound = context.encode()
        aes_gcm, invalid = _aes_gcm()
        try:
            data_key = self.kek.unwrap(_unb64(sealed["key"]), bound)
            return aes_gcm(data_key).decrypt(_unb64(sealed["nonce"]), _unb64(sealed["data"]), bound)
        except (invalid, KeyError, ValueError) as exc:
            raise VaultError("the sealed secret does not open") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)

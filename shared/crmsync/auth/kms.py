"""Cloud KMS as the token vault's key-encryption key (production).

Data keys are wrapped and unwrapped by a Cloud KMS symmetric key; the key material
never leaves KMS. The connection context goes along as additional authenticated data,
and CRC32C checksums both ways prove that nothing was corrupted on the wire, as Google
advises for every encrypt and decrypt call.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from crmsync.auth.crc32c import crc32c
from crmsync.auth.vault import VaultError
from crmsync.errors import PermanentError, TransientError


class CloudKmsKek:
    """A KeyEncryptionKey backed by the Cloud KMS key `key_name`
    (projects/P/locations/L/keyRings/R/cryptoKeys/K). `credentials` default to the
    function's service account; `endpoint` replaces Google's (the local sandbox)."""

    def __init__(self, key_name: str, credentials: Any = None, endpoint: str | None = None) -> None:
        self.key_id = key_name
        options = {"api_endpoint": endpoint} if endpoint else None
        service = build(
            "cloudkms",
            "v1",
            credentials=credentials,
            client_options=options,
            static_discovery=True,
            cache_discovery=False,
        )
        self._keys = service.projects().locations().keyRings().cryptoKeys()

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        body = {
            "plaintext": _b64(data_key),
            "plaintextCrc32c": str(crc32c(data_key)),
            "additionalAuthenticatedData": _b64(context),
            "additionalAuthenticatedDataCrc32c": str(crc32c(context)),
        }
        answer = self._call(self._keys.encrypt(name=self.key_id, body=body))
        if not answer.get("verifiedPlaintextCrc32c") or not answer.get(
            "verifiedAdditionalAuthenticatedDataCrc32c"
        ):
            raise TransientError("Cloud KMS did not verify what it was sent; try again")
        wrapped = base64.b64decode(answer["ciphertext"])
        if int(answer.get("ciphertextCrc32c", -1)) != crc32c(wrapped):
            raise TransientError("the wrapped key arrived corrupted; try again")
        return wrapped

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        body = {
            "ciphertext": _b64(wrapped),
            "ciphertextCrc32c": str(crc32c(wrapped)),
            "additionalAuthenticatedData": _b64(context),
            "additionalAuthenticatedDataCrc32c": str(crc32c(context)),
        }
        answer = self._call(self._keys.decrypt(name=self.key_id, body=body))
        data_key = base64.b64decode(answer["plaintext"])
        if int(answer.get("plaintextCrc32c", -1)) != crc32c(data_key):
            raise TransientError("the data key arrived corrupted; try again")
        return data_key

    def _call(self, request: Any) -> Mapping[str, Any]:
        try:
            answer: Mapping[str, Any] = request.execute(num_retries=3)
        except HttpError as exc:
            status = int(exc.resp.status)
            if status == 400:  # wrong key, wrong context or tampered ciphertext
                raise VaultError("Cloud KMS refused to unwrap the data key") from exc
            if status in (403, 404):  # the deployment's key or its permission is missing
                raise PermanentError(f"Cloud KMS answered {status} for {self.key_id}") from exc
            raise TransientError(f"Cloud KMS answered {status}") from exc
        return answer


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

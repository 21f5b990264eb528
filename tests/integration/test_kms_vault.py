"""The token vault with Cloud KMS as its key-encryption key (AUTH-2), through the real
google-api-python-client against the sandbox's Cloud KMS over a real socket."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from google.oauth2.credentials import Credentials

from crmsync.auth.crc32c import crc32c
from crmsync.auth.kms import CloudKmsKek
from crmsync.auth.vault import TokenVault, VaultError
from crmsync.errors import PermanentError
from sandbox.google import kms
from sandbox.google.core import SCOPE, GoogleSandbox
from sandbox.google.server import serve

pytestmark = pytest.mark.integration

KEY = "projects/crmsync/locations/europe-west1/keyRings/vault/cryptoKeys/grants"
SECRET = b'{"refresh_token": "1//refresh-token-value"}'


@pytest.fixture
def vault() -> Iterator[tuple[GoogleSandbox, TokenVault]]:
    sandbox = GoogleSandbox()
    kms.add_key(sandbox, KEY)
    base, stop = serve(sandbox, modules=["kms"])
    token = sandbox.issue_token("crmsync@project.iam.example", [SCOPE + "cloud-platform"])
    yield sandbox, TokenVault(CloudKmsKek(KEY, Credentials(token), endpoint=base))
    stop()


def test_AUTH2_grants_sealed_with_a_kms_key_open_for_their_connection_only(
    vault: tuple[GoogleSandbox, TokenVault],
) -> None:
    _, tokens = vault

    sealed = tokens.seal(SECRET, "t1/c1")

    assert sealed["kek"] == KEY
    assert b"refresh-token-value" not in repr(sealed).encode()
    assert tokens.open(sealed, "t1/c1") == SECRET
    with pytest.raises(VaultError):
        tokens.open(sealed, "t1/c2")


def test_AUTH2_a_wrapped_key_altered_in_the_store_does_not_open(
    vault: tuple[GoogleSandbox, TokenVault],
) -> None:
    _, tokens = vault
    sealed = tokens.seal(SECRET, "t1/c1")
    key = bytearray(base64.b64decode(sealed["key"]))
    key[-1] ^= 1
    altered = {**sealed, "key": base64.b64encode(bytes(key)).decode()}

    with pytest.raises(VaultError):
        tokens.open(altered, "t1/c1")


def test_AUTH2_a_key_kms_does_not_have_cannot_seal(
    vault: tuple[GoogleSandbox, TokenVault],
) -> None:
    sandbox, _ = vault
    base = sandbox.base_url
    token = sandbox.issue_token("crmsync@project.iam.example", [SCOPE + "cloud-platform"])
    stranger = TokenVault(CloudKmsKek(KEY + "-missing", Credentials(token), endpoint=base))

    with pytest.raises(PermanentError, match="404"):
        stranger.seal(SECRET, "t1/c1")


def test_AUTH2_checksums_are_the_castagnoli_crc_kms_expects() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0

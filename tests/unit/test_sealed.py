"""Sealed values (CTX-1): the addresses of attached documents and the keys that sign a
mail client's pane in open only what crmsync sealed, for its purpose, until they end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.auth.sealed import Unsealed, seal, unseal

SECRET = b"s" * 32
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_CTX1_a_sealed_token_gives_back_its_values_until_it_ends() -> None:
    token = seal(SECRET, "pane", ["demo", "microsoft-u2"], NOW + timedelta(hours=8))

    assert unseal(SECRET, "pane", token, NOW) == ["demo", "microsoft-u2"]
    with pytest.raises(Unsealed) as ended:
        unseal(SECRET, "pane", token, NOW + timedelta(hours=8, seconds=1))
    assert ended.value.ended


@pytest.mark.parametrize(
    "tampered",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
        lambda t: seal(b"x" * 32, "pane", ["demo", "microsoft-u2"], NOW + timedelta(hours=1)),
        lambda t: seal(SECRET, "document", ["demo", "microsoft-u2"], NOW + timedelta(hours=1)),
        lambda t: "x" + t,  # the values
        lambda t: "",
        lambda t: t + "." * 2000,
    ],
    ids=["signature", "another secret", "another purpose", "values", "empty", "too long"],
)
def test_CTX1_a_token_forged_altered_or_for_another_purpose_opens_nothing(
    tampered: Callable[[str], str],
) -> None:
    token = seal(SECRET, "pane", ["demo", "microsoft-u2"], NOW + timedelta(hours=1))

    with pytest.raises(Unsealed) as refused:
        unseal(SECRET, "pane", tampered(token), NOW)
    assert not refused.value.ended

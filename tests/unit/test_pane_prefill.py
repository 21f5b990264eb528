"""What the mail client's pane suggests for a participant the CRM does not know (CTX-1):
the name the message gives, and the company its address's domain names, unless the
address is a mail service's."""

from __future__ import annotations

import pytest

from crmsync.usecases.pane import prefilled


@pytest.mark.parametrize(
    ("address", "name", "first", "last", "company"),
    [
        ("lin@new-co.example", "Lin Chen", "Lin", "Chen", "New Co"),
        ("ada@acme.co.uk", '"Ada King Lovelace"', "Ada", "King Lovelace", "Acme"),
        ("sam.smith@gmail.com", "Sam Smith", "Sam", "Smith", ""),  # a mail service's
        ("x@GMX.DE", "", "", "", ""),
        ("nobody@localhost", "Nobody", "Nobody", "", ""),
    ],
)
def test_CTX1_a_new_person_is_prefilled_from_the_message(
    address: str, name: str, first: str, last: str, company: str
) -> None:
    assert prefilled(address, name) == {
        "first_name": first,
        "last_name": last,
        "company": company,
        "title": "",
    }

"""Where the reference CRM's users open a record: the addresses the contract's answers
give for a person to follow (CTX-1), served as pages by `sandbox.crm.home`."""

from __future__ import annotations

from urllib.parse import quote

RECORD_PAGES = "/ui/"  # /ui/<tenant>/records/<id>: a record as the CRM's users see it


def record_url(site: str, tenant: str, record_id: str) -> str:
    """Where the CRM's users open a record, an account or an opportunity."""
    return f"{site}{RECORD_PAGES}{quote(tenant, safe='')}/records/{quote(record_id, safe='')}"

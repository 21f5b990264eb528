"""The reference CRM's root page: `GET /` (and the contract's base URL, which the
`make dev` banner prints) says what this server is, how a request authenticates and acts
for a user, and every path of the contract, with the demo tenant's token and users when
it was seeded. Every other path answers as the contract says (JSON errors)."""

from __future__ import annotations

from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from sandbox.crm.api import PREFIX, ROUTES
from sandbox.crm.database import CrmDatabase
from sandbox.crm.links import RECORD_PAGES
from sandbox.crm.seed import DEMO_TENANT, DEMO_TOKEN
from sandbox.home import Address, Section, page

PATHS = ("/", PREFIX, PREFIX + "/")


def is_home(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and (
        request.path in PATHS or request.path.startswith(RECORD_PAGES)
    )


def answer(database: CrmDatabase, request: Request) -> Response:
    if request.path.startswith(RECORD_PAGES):
        return record_page(database, request)
    base = request.host_url.rstrip("/") + PREFIX
    return Response(page("Reference CRM", _INTRO, sections(database, base)), mimetype="text/html")


_INTRO = (
    "The reference implementation of crmsync's CRM contract (docs/crm-contract.md), for "
    "crmsync's tests and `make dev`: crmsync syncs with it as it does with a vendor's CRM. "
    "Its API answers JSON below the contract's base URL."
)


def sections(database: CrmDatabase, base: str) -> list[Section]:
    """How to call the contract below `base`, the demo tenant (if seeded), every path."""
    calling = Section(
        "Calling it",
        notes=(
            f"The base URL is `{base}`. Every request takes `Authorization: Bearer <token>`, "
            "a token of one tenant (the CRM installation it speaks for). The paths about "
            "records also take `X-Crm-User: <user id>`, the CRM user the request acts for, "
            "and answer with only what that user may see.",
        ),
    )
    found = [calling]
    grant = database.grant(DEMO_TOKEN)
    if grant is not None and grant.tenant == DEMO_TENANT:
        users = ", ".join(f"{u.id} ({u.name})" for u in database.users(DEMO_TENANT))
        found.append(
            Section(
                "The demo tenant",
                notes=(
                    f"Tenant `{DEMO_TENANT}`, token `{DEMO_TOKEN}`, users {users}.",
                    f"For example, u1's contacts: `curl -H 'Authorization: Bearer {DEMO_TOKEN}' "
                    f"-H 'X-Crm-User: u1' {base}/changes/contact`",
                ),
            )
        )
    paths = tuple(Address(method, base + path) for path, method, _, _ in ROUTES)
    found.append(Section("The contract's paths", paths))
    return found


def record_page(database: CrmDatabase, request: Request) -> Response:
    """The page a link from crmsync's mail-client pane opens: the record's id, kind and
    name, or a page saying there is no such record (CTX-1)."""
    parts = request.path.removeprefix(RECORD_PAGES).split("/")
    if len(parts) != 3 or parts[1] != "records":
        return _no_record()
    tenant, record_id = unquote(parts[0]), unquote(parts[2])
    found = _shown_record(database, tenant, record_id)
    if found is None:
        return _no_record()
    title, facts = found
    notes = tuple(f"{name}: {value}" for name, value in facts if value)
    body = page(title, "A record of the reference CRM.", [Section("Details", notes=notes)])
    return Response(body, mimetype="text/html")


def _shown_record(
    database: CrmDatabase, tenant: str, record_id: str
) -> tuple[str, list[tuple[str, str]]] | None:
    if not database.has_tenant(tenant):
        return None
    account = database.account(tenant, record_id)
    if account is not None:
        return account["name"], [("Account", account["id"]), ("Type", account["type"])]
    record = database.record(tenant, record_id)
    if record is not None and not record.deleted:
        name = " ".join(str(record.raw.get(k) or "") for k in ("first_name", "last_name"))
        title = name.strip() or str(record.raw.get("subject") or record.id)
        return title, [("Kind", record.kind), ("Id", record.id)]
    found = database.opportunity(tenant, record_id)
    if found is not None:
        return found["name"], [("Opportunity", found["id"]), ("Stage", found["stage"])]
    return None


def _no_record() -> Response:
    body = page(
        "No such record",
        "This address names no record of the reference CRM. Open the CRM's root page to "
        "see what it holds.",
        [],
    )
    return Response(body, status=404, mimetype="text/html")

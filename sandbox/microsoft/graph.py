"""What every Graph v1.0 module of the sandbox shares: the signed-in user (`GET /me`),
versions (`changeKey`, `@odata.etag`, `If-Match` → 412), OData paging with
`Prefer: odata.maxpagesize`, delta tokens that can be expired, and ids.

Authentication is the router's (core.py): a bearer token the identity module issued,
else 401 `InvalidAuthenticationToken`; a token without the route's scopes gets 403
`ErrorAccessDenied`. Faults injected with `MicrosoftSandbox.inject` (429 with
Retry-After, 503, ...) are answered before authentication, as Graph's gateway does.

Ids: every item's id is what Outlook calls an immutable id, stable for the item's
life. `Prefer: IdType="ImmutableId"` is accepted and answered with the same ids as
without it, since nothing in the sandbox moves an item between folders (the only event
that changes a default Outlook id); clients that always send the header, as crmsync's
adapters should, see the behaviour they get from Graph.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.microsoft.core import GraphError, MicrosoftSandbox, Route, User, json_response, route
from sandbox.microsoft.schema import graph_schema

USER_SCOPES = frozenset({"User.Read", "User.ReadWrite", "User.ReadBasic.All"})
DEFAULT_PAGE = 10
MAX_PAGE = 1000


def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    def me(request: Request, user: User) -> Response:
        return json_response(
            {
                "@odata.context": f"{sandbox.base_url}/v1.0/$metadata#users/$entity",
                "id": user.oid,
                "displayName": user.display_name,
                "mail": user.email,
                "userPrincipalName": user.email,
            }
        )

    return [route("GET", "v1.0/me", me, USER_SCOPES, answers="user")]


# -- writes --------------------------------------------------------------------------------------
def refuse_off_schema(values: dict[str, Any], type_name: str, code: str) -> None:
    """A write whose values Graph's type cannot hold (a string for an address, a word
    no enum has, null for a collection) is refused with 400, as Graph refuses it, so
    the sandbox never holds what Graph could not answer."""
    problems = graph_schema().check(values, type_name)
    if problems:
        raise GraphError(
            400,
            code,
            f"Cannot convert the request to type 'microsoft.graph.{type_name}': {problems[0]}",
        )


# -- ids and versions ----------------------------------------------------------------------------
def new_id(user: User) -> str:
    """An Outlook-shaped item id (base64url of an opaque entry id) from `user`'s draws."""
    return "AAMkA" + base64.urlsafe_b64encode(user.ids.randbytes(45)).decode()


def new_change_key() -> str:
    return base64.b64encode(secrets.token_bytes(12)).decode()


def etag(change_key: str) -> str:
    return f'W/"{change_key}"'


def check_if_match(request: Request, change_key: str) -> None:
    """A write with `If-Match` naming another version is refused with Outlook's 412."""
    wanted = request.headers.get("If-Match")
    if wanted is None or wanted == "*" or wanted in (etag(change_key), change_key):
        return
    raise GraphError(
        412,
        "ErrorIrresolvableConflict",
        "The send or update operation could not be performed because the change key passed "
        "in the request does not match the current change key for the item.",
    )


# -- paging --------------------------------------------------------------------------------------
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")


def page_size(request: Request, default: int = DEFAULT_PAGE) -> int:
    """`$top`, else `Prefer: odata.maxpagesize=N`, else `default`."""
    if "$top" in request.args:
        try:
            return max(1, min(int(request.args["$top"]), MAX_PAGE))
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Invalid $top value.") from exc
    found = _MAXPAGESIZE.search(",".join(request.headers.getlist("Prefer")))
    return max(1, min(int(found.group(1)), MAX_PAGE)) if found else default


def applied_page_size(request: Request) -> dict[str, str]:
    """The `Preference-Applied` header Graph answers a honoured maxpagesize with."""
    found = _MAXPAGESIZE.search(",".join(request.headers.getlist("Prefer")))
    return {"Preference-Applied": f"odata.maxpagesize={found.group(1)}"} if found else {}


def link(sandbox: MicrosoftSandbox, path: str, params: dict[str, str]) -> str:
    query = urlencode(params, safe="$")
    return f"{sandbox.base_url}/v1.0/{path}?{query}"


# -- delta ---------------------------------------------------------------------------------------
@dataclass
class Change:
    """One item as delta sees it: the sequence number of its latest change, and whether
    that change deleted it."""

    item_id: str
    seq: int
    deleted: bool


@dataclass
class DeltaRound:
    """One delta round: the changes it reports (fixed when it begins, so a change while
    it is being paged waits for the next round instead of shifting its pages), how many
    are served, and the sequence number its deltaLink resumes from."""

    scope: str  # what the round covers, e.g. a folder's id; a token of another is refused
    upto: int
    params: dict[str, str]  # the query the round began with; its links keep it
    pending: list[Change] = field(default_factory=list)
    offset: int = 0


@dataclass
class DeltaTokens:
    """One user's delta tokens: `$skiptoken` for a round's next page, `$deltatoken` for
    the next round. Expired tokens get 410 `syncStateNotFound`, as Outlook's do when they
    are evicted from its cache."""

    rounds: dict[str, DeltaRound] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)

    def mint(self, delta: DeltaRound) -> str:
        token = secrets.token_urlsafe(24)
        self.rounds[token] = delta
        return token

    def take(self, token: str, scope: str) -> DeltaRound:
        if token in self.expired:
            raise GraphError(
                410, "syncStateNotFound", "The sync state generation is not found. Resync."
            )
        found = self.rounds.get(token)
        if found is None or found.scope != scope:
            raise GraphError(400, "badRequest", "The delta token is malformed.")
        return found

    def expire_all(self) -> None:
        self.expired |= set(self.rounds)
        self.rounds.clear()

    def expire(self, scope_prefix: str) -> None:
        """Evict only the tokens of rounds whose scope starts with `scope_prefix`."""
        gone = [t for t, r in self.rounds.items() if r.scope.startswith(scope_prefix)]
        self.expired |= set(gone)
        for token in gone:
            del self.rounds[token]


def tokens_of(user: User) -> DeltaTokens:
    """The user's delta tokens, one store for every Graph module."""
    tokens: DeltaTokens = user.data.setdefault("delta", DeltaTokens())
    return tokens


def expire_delta_links(sandbox: MicrosoftSandbox, email: str) -> None:
    """Every delta and next link issued to `email` so far is evicted: following one gets
    410 `syncStateNotFound` with a Location to start over (RUN-4)."""
    with sandbox.lock:
        tokens_of(sandbox.add_user(email)).expire_all()


def delta_page(
    sandbox: MicrosoftSandbox,
    request: Request,
    user: User,
    *,
    path: str,
    scope: str,
    changes: Callable[[], Iterable[Change]],
    current_seq: int,
    render: Callable[[str], dict[str, Any] | None],
) -> Response:
    """One page of a delta round over `changes()` (each item once, at its latest change).
    A first round (no token) reports live items; a later one the items changed since its
    deltaLink was issued, deleted ones as `@removed`. `render(id)` gives an item as the
    page shows it (None: deleted since). The last page carries `@odata.deltaLink`, the
    others `@odata.nextLink`; both keep the round's query."""
    tokens = tokens_of(user)
    fresh = {k: v for k, v in request.args.items() if k not in ("$skiptoken", "$deltatoken")}
    try:
        current = _round(request, tokens, scope, fresh, current_seq, changes)
    except GraphError as exc:
        if exc.status == 410:
            exc.headers["Location"] = link(sandbox, path, fresh)
        raise
    size = page_size(request)
    chunk = current.pending[current.offset : current.offset + size]
    values = []
    for change in chunk:
        shown = None if change.deleted else render(change.item_id)
        values.append(shown or {"id": change.item_id, "@removed": {"reason": "deleted"}})
    body: dict[str, Any] = {"@odata.context": f"{sandbox.base_url}/v1.0/$metadata#Collection"}
    if current.offset + size < len(current.pending):
        following = DeltaRound(scope, current.upto, current.params, current.pending)
        following.offset = current.offset + size
        token = tokens.mint(following)
        body["@odata.nextLink"] = link(sandbox, path, {**current.params, "$skiptoken": token})
    else:
        token = tokens.mint(DeltaRound(scope, current.upto, current.params))
        body["@odata.deltaLink"] = link(sandbox, path, {**current.params, "$deltatoken": token})
    body["value"] = values
    return json_response(body, headers=applied_page_size(request))


def _round(
    request: Request,
    tokens: DeltaTokens,
    scope: str,
    fresh: dict[str, str],
    current_seq: int,
    changes: Callable[[], Iterable[Change]],
) -> DeltaRound:
    skip, delta = request.args.get("$skiptoken"), request.args.get("$deltatoken")
    if skip is not None:
        return tokens.take(skip, scope)
    since, params = 0, fresh
    if delta is not None:
        previous = tokens.take(delta, scope)
        since, params = previous.upto, previous.params
    pending = sorted((c for c in changes() if c.seq > since), key=lambda c: c.seq)
    if delta is None:  # a first round lists what is there; a resumed one what changed
        pending = [c for c in pending if not c.deleted]
    return DeltaRound(scope, current_seq, params, pending)

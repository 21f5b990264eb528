"""The Outlook add-in (CTX-1): a web add-in whose task pane is a page crmsync serves, at
/microsoft of the `addon` function. Outlook (on the web, Windows, Mac) opens the pane
beside a message being read or written and beside a meeting, as the manifest says
(`manifest`, served at /microsoft/manifest.xml for an admin to deploy); the pane runs
Office.js, loaded from Microsoft's CDN as Microsoft requires, and asks crmsync what to
show with a JSON POST per action (`?do=<action>`).

Every POST is checked before anything is read or written. It carries the Office SSO
token Outlook gave the pane (`Office.auth.getAccessToken`), an access token of
Microsoft's identity platform v2.0 for crmsync's own app registration (audience its
client id, scope `access_as_user`), signed by a key Microsoft publishes, issued by
`login.microsoftonline.com/{tid}/v2.0`, unexpired. Its tenant and object id are the
Microsoft account the pane is for, found in crmsync's account directory as at connect
(`tid/oid`). Where Outlook gives no such token (SSO unavailable, or refused), the pane
signs in through crmsync's web app in Outlook's dialog window instead, and carries the
key the web app hands it (`Authorization: Crmsync <key>`, `pane.pane_key`). Anything
else is 401 and nothing happens.

What the pane shows is the provider-neutral use cases' (`crmsync.usecases.pane`,
`documents`): the participants come from the open item, as Outlook shows them to the
user; the item's id (Graph's, from `convertToRestId`) is what is filed, and the
meeting's id finds its link. A CRM document is attached to the draft itself
(`addFileAttachmentFromBase64Async`); one too large for that goes in as an address.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from crmsync.errors import SyncError
from crmsync.ports import PushAnswer, PushRequest

log = logging.getLogger("crmsync.microsoft.addin")

PATH = "/addon/microsoft"  # below the public URL: the task pane, its manifest and actions
OFFICE_JS = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
SCOPE = "access_as_user"  # the scope crmsync's app registration exposes for the pane
LEEWAY_SECONDS = 60
KEYS_REFETCH_SECONDS = 60  # an unknown key id fetches Microsoft's keys at most this often
MOST_FILED = 10  # records a message is filed to at once (EML-5's MAX_RECORDS)
ATTACH_MOST = 18 * 1024 * 1024  # bytes attached to a draft; a larger document is a link
_HERE = Path(__file__).parent
_XML = "application/xml; charset=utf-8"
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_JS = "text/javascript; charset=utf-8"


@dataclass(frozen=True)
class AddinSetup:
    """What the pane's requests are checked against: crmsync's app registration (its
    client id is the SSO token's audience), where Microsoft's identity platform answers
    (`authority_root`: https://login.microsoftonline.com, or the sandbox's) and the CA
    that signs it, and where the pane loads Office.js from."""

    client_id: str
    authority_root: str
    ca_path: str = ""
    office_js: str = OFFICE_JS


def setup_of(oauth: Any, office_js: str = "") -> AddinSetup:
    """The add-in's setup from crmsync's Microsoft app registration (MicrosoftOAuth):
    the authority without its tenant segment is the identity platform's root."""
    root = str(oauth.authority).rstrip("/").rsplit("/", 1)[0]
    return AddinSetup(oauth.client_id, root, oauth.ca_path, office_js or OFFICE_JS)


class Unauthenticated(Exception):
    """The request carries no SSO token of crmsync's app registration (401)."""


def endpoint(public_url: str) -> str:
    return public_url.rstrip("/") + PATH


# -- the manifest ------------------------------------------------------------------------------
# The four surfaces the pane opens from, each with its button's group and label.
SURFACES = (
    ("MessageReadCommandSurface", "msgRead", "Beside this message"),
    ("MessageComposeCommandSurface", "msgCompose", "CRM documents"),
    ("AppointmentAttendeeCommandSurface", "apptRead", "Beside this meeting"),
    ("AppointmentOrganizerCommandSurface", "apptCompose", "Beside this meeting"),
)
ADDIN_ID = "0d3c5a4e-8a5b-4f7e-9c3e-2b6f0a1d9e47"  # the add-in's id (not an Azure app)


def manifest(public_url: str, client_id: str, name: str = "crmsync") -> str:
    """The add-in's XML manifest (a MailApp, with VersionOverrides 1.1 for the four
    command surfaces and WebApplicationInfo for SSO): what an admin deploys in the
    Microsoft 365 admin center. Every address in it is under `public_url`."""
    base = public_url.rstrip("/")
    pane = endpoint(base)
    host = urlsplit(base).netloc
    icons = f"{base}/app/assets/crmsync-logo"  # -<pixels>.png: the sizes Office asks for
    short = escape(name[:125])
    extension_points = "".join(
        _EXTENSION_POINT.format(surface=surface, group=group, label=f"{group}.label")
        for surface, group, _ in SURFACES
    )
    labels = "".join(
        f'<bt:String id="{group}.label" DefaultValue={quoteattr(label)}/>'
        f'<bt:String id="{group}.group" DefaultValue={quoteattr(name[:125])}/>'
        for _, group, label in SURFACES
    )
    tips = "".join(
        f'<bt:String id="{group}.tip" DefaultValue={quoteattr(tip)}/>'
        for (_, group, _label), tip in zip(SURFACES, _TIPS, strict=True)
    )
    return _MANIFEST.format(
        id=ADDIN_ID,
        name=short,
        description=escape(DESCRIPTION),
        icons=escape(icons),
        support=escape(f"{base}/app/"),
        domain=escape(base),
        pane=escape(pane),
        extension_points=extension_points,
        labels=labels,
        tips=tips,
        client_id=escape(client_id),
        resource=escape(f"api://{host}/{client_id}"),
    )


DESCRIPTION = (
    "The CRM beside your mail and meetings: the people behind a message, filing it to "
    "the CRM, a meeting's CRM activity, and CRM documents to attach."
)
_TIPS = (
    "The CRM records of the people in this message; file it to the CRM.",
    "Attach a document from the CRM to this message.",
    "The CRM activity of this meeting: colleagues, what it is about, its fields.",
    "The CRM activity of this meeting: colleagues, what it is about, its fields.",
)

_EXTENSION_POINT = """
          <ExtensionPoint xsi:type="{surface}">
            <OfficeTab id="TabDefault">
              <Group id="{group}.group">
                <Label resid="{group}.group"/>
                <Control xsi:type="Button" id="{group}.open">
                  <Label resid="{label}"/>
                  <Supertip>
                    <Title resid="{label}"/>
                    <Description resid="{group}.tip"/>
                  </Supertip>
                  <Icon>
                    <bt:Image size="16" resid="icon16"/>
                    <bt:Image size="32" resid="icon32"/>
                    <bt:Image size="80" resid="icon80"/>
                  </Icon>
                  <Action xsi:type="ShowTaskpane">
                    <SourceLocation resid="pane"/>
                  </Action>
                </Control>
              </Group>
            </OfficeTab>
          </ExtensionPoint>"""

_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<OfficeApp xmlns="http://schemas.microsoft.com/office/appforoffice/1.1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:bt="http://schemas.microsoft.com/office/officeappbasictypes/1.0"
    xmlns:mailappor="http://schemas.microsoft.com/office/mailappversionoverrides/1.0"
    xsi:type="MailApp">
  <Id>{id}</Id>
  <Version>1.0.0.0</Version>
  <ProviderName>{name}</ProviderName>
  <DefaultLocale>en-US</DefaultLocale>
  <DisplayName DefaultValue="{name}"/>
  <Description DefaultValue="{description}"/>
  <IconUrl DefaultValue="{icons}-64.png"/>
  <HighResolutionIconUrl DefaultValue="{icons}-128.png"/>
  <SupportUrl DefaultValue="{support}"/>
  <AppDomains>
    <AppDomain>{domain}</AppDomain>
  </AppDomains>
  <Hosts>
    <Host Name="Mailbox"/>
  </Hosts>
  <Requirements>
    <Sets>
      <Set Name="Mailbox" MinVersion="1.1"/>
    </Sets>
  </Requirements>
  <FormSettings>
    <Form xsi:type="ItemRead">
      <DesktopSettings>
        <SourceLocation DefaultValue="{pane}"/>
        <RequestedHeight>450</RequestedHeight>
      </DesktopSettings>
    </Form>
    <Form xsi:type="ItemEdit">
      <DesktopSettings>
        <SourceLocation DefaultValue="{pane}"/>
      </DesktopSettings>
    </Form>
  </FormSettings>
  <Permissions>ReadWriteItem</Permissions>
  <Rule xsi:type="RuleCollection" Mode="Or">
    <Rule xsi:type="ItemIs" ItemType="Message" FormType="ReadOrEdit"/>
    <Rule xsi:type="ItemIs" ItemType="Appointment" FormType="ReadOrEdit"/>
  </Rule>
  <DisableEntityHighlighting>false</DisableEntityHighlighting>
  <VersionOverrides xmlns="http://schemas.microsoft.com/office/mailappversionoverrides"
      xsi:type="VersionOverridesV1_0">
    <VersionOverrides xmlns="http://schemas.microsoft.com/office/mailappversionoverrides/1.1"
        xsi:type="VersionOverridesV1_1">
      <Requirements>
        <bt:Sets DefaultMinVersion="1.8">
          <bt:Set Name="Mailbox"/>
        </bt:Sets>
      </Requirements>
      <Hosts>
        <Host xsi:type="MailHost">
          <DesktopFormFactor>{extension_points}
          </DesktopFormFactor>
        </Host>
      </Hosts>
      <Resources>
        <bt:Images>
          <bt:Image id="icon16" DefaultValue="{icons}-16.png"/>
          <bt:Image id="icon32" DefaultValue="{icons}-32.png"/>
          <bt:Image id="icon80" DefaultValue="{icons}-80.png"/>
        </bt:Images>
        <bt:Urls>
          <bt:Url id="pane" DefaultValue="{pane}"/>
        </bt:Urls>
        <bt:ShortStrings>{labels}</bt:ShortStrings>
        <bt:LongStrings>{tips}</bt:LongStrings>
      </Resources>
      <WebApplicationInfo>
        <Id>{client_id}</Id>
        <Resource>{resource}</Resource>
        <Scopes>
          <Scope>openid</Scope>
          <Scope>profile</Scope>
        </Scopes>
      </WebApplicationInfo>
    </VersionOverrides>
  </VersionOverrides>
</OfficeApp>
"""


# -- checking who asks -------------------------------------------------------------------------
class _Keys:
    """Microsoft's published signing keys, per key id, fetched again for a key id not
    seen (Microsoft rolls its keys), at most every KEYS_REFETCH_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}

    def key(self, setup: AddinSetup, kid: str, fetch: Callable[[str], Any]) -> Any:
        url = f"{setup.authority_root}/common/discovery/v2.0/keys"
        with self._lock:
            fetched, keys = self._known.get(url, (0.0, {}))
            if kid not in keys and time.monotonic() - fetched > KEYS_REFETCH_SECONDS:
                keys = fetch(url)
                self._known[url] = (time.monotonic(), keys)
            return keys.get(kid)


_KEYS = _Keys()


def _fetch_keys(setup: AddinSetup) -> Callable[[str], dict[str, Any]]:
    def fetch(url: str) -> dict[str, Any]:
        import jwt
        import requests

        from crmsync.providers.microsoft.oauth import https_session

        try:
            answer = https_session(setup.ca_path).get(url, timeout=10)
            answer.raise_for_status()
            found = answer.json().get("keys") or []
        except (requests.RequestException, ValueError, AttributeError) as exc:
            log.warning("microsoft signing keys not fetched", extra={"error": type(exc).__name__})
            return {}
        keys: dict[str, Any] = {}
        for item in found:
            try:
                keys[str(item.get("kid"))] = jwt.PyJWK(item, "RS256").key
            except jwt.PyJWTError:
                continue
        return keys

    return fetch


def check_user(headers: Mapping[str, str], setup: AddinSetup) -> str:
    """The Microsoft account (`tid/oid`) whose Office SSO token the request carries, for
    crmsync's app registration; Unauthenticated otherwise."""
    import jwt

    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("no bearer token")
    try:
        kid = str(jwt.get_unverified_header(token).get("kid") or "")
    except jwt.PyJWTError as exc:
        raise Unauthenticated("not a token") from exc
    key = _KEYS.key(setup, kid, _fetch_keys(setup))
    if key is None:
        raise Unauthenticated("signed by no key Microsoft publishes")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=setup.client_id,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "aud", "iss", "tid", "oid"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the token does not verify ({type(exc).__name__})") from exc
    tenant, user = str(claims["tid"]), str(claims["oid"])
    if claims.get("iss") != f"{setup.authority_root}/{tenant}/v2.0":
        raise Unauthenticated("the token is not of Microsoft's identity platform v2.0")
    if SCOPE not in str(claims.get("scp") or "").split():
        raise Unauthenticated("the token is not for crmsync's pane")
    return f"{tenant}/{user}"


# -- the pages ---------------------------------------------------------------------------------
@cache
def _asset(name: str) -> str:
    """A file of the pane, read once per instance."""
    return (_HERE / name).read_text()


def on_page(services: Any, setup: AddinSetup, request: PushRequest) -> PushAnswer:
    """GET: the task pane (/), its script (/pane.js) and the manifest (/manifest.xml)."""
    if request.path in ("", "/"):
        page = Template(_asset("addin_pane.html")).substitute(
            office_js=escape(setup.office_js),
            script=escape(endpoint(services.public_url) + "/pane.js"),
            sign_in=escape(services.url("app") + "/me/pane/microsoft"),
            logo=escape(services.public_url.rstrip("/") + "/app/assets/crmsync-logo.png"),
        )
        return PushAnswer(200, "the task pane", page, _HTML, framed=True)
    if request.path == "/signed-in":
        page = Template(_asset("addin_signed_in.html")).substitute(
            office_js=escape(setup.office_js)
        )
        # Outlook on the web may show its dialog window in a frame
        return PushAnswer(200, "signed in", page, _HTML, framed=True)
    if request.path == "/pane.js":
        return PushAnswer(200, "the task pane's script", _asset("addin_pane.js"), _JS)
    if request.path == "/manifest.xml":
        return PushAnswer(200, "manifest", manifest(services.public_url, setup.client_id), _XML)
    from crmsync import service

    raise service.Refused(
        404,
        f"the Outlook add-in has no page {request.path[:40]!r}",
        "Open crmsync from Outlook's toolbar beside a message or a meeting.",
    )


# -- the actions -------------------------------------------------------------------------------
class _Refusal(Exception):
    def __init__(self, reason: str, next_step: str) -> None:
        super().__init__(reason)
        self.reason, self.next_step = reason, next_step


def on_action(services: Any, setup: AddinSetup, request: PushRequest) -> PushAnswer:
    """One POST of the task pane: checked, then answered with what the pane draws."""
    from crmsync import service
    from crmsync.usecases import pane

    scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == KEY_SCHEME.lower():  # signed in through the web app
        who = pane.keyed_viewer(services, "microsoft", key.strip())
        if who is None:
            log.warning("add-in request refused", extra={"reason": "not a pane key"})
            return _answer({"problem": _SIGN_IN}, 401)
    else:
        try:
            subject = check_user(request.headers, setup)
        except Unauthenticated as exc:
            log.warning("add-in request refused", extra={"reason": str(exc)})
            return _answer({"problem": _SIGN_IN}, 401)
        who = pane.viewer(services, "microsoft", subject)
    try:
        asked = json.loads(request.body or b"{}")
    except ValueError:
        asked = None
    if not isinstance(asked, dict):
        return _answer({"problem": {"reason": "The pane sent no request", "next_step": ""}}, 400)
    if isinstance(who, pane.Blocked):
        return _answer({"view": "blocked", **_blocked(who)})
    action = str(request.query.get("do") or "home")
    try:
        return _answer(_act(services, who, action, asked))
    except service.Refused as exc:
        reason = exc.reason[:1].upper() + exc.reason[1:]
        return _answer({"problem": {"reason": reason, "next_step": exc.next_step}}, exc.status)
    except _Refusal as exc:
        return _answer({"problem": {"reason": exc.reason, "next_step": exc.next_step}})
    except SyncError as exc:
        log.warning("add-in action failed", extra={"error": type(exc).__name__})
        return _answer(
            {"problem": {"reason": _failure(exc), "next_step": "Try again in a minute."}}
        )


_SIGN_IN = {
    "reason": "Outlook did not say who you are",
    "next_step": "Sign in to crmsync with the button below, or close the pane and open it again.",
}
KEY_SCHEME = "Crmsync"  # Authorization: Crmsync <pane key>, from the web app's sign-in


def _answer(body: Mapping[str, Any], status: int = 200) -> PushAnswer:
    return PushAnswer(status, "the pane's answer", json.dumps(body, default=str), _JSON)


def _blocked(blocked: Any) -> dict[str, str]:
    return {
        "reason": blocked.reason,
        "next_step": blocked.next_step,
        "link": blocked.link,
        "label": blocked.label,
    }


def _failure(exc: SyncError) -> str:
    from crmsync.usecases import pane

    return pane.failure(exc, "Outlook")


def _texts(value: Any, most: int = 50) -> list[str]:
    return [str(v)[:300] for v in value[:most]] if isinstance(value, list) else []


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _pairs(value: Any) -> list[tuple[str, str]]:
    """(name, address) pairs as the pane sends them: [[name, address], …]."""
    found: list[tuple[str, str]] = []
    for item in value[:100] if isinstance(value, list) else []:
        if isinstance(item, list) and len(item) == 2:
            found.append((str(item[0] or "")[:200], str(item[1] or "")[:320]))
    return found


def _act(services: Any, who: Any, action: str, asked: dict[str, Any]) -> dict[str, Any]:
    from crmsync.usecases import documents, pane

    home = pane.sign_in_url(services, who.tenant)
    item = str(asked.get("item") or "")[:500]
    if action == "home":
        return {"view": "home", "account": who.record.account, "link": home}
    if action == "message":
        shown = pane.message_pane(services, who, _pairs(asked.get("participants")))
        return {
            "view": "message",
            "people": [_beside(b) for b in shown.people],
            "late": list(shown.late),
            "failed": shown.failed,
            "left_out": shown.left_out,
            "files_mail": who.files_mail,
            "link": home,
        }
    if action == "search":
        people = pane.search(services, who, str(asked.get("text") or ""))
        return {"people": [_person(p) for p in people]}
    if action == "file":
        if not item:
            raise _Refusal("This message is not saved yet", "File it once it is sent or saved.")
        chosen = list(dict.fromkeys(_texts(asked.get("records"))))[:MOST_FILED]
        names = _object(asked.get("names"))
        shown_names = {ref: str(names.get(ref) or ref)[:200] for ref in chosen}
        pane.file_message(services, who, item, chosen, shown_names)
        filed = len(chosen)
        plural = "s" if filed > 1 else ""
        return {
            "filed": filed,
            "note": f"Filed to {filed} record{plural}: in the CRM within a minute",
        }
    if action == "create":
        fields = _object(asked.get("fields"))
        made = pane.create_person(
            services,
            who,
            str(asked.get("kind") or ""),
            str(asked.get("address") or ""),
            {name: str(fields.get(name) or "") for name in pane.PERSON_FIELDS},
            item or str(asked.get("subject") or ""),
        )
        return {"made": made, "note": "The person is in the CRM."}
    if action == "prefill":
        given = _pairs([[asked.get("name"), asked.get("address")]])
        name, address = given[0] if given else ("", "")
        return {"fields": pane.prefilled(address, name)}
    if action == "meeting":
        events = [e for e in _texts(asked.get("events"), 2) if e]
        if not events:
            raise _Refusal("This meeting is not saved yet", "Save it, then open the pane again.")
        found = pane.meeting(services, who, events, _pairs(asked.get("attendees")))
        if isinstance(found, pane.Blocked):
            return {"view": "blocked", **_blocked(found)}
        return {"view": "meeting", **_meeting(found)}
    if action == "meeting_save":
        custom = _object(asked.get("custom"))
        shown_version = str(asked.get("version") or "")
        version = pane.save_meeting(
            services,
            who,
            str(asked.get("activity") or ""),
            shown_version,
            join=_texts(asked.get("join")),
            about=_texts(asked.get("about")),
            custom={str(k)[:100]: str(v)[:1000] for k, v in custom.items()},
        )
        if version == shown_version:
            return {"version": version, "note": "Nothing to save: tick or fill something first."}
        return {"version": version, "note": "Saved to the CRM."}
    if action == "documents":
        found_documents = documents.find(services, who, str(asked.get("text") or ""))
        return {"documents": [_document(d) for d in found_documents]}
    if action == "document":
        return _attachment(services, who, str(asked.get("id") or ""))
    raise _Refusal("The pane asked for something crmsync does not do", "Reload the pane.")


def _attachment(services: Any, who: Any, document: str) -> dict[str, Any]:
    """A document as the pane attaches it: its bytes (base64), or, past ATTACH_MOST,
    the address that opens it (documents.address)."""
    from crmsync.usecases import documents, pane

    if not document:
        raise _Refusal("No document was chosen", "Choose a document to attach.")
    name, kind, data = pane.crm_of(services, who).document(document)
    log.info("document attached from the pane", extra={"tenant": who.tenant})
    if len(data) > ATTACH_MOST:
        link = documents.address(services, who.tenant, who.record.id, document)
        return {"name": name, "link": link}
    return {"name": name, "content_type": kind, "base64": base64.b64encode(data).decode()}


def _person(person: Any) -> dict[str, str]:
    return {
        "ref": f"{person.kind}/{person.id}",
        "name": person.name,
        "detail": " · ".join(part for part in (person.kind, *person.emails[:1]) if part),
    }


def _related(related: Any) -> dict[str, str]:
    return {"name": related.name, "url": related.url, "detail": related.detail}


def _beside(beside: Any) -> dict[str, Any]:
    from crmsync.usecases import pane

    shown: dict[str, Any] = {
        "address": beside.address,
        "name": beside.name,
        "failed": beside.failed,
        "more": beside.more,
    }
    card = beside.card
    if card is None:
        if not beside.failed:
            shown["prefill"] = pane.prefilled(beside.address, beside.name)
        return shown
    shown["card"] = {
        "ref": f"{card.person.kind}/{card.person.id}",
        "kind": card.person.kind,
        "name": card.person.name,
        "title": card.title,
        "url": card.url,
        "account": _related(card.account) if card.account is not None else None,
        "opportunities": [_related(deal) for deal in card.opportunities],
        "history": [
            {"subject": item.subject, "date": item.date.date().isoformat() if item.date else ""}
            for item in card.history
        ],
        "fields": [list(pair) for pair in card.fields],
    }
    return shown


def _meeting(found: Any) -> dict[str, Any]:
    def related(item: Any) -> dict[str, str]:
        return {"ref": f"{item.kind}/{item.id}", "kind": item.kind, "name": item.name}

    return {
        "activity": found.activity,
        "version": found.version,
        "subject": found.subject,
        "leader": found.leader,
        "members": list(found.members),
        "regarding": [related(r) for r in found.regarding],
        "offered": [related(r) for r in found.offered],
        "joinable": [{"id": user, "name": name} for user, name in found.joinable],
        "custom": [{"name": n, "type": t, "value": v} for n, t, v in found.custom],
    }


def _document(document: Any) -> dict[str, Any]:
    return {"id": document.id, "name": document.name, "size": document.size}

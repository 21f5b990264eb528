"""The Outlook add-in's manifest (CTX-1), as `crmsync addon-deployment --provider
microsoft` prints it and the addon function serves it: valid against the manifest's XML
Schemas (MailApp with VersionOverrides 1.0 and 1.1, tests/schemas/outlook), so a
misspelt element fails here and not when an admin uploads it; the task pane opens from
the four surfaces a sales rep uses, every resource it names is declared, every address
is crmsync's, and SSO is asked for crmsync's own app registration."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from lxml import etree

from crmsync.cli import main
from tests.outlook_manifest import schema_errors

PUBLIC = "https://europe-west1-acme.cloudfunctions.net"
CLIENT = "6f1c2a8e-3b7d-4c1e-9f0a-5d2e8b4c7a10"
NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "v": "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def printed(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def manifest() -> bytes:
    code, out, err = printed(
        "addon-deployment", "--provider", "microsoft", "--public-url", PUBLIC, "--client-id", CLIENT
    )
    assert code == 0, err
    return out.encode()


def test_CTX1_the_outlook_manifest_is_valid_against_the_manifest_schemas() -> None:
    assert schema_errors(manifest()) == []


def test_CTX1_the_schema_check_catches_a_misspelt_element() -> None:
    broken = manifest().replace(b"<ExtensionPoint ", b"<ExtensionPont ", 1)
    assert any("ExtensionPont" in error for error in schema_errors(broken))


def test_CTX1_the_pane_opens_beside_read_and_written_messages_and_both_sides_of_a_meeting() -> None:
    root = etree.fromstring(manifest())
    points = root.findall(".//v:DesktopFormFactor/v:ExtensionPoint", NS)
    assert sorted(p.get(XSI_TYPE) for p in points) == [
        "AppointmentAttendeeCommandSurface",
        "AppointmentOrganizerCommandSurface",
        "MessageComposeCommandSurface",
        "MessageReadCommandSurface",
    ]
    for point in points:  # each a button that shows the task pane
        [action] = point.findall(".//v:Action", NS)
        assert action.get(XSI_TYPE) == "ShowTaskpane"
        assert action.find("v:SourceLocation", NS).get("resid") == "pane"
    urls = {u.get("id"): u.get("DefaultValue") for u in root.iterfind(".//bt:Url", NS)}
    assert urls == {"pane": f"{PUBLIC}/addon/microsoft"}
    [form] = root.findall(".//o:Form[@xsi:type='ItemRead']//o:SourceLocation", NS)
    assert form.get("DefaultValue") == f"{PUBLIC}/addon/microsoft"
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadWriteItem"  # attaches files


def test_CTX1_every_resource_the_manifest_names_is_declared_and_every_address_is_crmsyncs() -> None:
    root = etree.fromstring(manifest())
    declared = {e.get("id") for e in root.iterfind(".//v:Resources//*[@id]", NS)}
    named = {e.get("resid") for e in root.iter() if e.get("resid") is not None}
    assert named and named <= declared  # the schema does not check this; Outlook does
    addresses = [
        value
        for e in root.iter()
        for value in [e.get("DefaultValue") or "", e.text or ""]
        if value.startswith("http")
    ]
    assert addresses and all(a.startswith(PUBLIC + "/") or a == PUBLIC for a in addresses)


def test_CTX1_sso_is_asked_for_crmsyncs_app_registration() -> None:
    root = etree.fromstring(manifest())
    info = root.find(".//v:WebApplicationInfo", NS)
    assert info.findtext("v:Id", namespaces=NS) == CLIENT
    host = PUBLIC.removeprefix("https://")
    assert info.findtext("v:Resource", namespaces=NS) == f"api://{host}/{CLIENT}"


def test_CTX1_the_outlook_manifest_needs_the_app_registrations_client_id() -> None:
    code, _, err = printed("addon-deployment", "--provider", "microsoft", "--public-url", PUBLIC)
    assert code == 2 and "--client-id" in err


def test_CTX1_the_schema_check_passes_microsofts_own_sample_manifest() -> None:
    """The check itself: Microsoft's published Outlook sample (VersionOverrides 1.1 with
    WebApplicationInfo) is valid, so a failure above is crmsync's manifest, not the
    schemas' copy."""
    sample = Path(__file__).resolve().parents[1] / "schemas" / "outlook" / "sample-manifest.xml"
    assert schema_errors(sample.read_bytes()) == []

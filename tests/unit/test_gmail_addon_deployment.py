"""The Gmail add-on's deployment resource (CTX-1), as `crmsync addon-deployment` prints
it: each part parsed by Google's add-on manifest protos (google-apps-script-type) with
unknown fields refused, so a misspelt key fails here and not at `gcloud workspace-add-ons
deployments create`; every trigger calls the addon function's Google endpoint."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

from google.apps.script import type as manifest
from google.apps.script.type import calendar, gmail

from crmsync.cli import main

PUBLIC = "https://europe-west1-acme.cloudfunctions.net"


def printed(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_CTX1_the_deployment_parses_as_googles_add_on_manifest_and_calls_the_addon_function() -> (
    None
):
    code, out, _ = printed("addon-deployment", "--public-url", PUBLIC)

    assert code == 0
    deployment = json.loads(out)
    add_ons = deployment["addOns"]
    common = manifest.CommonAddOnManifest.from_json(json.dumps(add_ons["common"]))
    trigger = gmail.GmailAddOnManifest.from_json(json.dumps(add_ons["gmail"]))
    options = manifest.HttpOptions.from_json(json.dumps(add_ons["httpOptions"]))
    events = calendar.CalendarAddOnManifest.from_json(json.dumps(add_ons["calendar"]))
    endpoint = f"{PUBLIC}/addon/google"
    assert common.homepage_trigger.run_function == endpoint
    assert [t.on_trigger_function for t in trigger.contextual_triggers] == [endpoint]
    [compose] = trigger.compose_trigger.actions
    assert (compose.run_function, compose.label) == (f"{endpoint}?do=compose", "CRM documents")
    assert trigger.compose_trigger.draft_access == gmail.ComposeTrigger.DraftAccess.NONE
    assert events.event_open_trigger.run_function == endpoint
    assert events.current_event_access == calendar.CalendarAddOnManifest.EventAccess.READ
    assert options.authorization_header == manifest.HttpAuthorizationHeader.SYSTEM_ID_TOKEN
    assert set(add_ons) == {"common", "gmail", "calendar", "httpOptions"}
    assert deployment["oauthScopes"] == [
        "https://www.googleapis.com/auth/userinfo.email",  # the user's ID token in each event
        "https://www.googleapis.com/auth/gmail.addons.execute",
        "https://www.googleapis.com/auth/gmail.addons.current.message.metadata",  # headers only
        "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
        "https://www.googleapis.com/auth/calendar.addons.execute",
        "https://www.googleapis.com/auth/calendar.addons.current.event.read",  # its guests
    ]


def test_CTX1_the_deployment_asks_for_an_https_address_and_a_provider_with_an_add_on() -> None:
    assert printed("addon-deployment", "--public-url", "http://localhost:8080")[0] == 2
    code, _, err = printed("addon-deployment", "--public-url", PUBLIC, "--provider", "nowhere")
    assert code == 2 and "no provider 'nowhere'" in err

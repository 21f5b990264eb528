"""EML-2: attachments too large for the CRM go to an object store through the S3 API
(crmsync.objectstore), tested over the wire against moto's S3 server: one that checks
every request's Signature Version 4 against IAM keys, which takes crmsync's signed PUT
and refuses a wrong secret, and one that serves crmsync's presigned links; the links'
signatures are the ones botocore, Amazon's own implementation, computes for the same
request and moment."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
import requests
from botocore.config import Config

from crmsync.crm.memory import MemoryCrm
from crmsync.errors import PermanentError, TransientError
from crmsync.mail import files, recording
from crmsync.mail.reader import Attachment
from crmsync.objectstore import Bucket, ObjectStore
from crmsync.ports import MailLimits
from crmsync.providers.memory import MemoryMailbox
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.local.emulators import free_port
from sandbox.local.stack import LocalStack

pytestmark = pytest.mark.integration

REGION = "us-east-1"
NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
SECRET = b"crmsync-secret-for-tests"
NO_WAIT = timedelta(0)
KEY = "t1/mail-4f2a/Angebot Müller.pdf"
PDF = b"%PDF-1.4 a quote"


@dataclass
class Moto:
    endpoint: str
    access_key: str
    secret_key: str

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def store(self, secret: str | None = None, **kw: Any) -> ObjectStore:
        bucket = Bucket(
            self.endpoint, "attachments", REGION, self.access_key, secret or self.secret_key
        )
        return ObjectStore(bucket, **kw)


def moto_server(checks_signatures: bool) -> Iterator[Moto]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    if checks_signatures:  # every request after the first four is checked
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.1)
    try:
        if checks_signatures:  # the four actions allowed before every request is checked
            iam = boto3.client(
                "iam",
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="setup",
                aws_secret_access_key="setup",
            )
            iam.create_user(UserName="crmsync")
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
            iam.put_user_policy(
                UserName="crmsync", PolicyName="s3", PolicyDocument=json.dumps(policy)
            )
            key = iam.create_access_key(UserName="crmsync")["AccessKey"]
            moto = Moto(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        else:
            moto = Moto(endpoint, "AKIAEXAMPLE", "secret-example")
        moto.s3().create_bucket(Bucket="attachments")
        yield moto
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def checking() -> Iterator[Moto]:
    yield from moto_server(checks_signatures=True)


@pytest.fixture(scope="module")
def serving() -> Iterator[Moto]:
    yield from moto_server(checks_signatures=False)


def test_EML2_a_signed_put_is_accepted_by_a_store_that_checks_signatures(checking: Moto) -> None:
    checking.store().put(KEY, "application/pdf", PDF)

    stored = checking.s3().get_object(Bucket="attachments", Key=KEY)
    assert stored["Body"].read() == PDF
    assert stored["ContentType"] == "application/pdf"


def test_EML2_a_put_again_replaces_the_object_and_stores_no_second(checking: Moto) -> None:
    store = checking.store()
    store.put("t1/again.txt", "text/plain", b"first")
    store.put("t1/again.txt", "text/plain", b"second")

    listed = checking.s3().list_objects_v2(Bucket="attachments", Prefix="t1/again")
    assert [o["Key"] for o in listed["Contents"]] == ["t1/again.txt"]
    assert (
        checking.s3().get_object(Bucket="attachments", Key="t1/again.txt")["Body"].read()
        == b"second"
    )


def test_EML2_a_wrong_secret_is_refused_and_says_so_without_the_secret(checking: Moto) -> None:
    with pytest.raises(PermanentError) as refused:
        checking.store(secret="not-the-secret").put("t1/x.txt", "text/plain", b"x")

    assert "403" in str(refused.value) and "not-the-secret" not in str(refused.value)
    assert "not-the-secret" not in repr(checking.store(secret="not-the-secret"))


def test_EML2_an_unreachable_store_is_transient() -> None:
    bucket = Bucket(f"http://127.0.0.1:{free_port()}", "attachments", REGION, "a", "b")

    with pytest.raises(TransientError):
        ObjectStore(bucket, timeout=2).put("t1/x.txt", "text/plain", b"x")


def test_EML2_a_link_downloads_the_attachment_under_its_name(serving: Moto) -> None:
    store = serving.store()
    store.put(KEY, "application/pdf", PDF)

    answer = requests.get(store.link(KEY, "Angebot Müller.pdf", seconds=600), timeout=10)

    assert answer.status_code == 200 and answer.content == PDF
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=\"Angebot M_ller.pdf\"; filename*=UTF-8''Angebot%20M%C3%BCller.pdf"
    )


def test_EML2_a_link_is_signed_as_botocore_signs_the_same_request(
    serving: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2026, 11, 3, 9, 30, 5, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))
    store = serving.store(clock=lambda: moment)
    disposition = (
        "attachment; filename=\"Angebot M_ller.pdf\"; filename*=UTF-8''Angebot%20M%C3%BCller.pdf"
    )

    ours = store.link(KEY, "Angebot Müller.pdf", seconds=600)
    theirs = serving.s3().generate_presigned_url(
        "get_object",
        Params={"Bucket": "attachments", "Key": KEY, "ResponseContentDisposition": disposition},
        ExpiresIn=600,
    )

    assert urlsplit(ours).path == urlsplit(theirs).path
    assert parse_qs(urlsplit(ours).query) == parse_qs(urlsplit(theirs).query)


# -- attachments too large for the CRM, through a recording pass and the app ---------------
BIG = b"%PDF-1.4 " + b"x" * 4000


def big_mail() -> bytes:
    encoded = base64.b64encode(BIG).decode()
    return (
        "From: Ann <ann@example.com>\r\nTo: dana.rep@demo.example\r\nSubject: The contract\r\n"
        "Message-ID: <contract-1@example.com>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nSigned contract attached.\r\n"
        "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        f'filename="Vertrag Müller.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n'
        "--b--\r\n"
    ).encode()


def test_EML2_an_attachment_too_large_for_the_crm_is_kept_and_linked_once_however_often_filed(
    serving: Moto,
) -> None:
    crm = MemoryCrm(lambda: NOW)
    crm.mail_limits = MailLimits(attachment_bytes=1000)  # the PDF is larger
    fields = {"first_name": "Ann", "last_name": "B", "emails": ["ann@example.com"]}
    contact = crm.log.insert("contact", fields, owner="u1", remote=False)
    box = MemoryMailbox(lambda: NOW, "dana.rep@demo.example")
    sent = box.deliver(big_mail())
    box.tag(sent)
    keep = files.keeper(serving.store(), SECRET, "https://crmsync.example", "t1")

    labels = recording.record_tagged(
        box, crm.connector("u1"), ["dana.rep@demo.example"], "google-u1", {}, keep=keep
    ).labels
    box.tag(sent)
    recording.record_tagged(
        box, crm.connector("u1"), ["dana.rep@demo.example"], "google-u1", labels, keep=keep
    )

    [item] = [held.entry for held in crm.history[("contact", contact.id)]]
    [linked] = item.links
    assert (item.attachments, linked.filename, linked.size) == ((), "Vertrag Müller.pdf", len(BIG))
    assert linked.url.startswith("https://crmsync.example/app/files/t1.")
    kept = serving.s3().list_objects_v2(Bucket="attachments", Prefix="mail/t1/")["Contents"]
    assert len(kept) == 1
    tenant, key = files.opened(SECRET, linked.url.rsplit("/", 1)[1])
    assert (tenant, key) == ("t1", kept[0]["Key"])


def test_EML2_the_crm_s_link_opens_the_attachment_through_the_app(serving: Moto) -> None:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    try:
        stack.services.attachments = serving.store()
        keep = files.keeper(
            stack.services.attachments, stack.services.secret, stack.services.public_url, "t1"
        )
        attachment = Attachment("Vertrag Müller.pdf", "application/pdf", BIG)
        linked = keep("mail-key", attachment)

        opened = requests.get(linked.url, allow_redirects=False, timeout=30)
        downloaded = requests.get(opened.headers["Location"], timeout=30)
        forged = requests.get(linked.url[:-3] + "abc", timeout=30, headers={"Accept": "text/html"})
    finally:
        stack.close()

    assert opened.status_code == 303
    assert downloaded.status_code == 200 and downloaded.content == BIG
    assert "Vertrag" in downloaded.headers["Content-Disposition"]
    assert forged.status_code == 404 and forged.headers["Content-Type"].startswith("text/html")
    assert "not kept any more" in forged.text


# -- a tenant's own bucket, and its size limit (EML-2) ------------------------------------------
def contract_from_ada(n: int) -> bytes:
    return (
        big_mail()
        .replace(b"Ann <ann@example.com>", b"Ada <ada@acme.example>")
        .replace(b"contract-1@example.com", f"contract-{n}@acme.example".encode())
    )


def test_EML2_an_admin_names_the_companys_own_bucket_and_large_attachments_are_kept_there(
    checking: Moto,
) -> None:
    """The tenant admin names an S3 bucket of the company's (the deployment keeps none):
    a wrong secret is refused with its reason and nothing is kept; the right one is
    checked by a write, kept sealed and never shown; a tagged message's attachment too
    large for the CRM then lands in that bucket and the CRM's link opens it. With the
    company's limit at 0 MB, the next one is only named."""
    from crmsync import service
    from crmsync.usecases import attachments
    from sandbox.crm.seed import DEMO_TENANT
    from sandbox.google import gmail
    from sandbox.local.stack import DEMO_USERS
    from tests.app_helpers import app, csrf, sign_in
    from tests.integration.test_app_preview_import import drain

    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    try:
        stack.create_demo_tenant()
        stack.crm.set_history_limits(DEMO_TENANT, attachment_bytes=1000)  # the PDF is larger
        assert stack.connect("u1", services="sync,mail").status_code == 200
        assert stack.connect("u2", provider="microsoft", services="mail").status_code == 200
        drain(stack)
        admin = sign_in(stack, DEMO_USERS["u2"], provider="microsoft")
        token = {"X-CSRF-Token": csrf(admin.get(app(stack, "/admin/settings")).text)}
        bucket = {
            "endpoint": checking.endpoint,
            "bucket": "attachments",
            "region": REGION,
            "access_key": checking.access_key,
        }
        named = app(stack, "/api/admin/settings/attachments")

        wrong = admin.post(named, json={**bucket, "secret": "not-the-secret"}, headers=token)
        assert wrong.status_code == 400
        assert "the bucket refused crmsync's write with this key" in wrong.json()["error"]
        assert attachments.shown(stack.services, DEMO_TENANT) is None
        form = {
            **bucket,
            "endpoint": "http://s3.example.com",  # not https
            "secret": "typed-secret",
            "csrf": token["X-CSRF-Token"],
        }
        page = admin.post(
            app(stack, "/admin/settings/attachments"), data=form, headers={"Accept": "text/html"}
        )
        assert page.status_code == 400 and 'id="company-settings"' in page.text  # its page
        assert "Nothing was changed." in page.text
        assert "The store address must begin with https://" in page.text
        assert 'value="attachments"' in page.text and "typed-secret" not in page.text
        assert attachments.shown(stack.services, DEMO_TENANT) is None

        right = admin.post(named, json={**bucket, "secret": checking.secret_key}, headers=token)
        assert right.status_code == 200, right.text
        assert checking.secret_key not in right.text
        kept = stack.services.backend.store(DEMO_TENANT).tenant_record()
        assert checking.secret_key not in json.dumps(kept, default=str)
        page = admin.get(app(stack, "/admin/settings")).text
        assert 'id="bucket-named"' in page and checking.secret_key not in page

        record = service.connection_of(stack.services.backend.store(DEMO_TENANT), "google-u1")
        assert record is not None
        dana = DEMO_USERS["u1"]
        ada = next(
            c["id"] for c in stack.crm.all(DEMO_TENANT, "contact") if c["last_name"] == "Lovelace"
        )

        def record_tagged(n: int) -> dict[str, Any]:
            sent = gmail.deliver(stack.google, dana, contract_from_ada(n))
            gmail.change_labels(stack.google, dana, sent, add=[record.mail_labels["send"]])
            service.enqueue_cycle(stack.services, DEMO_TENANT, record.id, "mail", delay=NO_WAIT)
            drain(stack)
            held = stack.crm.history(DEMO_TENANT, "contact", ada)
            found: dict[str, Any] = [i for i in held if i["subject"] == "The contract"][-1]
            return found

        item = record_tagged(1)
        [link] = item["links"]
        objects = checking.s3().list_objects_v2(Bucket="attachments", Prefix="mail/")["Contents"]
        assert len(objects) == 1
        stored = checking.s3().get_object(Bucket="attachments", Key=objects[0]["Key"])
        assert stored["Body"].read() == BIG
        opened = requests.get(link.url, allow_redirects=False, timeout=30)
        assert opened.status_code == 303  # to the object, signed with the company's key
        to = urlsplit(opened.headers["Location"])
        assert f"{to.scheme}://{to.netloc}{to.path}" == (
            f"{checking.endpoint}/attachments/{objects[0]['Key']}"
        )
        credential = parse_qs(to.query)["X-Amz-Credential"][0]
        assert credential.startswith(checking.access_key + "/")
        # (moto checking signatures cannot serve a presigned GET; a store that can is
        # test_EML2_a_link_downloads_the_attachment_under_its_name's)

        limit = {"defaults": {"attachment_mb": 0}}
        assert admin.post(app(stack, "/api/admin/settings"), json=limit, headers=token).ok
        named_only = record_tagged(2)
        assert named_only["links"] == []
        assert "Vertrag Müller.pdf" in named_only["body"]
        after = checking.s3().list_objects_v2(Bucket="attachments", Prefix="mail/")["Contents"]
        assert len(after) == 1
    finally:
        stack.close()

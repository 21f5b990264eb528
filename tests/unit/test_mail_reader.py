"""EML-2: a tagged message read into what its CRM history item holds, over a corpus of
the oddities real mail carries (missing or wrong charsets, 8-bit headers, nested
multiparts, winmail.dat, inline images, HTML only, attached messages, broken dates),
and generated MIME: whatever arrives, the reader answers a message or `Unreadable`,
never another error. EML-5: a message's subject and sender as a page shows them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.mail import quotes
from crmsync.mail.reader import (
    Participant,
    Unreadable,
    header_text,
    headline,
    read,
    sender_of,
    sender_text,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("ascii")


SIMPLE = crlf(
    """From: Ann Buyer <Ann.Buyer@Example.com>
To: Dana Rep <dana.rep@demo.example>, bo@example.org
Cc: "Doe, Jo" <jo@example.net>
Subject: Offer for 40 seats
Date: Tue, 3 Nov 2026 10:15:00 +0100
Message-ID: <CAF=abc123@mail.example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hi Dana,

we would like the offer for 40 seats.

Ann

On Mon, 2 Nov 2026 at 09:00, Dana Rep <dana.rep@demo.example> wrote:
> Here is our price list.
> Best, Dana
"""
)


def test_EML2_a_plain_message_gives_subject_text_participants_date_and_message_id() -> None:
    mail = read(SIMPLE)

    assert mail.message_id == "CAF=abc123@mail.example.com"
    assert mail.subject == "Offer for 40 seats"
    assert mail.text == "Hi Dana,\n\nwe would like the offer for 40 seats.\n\nAnn"
    assert mail.date == datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
    assert mail.participants == (
        Participant("from", "ann.buyer@example.com", "Ann Buyer"),
        Participant("to", "dana.rep@demo.example", "Dana Rep"),
        Participant("to", "bo@example.org", ""),
        Participant("cc", "jo@example.net", "Doe, Jo"),
    )
    assert mail.attachments == ()


def test_EML2_a_part_without_charset_is_read_as_utf8_when_it_is_and_else_as_windows_1252() -> None:
    head = b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\n"
    utf8 = head + b"Gr\xc3\xbc\xc3\x9fe\r\n"
    cp1252 = head + b"Gr\xfc\xdfe \x80 5\r\n"
    wrong = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=x-unknown-9\r\n"
        b"\r\nna\xefve\r\n"
    )

    assert read(utf8).text == "Grüße"
    assert read(cp1252).text == "Grüße € 5"
    assert read(wrong).text == "naïve"


def test_EML2_raw_8bit_headers_and_encoded_words_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@example.de>\r\n"
        b"To: Ren\xc3\xa9 <rene@example.fr>\r\n"
        b"Subject: =?utf-8?b?QW5nZWJvdCBmw7xyIEvDtmxu?= \xc3\xa0 la carte\r\n"
        b"\r\nbody\r\n"
    )
    mail = read(raw)

    assert mail.subject == "Angebot für Köln à la carte"
    assert mail.participants[0] == Participant("from", "joerg@example.de", "Jörg Müller")
    assert mail.participants[1] == Participant("to", "rene@example.fr", "René")


def test_EML5_a_headline_is_the_subject_and_sender_read_from_the_headers_alone() -> None:
    raw = (
        b"From: =?utf-8?q?Gro=C3=9F=2C_J=C3=BCrgen?= <jg@example.de>\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n =?utf-8?q?_au_lait?= for \xc3\x9cber\r\n"
        b"Content-Type: text/plain; charset=x-nothing\r\n\r\n\xff\xfe not read\r\n"
    )

    assert headline(raw) == ("Café au lait for Über", "Groß, Jürgen <jg@example.de>")
    assert headline(b"To: dana.rep@demo.example\r\n\r\nHello\r\n") == ("", "")
    assert headline(SIMPLE) == ("Offer for 40 seats", "Ann Buyer <Ann.Buyer@Example.com>")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Groß, Jürgen <jg@example.de>", "Groß, Jürgen <jg@example.de>"),  # decoded already
        ('"Doe, Jo" <jo@example.net>', "Doe, Jo <jo@example.net>"),
        ("=?iso-8859-1?q?Ren=E9e?= <renee@example.fr>", "Renée <renee@example.fr>"),
        ("jo@example.net", "jo@example.net"),
        ("<jo@example.net>", "jo@example.net"),
        ("jo@example.net <jo@example.net>", "jo@example.net"),
        ("jo@example.net (Jo Doe)", "Jo Doe <jo@example.net>"),
        ("Ann <ann@example.com>, Bo <bo@example.org>", "Ann <ann@example.com>"),
        ("Mail Delivery System", "Mail Delivery System"),
        ("", ""),
    ],
)
def test_EML5_a_sender_is_its_name_and_address_or_the_address_alone(value: str, shown: str) -> None:
    assert sender_of(value) == shown


def test_EML5_header_text_decodes_what_a_mailbox_service_left_encoded_and_keeps_the_rest() -> None:
    assert header_text("=?utf-8?b?R3LDvMOfZQ==?=  aus\r\n Köln") == "Grüße aus Köln"
    assert header_text("=?utf-8?q?broken") == "=?utf-8?q?broken"
    assert header_text("Price = 5?=") == "Price = 5?="
    assert sender_text(" Ann  Buyer ", "ann@example.com") == "Ann Buyer <ann@example.com>"
    assert sender_text("ANN@example.com", "ann@example.com") == "ann@example.com"
    assert sender_text("Ann", "") == "Ann"


def test_EML2_an_html_only_message_is_recorded_as_its_text() -> None:
    raw = crlf(
        """From: a@example.com
Subject: Newsletter
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>alert(1)</script></head>
<body><p>Dear <b>Dana</b>,</p><p>our new<br>catalogue:</p>
<ul><li>chairs</li><li>desks</li></ul></body></html>
"""
    )
    text = read(raw).text

    assert "alert" not in text and "color" not in text and "<" not in text
    assert text.splitlines()[:4] == ["Dear Dana,", "", "our new", "catalogue:"]
    assert "* chairs" in text and "* desks" in text


NESTED = crlf(
    """From: Ann <ann@example.com>
To: dana.rep@demo.example
Subject: Contract
Message-ID: <nested-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=us-ascii

Please find the contract attached.
--alt
Content-Type: text/html; charset=us-ascii

<p>Please find the <b>contract</b> attached.</p><img src="cid:logo@x">
--alt--
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--outer
Content-Type: application/pdf; name="=?utf-8?q?Vertrag_M=C3=BCller.pdf?="
Content-Disposition: attachment; filename*=utf-8''Vertrag%20M%C3%BCller.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer
Content-Type: application/ms-tnef
Content-Transfer-Encoding: base64

eJ8+IgAB
--outer
Content-Type: message/rfc822

From: bo@example.org
Subject: The earlier offer

Old text.
--outer--
"""
)


def test_EML2_nested_multiparts_give_the_plain_alternative_and_every_attachment() -> None:
    mail = read(NESTED)

    assert mail.text == "Please find the contract attached."
    got = [(a.filename, a.content_type, a.content_id) for a in mail.attachments]
    assert got == [
        ("attachment-1.png", "image/png", "logo@x"),
        ("Vertrag Müller.pdf", "application/pdf", ""),
        ("winmail.dat", "application/ms-tnef", ""),
        ("The earlier offer.eml", "message/rfc822", ""),
    ]
    assert mail.attachments[0].data == base64.b64decode("iVBORw0KGgo=")
    assert mail.attachments[1].data == b"%PDF-1.4\n"
    assert b"Old text." in mail.attachments[3].data


def test_EML2_an_attachment_name_in_raw_8bit_bytes_is_read_as_utf8() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="Gr\xc3\xbc\xc3\x9fe.pdf"\r\n'
        b"\r\n%PDF\r\n--b--\r\n"
    )

    assert [a.filename for a in read(raw).attachments] == ["Grüße.pdf"]


def test_EML2_broken_base64_and_a_broken_date_do_not_stop_the_message() -> None:
    raw = crlf(
        """From: a@example.com
Subject: Broken
Date: yesterday-ish
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

Text survives.
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename=x.bin
Content-Transfer-Encoding: base64

@@@not base64!!!
--b--
"""
    )
    mail = read(raw)

    assert mail.text == "Text survives."
    assert mail.date is None
    assert [a.filename for a in mail.attachments] == ["x.bin"]


def test_EML4_a_message_without_message_id_says_so_with_an_empty_key() -> None:
    raw = b"From: a@example.com\r\nSubject: No id\r\n\r\nHello\r\n"
    assert read(raw).message_id == ""


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", b"\x00\x01\x02garbage", b"just some text\nwithout headers\n"],
    ids=["empty", "blank", "binary", "no_headers"],
)
def test_EML2_what_is_not_a_message_is_unreadable_with_a_reason_holding_none_of_it(
    raw: bytes,
) -> None:
    with pytest.raises(Unreadable) as refused:
        read(raw)
    assert str(refused.value)
    assert "garbage" not in str(refused.value) and "without" not in str(refused.value)


# -- quoted replies ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Yes.\n\nOn Tue, 3 Nov 2026, Ann <a@x.com> wrote:\n> Can you?", "Yes."),
        ("Yes.\n\nOn Tue, 3 Nov 2026 at 10:00, Ann Buyer\n<a@x.com> wrote:\n> Can you?", "Yes."),
        ("Ja.\n\nAm 03.11.2026 um 10:00 schrieb Ann <a@x.com>:\n> Geht das?", "Ja."),
        ("Oui.\n\nLe mar. 3 nov. 2026, Ann <a@x.com> a écrit :\n> Possible ?", "Oui."),
        ("Sure.\n\n-----Original Message-----\nFrom: Ann\nSent: Tuesday\n\nCan you?", "Sure."),
        ("Sure.\n\n________________________________\nFrom: Ann\nSent: Tuesday", "Sure."),
        ("Sure.\n\nFrom: Ann Buyer <a@x.com>\nSent: Tuesday, 3 Nov\nTo: Dana\n\nOld", "Sure."),
        ("Agreed.\n\n> old line\n> another\n\n", "Agreed."),
        (
            "> You asked\nMy answer\n> And this?\nThat too",
            "> You asked\nMy answer\n> And this?\nThat too",
        ),
        ("> only a quote\n> nothing else", "> only a quote\n> nothing else"),
        (
            "From: is how we start\nno header block follows",
            "From: is how we start\nno header block follows",
        ),
    ],
    ids=[
        "gmail",
        "gmail_wrapped",
        "german",
        "french",
        "outlook_original",
        "outlook_rule",
        "outlook_headers",
        "trailing_quote",
        "interleaved_kept",
        "only_quote_kept",
        "not_a_header_block",
    ],
)
def test_EML2_quoted_replies_below_the_text_are_trimmed(text: str, kept: str) -> None:
    assert quotes.trim(text) == kept


# -- generated MIME ------------------------------------------------------------------------
CHARSETS = st.sampled_from(["utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", None])
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x24F),
    min_size=1,
    max_size=60,
).filter(str.strip)


@st.composite
def messages(draw: st.DrawFn) -> tuple[EmailMessage, str]:
    """A well-formed message with a plain-text body somewhere in a random MIME tree;
    its body as written."""
    body = draw(TEXT)
    message = EmailMessage()
    message["From"] = "Ann <ann@example.com>"
    message["To"] = "dana.rep@demo.example"
    message["Subject"] = draw(TEXT).replace("\n", " ")
    message["Message-ID"] = "<gen@example.com>"
    charset = draw(CHARSETS)
    try:
        message.set_content(body, charset=charset or "utf-8")
    except (UnicodeEncodeError, LookupError):
        message.set_content(body, charset="utf-8")
    if draw(st.booleans()):
        message.add_alternative(f"<p>{draw(TEXT)}</p>", subtype="html")
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            message.add_attachment(
                draw(st.binary(max_size=50)),
                maintype="application",
                subtype="octet-stream",
                filename=draw(TEXT).replace("\n", " "),
            )
        else:
            message.add_attachment(
                b"\x89PNG", maintype="image", subtype="png", disposition="inline", cid="<i@x>"
            )
    return message, body


@settings(max_examples=150)
@given(messages())
def test_EML2_generated_messages_keep_their_text(generated: tuple[EmailMessage, str]) -> None:
    message, body = generated
    mail = read(message.as_bytes())

    assert quotes.trim(body.replace("\r\n", "\n").replace("\r", "\n")).strip() in mail.text
    assert mail.message_id == "gen@example.com"


@settings(max_examples=300)
@given(messages(), st.data())
def test_EML2_mangled_messages_are_read_or_refused_never_crash(
    generated: tuple[EmailMessage, str], data: st.DataObject
) -> None:
    raw = bytearray(generated[0].as_bytes())
    for _ in range(data.draw(st.integers(1, 12))):
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 40))]
        else:
            raw[at:at] = data.draw(
                st.sampled_from([b"\r\n--", b"=?utf-8?b?", b"\xff\xfe", b"\r\n\r\n", b"boundary="])
            )
    try:
        mail = read(bytes(raw))
    except Unreadable as refused:
        assert str(refused)
        return
    assert isinstance(mail.text, str) and isinstance(mail.subject, str)
    assert all("@" in p.email for p in mail.participants)

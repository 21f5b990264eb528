"""The Microsoft sandbox on a real TLS socket: msal accepts only an https authority, so
the sandbox serves https with a certificate from a throwaway local CA, and clients trust
that CA alone (msal's `verify=<ca path>`, requests' `verify=<ca path>`). At its root, a
page says what it is and names the identity platform's and Graph's addresses."""

from __future__ import annotations

import importlib
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import NamedTuple

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.home import Address, Section, page
from sandbox.microsoft.core import MicrosoftSandbox, Route, Router, route

MODULES = ("identity", "graph", "contacts", "events", "todo", "mail", "subscriptions", "batch")


class _QuietHandler(WSGIRequestHandler):
    """No request lines in the log: query strings carry codes, and delta links tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA's certificate and a server certificate and key it signed."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def make_tls(directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Write a new local CA (`ca.pem`) and a server certificate for `hosts` that it signed
    (`server.pem`, `server-key.pem`) into `directory`. The CA's key is never written: no
    other certificate can ever be signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync sandbox local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(IPv4Address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_path.chmod(0o600)
    return files


def trusting_session(ca_path: str) -> requests.Session:
    """A requests session that trusts the sandbox's CA. Give it to msal as `http_client`:
    msal's own `verify=ca_path` lands on its session's `verify`, which requests overrides
    with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when either is set, so the CA is never
    used. This session ignores the environment (the sandbox is on loopback, no proxy)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_path
    return session


def routes(sandbox: MicrosoftSandbox, modules: Iterable[str] = MODULES) -> list[Route]:
    """The routes of the named modules (all of them by default)."""
    found: list[Route] = []
    for name in modules:
        module = importlib.import_module(f"sandbox.microsoft.{name}")
        found.extend(module.routes(sandbox))
    return found


def home(sandbox: MicrosoftSandbox) -> list[Route]:
    """`GET /`: what the sandbox is, its identity platform's and Graph's addresses, and
    its users."""

    def answer(request: Request, user: None) -> Response:
        with sandbox.lock:
            users = sorted(sandbox.users)
        shown = page(
            "Microsoft sandbox",
            "A local stand-in for Microsoft's identity platform and Microsoft Graph v1.0, "
            "for crmsync's tests and `make dev`. msal and Graph clients talk to it "
            "unchanged. It serves https with a certificate from a throwaway CA made when it "
            "started: trust that CA alone (`curl --cacert <ca.pem>`; the `make dev` banner "
            "names its file). Nothing here reaches Microsoft.",
            [
                *sections(sandbox.base_url, sandbox.tenant_id),
                Section("Users", notes=((", ".join(users) or "none yet") + ".",)),
            ],
        )
        return Response(shown, mimetype="text/html")

    return [route("GET", "", answer, None)]


def sections(base: str, tenant: str) -> list[Section]:
    """The identity platform's endpoints (for the directory `tenant`) and Graph's root,
    below `base`."""
    authority = f"{base}/{tenant}"
    graph = f"{base}/v1.0"
    return [
        Section(
            "Identity platform",
            (
                Address(
                    "GET", authority + "/oauth2/v2.0/authorize", "the sign-in and consent page"
                ),
                Address("POST", authority + "/oauth2/v2.0/token"),
                Address("GET", authority + "/v2.0/.well-known/openid-configuration"),
                Address("GET", authority + "/discovery/v2.0/keys"),
                Address("GET", authority + "/v2.0/adminconsent", "an organisation's admin consent"),
            ),
            (
                f"msal's authority is `{authority}` (also `{base}/organizations`, "
                f"`{base}/common` or a user's domain in place of the directory id).",
            ),
        ),
        Section(
            "Microsoft Graph v1.0",
            (
                Address("GET", graph + "/me"),
                Address("GET", graph + "/me/contacts"),
                Address("GET", graph + "/me/events"),
                Address("GET", graph + "/me/todo/lists"),
                Address("GET", graph + "/me/messages"),
                Address("GET", graph + "/me/outlook/masterCategories"),
                Address("GET", graph + "/subscriptions"),
                Address("POST", graph + "/$batch"),
            ),
            (
                f"Graph's root is `{graph}`; its calls take `Authorization: Bearer <access "
                "token>` from the token endpoint. Every other path answers in Graph's error "
                "format.",
            ),
        ),
    ]


class Served(NamedTuple):
    base_url: str  # https://127.0.0.1:<port>, no trailing slash
    ca_path: str  # the CA bundle clients verify the sandbox's certificate with
    stop: Callable[[], None]


def serve(
    sandbox: MicrosoftSandbox,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    modules: Iterable[str] = MODULES,
    tls_dir: Path | None = None,
) -> Served:
    """Serve the sandbox over https on host:port (0: any free port) with the routes of
    `modules`. The certificate comes from a new throwaway CA written to `tls_dir` (a
    temporary directory, removed by `stop`, when not given). Returns the base URL (msal's
    authority is `<base_url>/<tenant>`, Graph's root `<base_url>/v1.0`), the CA's path,
    and a function that stops the server."""
    own_dir = tls_dir is None
    directory = Path(tempfile.mkdtemp(prefix="graph-sandbox-tls-")) if own_dir else tls_dir
    assert directory is not None
    tls = make_tls(directory, ("localhost", host))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    app = Router(sandbox, [*routes(sandbox, modules), *home(sandbox)])
    server = make_server(
        host, port, app, threaded=True, request_handler=_QuietHandler, ssl_context=context
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    sandbox.base_url = f"https://{host}:{server.port}"
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            if own_dir:
                shutil.rmtree(directory, ignore_errors=True)

    return Served(sandbox.base_url, str(tls.ca_path), stop)

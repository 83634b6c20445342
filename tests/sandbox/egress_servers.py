"""Real HTTP and HTTPS servers on 127.0.0.1 for the egress tests, and a test CA.

Every request a server receives is recorded, so a test can show that a denied
request never reached it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CITIES_CSV = "city,population\nLagos,15388000\nCairo,10100166\nKinshasa,16315534\n"


@dataclass
class Seen:
    """What a server received: (method, path, Host header) per request."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, host: str) -> None:
        with self.lock:
            self.requests.append((method, path, host))

    def hosts(self) -> set[str]:
        with self.lock:
            return {host for _, _, host in self.requests}


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve(b"")

        def do_HEAD(self) -> None:
            self._serve(b"", head=True)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length))

        do_PUT = do_DELETE = do_POST

        def _serve(self, body: bytes, head: bool = False) -> None:
            seen.add(self.command, self.path, self.headers.get("Host", ""))
            url = urlsplit(self.path)
            if url.path == "/cities.csv":
                payload, kind = CITIES_CSV.encode(), "text/csv"
            elif url.path == "/big":
                size = int(parse_qs(url.query).get("n", ["1000000"])[0])
                payload, kind = b"x" * size, "application/octet-stream"
            else:
                text = f"hello {self.command} {url.path} host={self.headers.get('Host')} " \
                       f"body={len(body)}"
                payload, kind = text.encode(), "text/plain"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients the proxy cut off on purpose


class _TLSServer(_QuietServer):
    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake happens on the request's own thread, never the accept loop.
        request.settimeout(10)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)


@contextmanager
def serve(context: ssl.SSLContext | None = None) -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    server: _QuietServer
    if context is None:
        server = _QuietServer(("127.0.0.1", 0), _handler(seen))
    else:
        server = _TLSServer(("127.0.0.1", 0), _handler(seen))
        server.context = context
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def make_ca_and_cert(folder: Path, names: list[str]) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM returned, for the kernel to trust) and a server context
    whose certificate, signed by it, names ``names``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codeact egress test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "test-ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    ca_pem.chmod(0o644)
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return ca_pem, context

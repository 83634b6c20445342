"""Egress through the proxy against a direct loopback connection, inside a real sandbox.

The same small HTTP(S) server runs twice: on the host, reached through the
egress path (kernel -> loopback bridge -> unix socket -> host proxy -> server),
and inside the sandbox's own network namespace, reached directly on 127.0.0.1.
Both are downloaded by the same clients in the same kernel (urllib, which
pandas.read_csv uses, and requests), alternately, one download at a time, so
the noise of a shared machine falls on both sides. Every request opens a new
connection, so a download includes its connect.

    python benchmarks/bench_egress.py [--size-mb 10] [--runs 15] [--pings 60] [--json out.json]

Targets (issue 17): a 10 MB download through the proxy within 1.3x of the
direct one; the connect latency the proxy adds is reported beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from codeact_kernel import KernelSession, SandboxConfig

TARGET_RATIO = 1.3
NAME = "bench.test"
# Runs on the host and, as a child of the kernel, inside the sandbox.
SERVER = r"""
import http.server, ssl, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
blob = b"x" * size
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = blob if self.path == "/blob" else b"."
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
if len(sys.argv) > 3:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

KERNEL_BENCH = r"""
import json, subprocess, sys, time, urllib.request
import requests
cert, key = "/tmp/bench-cert.pem", "/tmp/bench-key.pem"
open(cert, "w").write(CERT_PEM); open(key, "w").write(KEY_PEM)
inner = {}
for scheme, extra in (("http", []), ("https", [cert, key])):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "0", str(SIZE), *extra],
                            stdout=subprocess.PIPE, text=True)
    inner[scheme] = (proc, int(proc.stdout.readline()))
def fetch(url, client="urllib"):
    t0 = time.perf_counter()
    if client == "requests":
        n = len(requests.get(url, timeout=60).content)
    else:
        with urllib.request.urlopen(url, timeout=60) as response:
            n = len(response.read())
    return time.perf_counter() - t0, n
out = {}
pairs = {s: (f"{s}://{NAME}/", f"{s}://127.0.0.1:{inner[s][1]}/") for s in ("http", "https")}
try:
    for scheme, (proxied, direct) in pairs.items():
        fetch(proxied + "blob"); fetch(direct + "blob")  # warm both paths
        for kind, path, count, client in (("download", "blob", RUNS, "urllib"),
                                          ("download requests", "blob", RUNS, "requests"),
                                          ("connect", "tiny", PINGS, "urllib")):
            samples = {"proxy": [], "direct": []}
            for i in range(count):
                order = [("proxy", proxied), ("direct", direct)]
                for label, base in (order if i % 2 == 0 else order[::-1]):
                    seconds, n = fetch(base + path, client)
                    assert n == (SIZE if path == "blob" else 1), n
                    samples[label].append(seconds)
            out[f"{scheme} {kind}"] = samples
finally:
    for proc, _ in inner.values():
        proc.kill()
print(json.dumps(out))
"""


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for NAME and 127.0.0.1 that is its own CA (the kernel trusts it)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_file.chmod(0o644)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def host_server(size: int, *tls: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "0", str(size), *map(str, tls)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def measure(size_mb: int = 10, runs: int = 15, pings: int = 60) -> dict[str, Any]:
    size = size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        cert, key = self_signed(Path(tmp))
        servers = [host_server(size), host_server(size, cert, key)]
        try:
            config = SandboxConfig(
                allowed_domains=[NAME], ca_bundle=str(cert),
                egress_resolve={f"{NAME}:80": f"127.0.0.1:{servers[0][1]}",
                                f"{NAME}:443": f"127.0.0.1:{servers[1][1]}"})
            code = textwrap.dedent(KERNEL_BENCH)
            for placeholder, value in (("CERT_PEM", cert.read_text()), ("KEY_PEM", key.read_text()),
                                       ("SERVER", SERVER), ("SIZE", size), ("NAME", NAME),
                                       ("RUNS", runs), ("PINGS", pings)):
                code = code.replace(placeholder, repr(value))
            with KernelSession(runtime_dir=str(Path(tmp) / "rt"), sandbox=config,
                               timeout=1800) as session:
                result = session.execute(code, timeout=1800)
            if not result.ok:
                raise RuntimeError(result.error.text if result.error else result.reason)
            samples = json.loads(result.stdout.strip().splitlines()[-1])
        finally:
            for proc, _ in servers:
                proc.kill()
    return report(samples, size_mb, runs, pings)


def report(samples: dict[str, dict[str, list[float]]], size_mb: int, runs: int,
           pings: int) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "egress_proxy", "size_mb": size_mb, "runs": runs,
                           "pings": pings, "unit": "ms", "target_ratio": TARGET_RATIO}
    for name, pair in samples.items():
        proxy = statistics.median(pair["proxy"]) * 1000
        direct = statistics.median(pair["direct"]) * 1000
        entry = {"proxy_median": proxy, "direct_median": direct, "ratio": proxy / direct,
                 "added": proxy - direct,
                 "proxy_min": min(pair["proxy"]) * 1000, "direct_min": min(pair["direct"]) * 1000}
        if "download" in name:
            entry["proxy_mb_s"] = size_mb / (proxy / 1000)
            entry["direct_mb_s"] = size_mb / (direct / 1000)
        out[name] = entry
    return out


def table_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for scheme in ("http", "https"):
        for client in ("urllib", "requests"):
            d = result[f"{scheme} download" + ("" if client == "urllib" else " requests")]
            verdict = "ok" if d["ratio"] <= TARGET_RATIO else "MISSED"
            lines.append(
                f"{scheme:>5} {result['size_mb']} MB download, {client:<8}: proxy "
                f"{d['proxy_median']:.1f} ms ({d['proxy_mb_s']:.0f} MB/s), direct "
                f"{d['direct_median']:.1f} ms ({d['direct_mb_s']:.0f} MB/s), ratio "
                f"{d['ratio']:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
        c = result[f"{scheme} connect"]
        lines.append(
            f"{scheme:>5} connect + 1-byte GET: proxy {c['proxy_median']:.2f} ms, direct "
            f"{c['direct_median']:.2f} ms, added {c['added']:.2f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=10, help="download size in MiB")
    parser.add_argument("--runs", type=int, default=15, help="downloads per path and scheme")
    parser.add_argument("--pings", type=int, default=60, help="1-byte requests per path")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    result = measure(args.size_mb, args.runs, args.pings)
    print("\n".join(table_lines(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

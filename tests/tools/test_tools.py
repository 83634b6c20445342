"""Host-side tools called from real sandboxed kernels, and the RPC under misuse."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import zmq

from codeact_kernel import KernelSession, ToolError
from codeact_kernel.kernel_side import codec
from codeact_kernel.terminal.demo import get_population, search_cities
from codeact_kernel.tools.bootstrap import kernel_bootstrap_code
from codeact_kernel.tools.serialize import FINAL_ANSWER, decode_final_answer, kernel_source
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import Tool, tool
from codeact_kernel.tools.workers import Workers

SECRET_VAR = "CODEACT_TEST_SECRET_TOKEN"
SECRET = "s3cr3t-value-never-in-the-sandbox"
_barrier = threading.Barrier(4)


def scale(values: list[float], factor: float = 2.0, *, label: str | None = None) -> dict[str, Any]:
    """Multiply every value by a factor.

    Args:
        values: The numbers to scale.
        factor: The multiplier,
            applied to each value.
        label: An optional name echoed back.
    """
    return {"values": [v * factor for v in values], "label": label}


def pick(mode: Literal["fast", "slow"]) -> str:
    """Echo a mode.

    Args:
        mode: Either "fast" or "slow".
    """
    return mode


def read_secret() -> str:
    """Use a credential that only the host has (returns a digest, not the secret)."""
    return f"secret of length {len(os.environ[SECRET_VAR])}"


class QuotaExceeded(Exception):
    """A non-builtin exception type."""


def over_quota(n: int) -> int:
    """Always fail with a custom exception.

    Args:
        n: Ignored.
    """
    raise QuotaExceeded(f"quota exceeded after {n} calls")


def rendezvous(tag: int) -> int:
    """Return only once four calls are running at the same time on the host.

    Args:
        tag: Echoed back.
    """
    _barrier.wait(timeout=20)
    return tag


def nap(seconds: float) -> float:
    """Sleep on the host.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return seconds


def table(rows: int) -> pd.DataFrame:
    """Make a small DataFrame.

    Args:
        rows: Number of rows.
    """
    return pd.DataFrame({"x": range(rows), "y": [f"r{i}" for i in range(rows)]})


def matrix(n: int) -> np.ndarray:
    """Make an identity matrix.

    Args:
        n: Its size.
    """
    return np.eye(n)


TOOLS = [tool(f) for f in (search_cities, get_population, scale, pick, read_secret,
                           over_quota, rendezvous, nap, table, matrix)]


@pytest.fixture(scope="module")
def secret_env() -> Iterator[None]:
    os.environ[SECRET_VAR] = SECRET
    yield
    os.environ.pop(SECRET_VAR, None)


@pytest.fixture(scope="module")
def kernel(
    tmp_path_factory: pytest.TempPathFactory, secret_env: None
) -> Iterator[tuple[KernelSession, ToolServer]]:
    runtime = tmp_path_factory.mktemp("rt")
    with KernelSession(runtime_dir=str(runtime), timeout=60) as session:
        assert session.session_dir is not None
        server = ToolServer(TOOLS, session.session_dir / "tools.sock",
                            max_message_bytes=4 * 1024 * 1024)
        with server:
            session.startup_code = [server.bootstrap_code()]
            session.reset()
            yield session, server


def run(session: KernelSession, code: str) -> Any:
    """Execute code that ends by printing one JSON line; return it parsed."""
    result = session.execute(code)
    assert result.ok, result.error.text if result.error else result.reason
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- from the kernel -----------------------------------------------------------------


def test_seed_example_total_and_std(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, server = kernel
    server.drain_calls()
    out = run(session, (
        "import json, statistics\n"
        "pops = [get_population(c) for c in search_cities('France')]\n"
        "print(json.dumps({'total': sum(pops), 'std': statistics.pstdev(pops)}))"
    ))
    pops = [get_population(c) for c in search_cities("France")]
    assert out["total"] == sum(pops)
    assert out["std"] == pytest.approx(float(np.std(pops)))
    calls = server.drain_calls()
    assert [c.name for c in calls] == ["search_cities"] + ["get_population"] * len(pops)
    assert calls[0].arguments == {"country": "France"}
    assert calls[1].result == str(pops[0]) and calls[1].error is None
    assert all(c.duration >= 0 and abs(c.started - time.time()) < 60 for c in calls)
    assert server.drain_calls() == []


def test_stub_has_same_signature_and_docstring(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, _ = kernel
    out = run(session, (
        "import inspect, json\n"
        "print(json.dumps({n: [str(inspect.signature(f)), inspect.getdoc(f), f.__name__]\n"
        "  for n, f in [('scale', scale), ('get_population', get_population)]}))"
    ))
    for fn in (scale, get_population):
        _, doc, name = out[fn.__name__]
        assert doc == Tool(fn).doc and name == fn.__name__
    assert out["scale"][0] == (
        "(values: 'list[float]', factor: 'float' = 2.0, *, label: 'str | None' = None)"
        " -> 'dict[str, Any]'"
    )
    assert out["get_population"][0] == "(city: 'str') -> 'int'"


def test_arguments_are_checked(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, _ = kernel
    out = run(session, "import json\nprint(json.dumps(scale([1, 2.5], 3, label='x')))")
    assert out == {"values": [3.0, 7.5], "label": "x"}  # int -> float is the one coercion
    result = session.execute("get_population(42)")
    assert result.error is not None and result.error.ename == "TypeError"
    assert "get_population(city: str) -> int" in result.error.evalue
    assert "argument 'city' must be str, got int 42" in result.error.evalue
    result = session.execute("pick('medium')")
    assert result.error is not None and "Literal['fast', 'slow']" in result.error.evalue
    result = session.execute("scale(['a'])")
    assert result.error is not None and "argument 'values'[0] must be float" in result.error.evalue
    # Bypassing the stub, the host still checks names against the signature.
    out = run(session, (
        "import sys, json\n"
        "ok, exc = sys.modules['_codeact_rpc'].call('get_population', (), {'town': 'Paris'})\n"
        "print(json.dumps([ok, type(exc).__name__, str(exc)]))"
    ))
    assert out[0] is False and out[1] == "TypeError"
    assert "get_population(city: str) -> int" in out[2] and "town" in out[2]
    out = run(session, (
        "import sys, json\n"
        "ok, exc = sys.modules['_codeact_rpc'].call('launch_rockets', (), {})\n"
        "print(json.dumps([ok, type(exc).__name__, str(exc)]))"
    ))
    assert out[:2] == [False, "ToolCallError"]
    assert "unknown host tool 'launch_rockets'" in out[2] and "get_population" in out[2]
    result = session.execute("import numpy as np\nget_population(np.array([1]))")
    assert result.error is not None and "not JSON" in result.error.evalue


def test_tool_exceptions_arrive_as_exceptions(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, _ = kernel
    out = run(session, (
        "import json\n"
        "try:\n"
        "    get_population('Atlantis')\n"
        "except KeyError as exc:\n"
        "    print(json.dumps([isinstance(exc, ToolCallError), exc.tool, exc.type_name, str(exc)]))"
    ))
    assert out[:3] == [True, "get_population", "KeyError"]
    assert "unknown city 'Atlantis'" in out[3]
    result = session.execute("over_quota(3)")
    assert result.error is not None and result.error.ename == "ToolCallError"
    assert "QuotaExceeded: quota exceeded after 3 calls" in result.error.evalue
    assert "over_quota" in result.error.evalue
    # The traceback ends at the stub, not inside the RPC client.
    assert "rpc client" not in "\n".join(result.error.traceback)


def test_secret_stays_on_host(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, _ = kernel
    out = run(session, (
        "import os, json\n"
        f"print(json.dumps([read_secret(), os.environ.get({SECRET_VAR!r})]))"
    ))
    assert out == [f"secret of length {len(SECRET)}", None]
    result = session.execute("print(open('/proc/1/environ', 'rb').read())")
    assert SECRET not in result.stdout


def test_results_rebuilt_in_kernel(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, _ = kernel
    out = run(session, (
        "import json\n"
        "df, m = table(3), matrix(2)\n"
        "print(json.dumps([type(df).__name__, df['y'].tolist(), type(m).__name__,\n"
        "                  m.tolist(), str(m.dtype)]))"
    ))
    assert out == ["DataFrame", ["r0", "r1", "r2"], "ndarray", [[1.0, 0.0], [0.0, 1.0]], "float64"]


def test_final_answer_dict(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, server = kernel
    server.reset_final_answer()
    result = session.execute("final_answer({'total': 10, 'cities': ['a', 'b'], 'ok': True})")
    assert result.ok, result.error
    answer = server.final_answer
    assert answer is not None and answer.kind == "json"
    assert answer.value == {"total": 10, "cities": ["a", "b"], "ok": True}
    server.reset_final_answer()
    assert server.final_answer is None


def test_final_answer_dataframe_via_parquet(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, server = kernel
    result = session.execute(
        "import pandas as pd\n"
        "final_answer(pd.DataFrame({'city': ['Paris', 'Lyon'], 'pop': [2.1, 0.5]},\n"
        "                          index=pd.Index([10, 20], name='id')))"
    )
    assert result.ok, result.error
    answer = server.final_answer
    assert answer is not None and answer.kind == "dataframe"
    expected = pd.DataFrame({"city": ["Paris", "Lyon"], "pop": [2.1, 0.5]},
                            index=pd.Index([10, 20], name="id"))
    pd.testing.assert_frame_equal(answer.value, expected)
    calls = [c for c in server.drain_calls() if c.name == FINAL_ANSWER]
    assert calls and calls[-1].result == "dataframe" and calls[-1].error is None


def test_final_answer_ndarray_series_and_text(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, server = kernel
    assert session.execute("import numpy as np\nfinal_answer(np.arange(6).reshape(2, 3))").ok
    answer = server.final_answer
    assert answer is not None and answer.kind == "ndarray"
    np.testing.assert_array_equal(answer.value, np.arange(6).reshape(2, 3))
    assert session.execute("final_answer(pd.Series([1, 2], name='n'))").ok
    answer = server.final_answer
    assert answer is not None and answer.kind == "series" and answer.value.name == "n"
    result = session.execute("class Thing:\n    pass\nfinal_answer(Thing())")
    assert result.ok and "no safe format" in result.stderr
    answer = server.final_answer
    assert answer is not None and answer.kind == "text" and "Thing object" in answer.value
    assert answer.type_name == "__main__.Thing" and "repr" in answer.note


def test_final_answer_figure_as_png(kernel: tuple[KernelSession, ToolServer]) -> None:
    session, server = kernel
    result = session.execute(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nfinal_answer(fig)"
    )
    assert result.ok, result.error
    answer = server.final_answer
    assert answer is not None and answer.kind == "png"
    assert answer.value.startswith(b"\x89PNG\r\n\x1a\n")


def test_concurrent_calls_from_kernel_threads(kernel: tuple[KernelSession, ToolServer]) -> None:
    # rendezvous() only returns when 4 calls run at once on the host, so this
    # passes only if calls from kernel threads are served concurrently.
    session, _ = kernel
    out = run(session, (
        "import json\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    got = sorted(pool.map(rendezvous, range(4)))\n"
        "print(json.dumps(got))"
    ))
    assert out == [0, 1, 2, 3]


def test_calls_arriving_together_each_get_a_worker() -> None:
    # Idle workers that had not woken yet counted as free for every call queued
    # meanwhile: four calls waiting for each other then shared two workers.
    workers = Workers(8)
    warmed = threading.Barrier(3, timeout=10)
    for _ in range(2):
        workers.submit(warmed.wait)
    warmed.wait()
    deadline = time.monotonic() + 10
    while workers.idle < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    together = threading.Barrier(4, timeout=10)
    met: list[int] = []
    done = threading.Event()

    def meet() -> None:
        try:
            met.append(together.wait())
        finally:
            if len(met) == 4 or together.broken:
                done.set()

    for _ in range(4):
        workers.submit(meet)
    done.wait(15)
    workers.shutdown(timeout=1.0)
    assert sorted(met) == [0, 1, 2, 3]


def test_interrupted_call_leaves_the_client_usable(
    kernel: tuple[KernelSession, ToolServer],
) -> None:
    session, _ = kernel
    result = session.execute("x = 1\nnap(3.0)", timeout=0.5)
    assert result.timed_out and result.recovery == "interrupted", result.reason
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    # The interrupted thread's REQ socket was replaced: the next call gets its own reply.
    assert run(session, "import json\nprint(json.dumps([x, get_population('Nice')]))") == [
        1, 348_085]


def test_reset_keeps_tools_and_adds_no_private_globals(
    kernel: tuple[KernelSession, ToolServer],
) -> None:
    session, _ = kernel
    session.reset()
    out = run(session, (
        "import json\n"
        "names = [n for n in globals() if n.startswith('_codeact')]\n"
        "hidden = sorted(n for n in get_ipython().user_ns_hidden if n in globals()\n"
        "                and n in ('ToolCallError', 'final_answer', 'get_population'))\n"
        "print(json.dumps([names, hidden, get_population('Lyon')]))"
    ))
    assert out == [[], ["ToolCallError", "final_answer", "get_population"], 522_250]
    result = session.execute("%who")
    assert "get_population" not in result.stdout


# ---- misuse of the socket ------------------------------------------------------------


def _req(ctx: zmq.Context[zmq.Socket[bytes]], path: Path,
         handshake: bytes = b"") -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    if handshake:
        sock.setsockopt(zmq.PLAIN_USERNAME, b"codeact")
        sock.setsockopt(zmq.PLAIN_PASSWORD, handshake)
    sock.connect(f"ipc://{path}")
    return sock


def _ask(ctx: zmq.Context[zmq.Socket[bytes]], path: Path, *frames: bytes,
         token: bytes = b"", handshake: bytes = b"") -> dict[str, Any]:
    """One request as the kernel frames it: the token frame, then ``frames``; with
    ``handshake``, the token shown in the ZMQ handshake too."""
    sock = _req(ctx, path, handshake)
    try:
        sock.send_multipart([token, *frames])
        reply: dict[str, Any] = json.loads(sock.recv_multipart()[0])
        return reply
    finally:
        sock.close()


def test_junk_on_the_socket_never_breaks_the_host(
    kernel: tuple[KernelSession, ToolServer],
) -> None:
    session, server = kernel
    path = server.socket_path
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(path))
    raw.sendall(os.urandom(4096) + b"\xff" * 100_000)
    raw.close()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        for junk in (b"\x00\xff garbage", b"[1, 2, 3]", b'{"tool": 5}', b'{"v": 99, "tool": "x"}',
                     b'{"tool": "get_population", "args": "Paris", "kwargs": []}',
                     b"[" * 100_000):
            reply = _ask(ctx, path, junk)
            assert reply["ok"] is False, junk[:40]
            assert reply["error"]["category"] in ("protocol", "arguments")
        reply = _ask(ctx, path, b'{"tool": "get_population", "kwargs": {"city": "Nice"}}')
        assert reply == {"ok": True, "result": 348_085}
        reply = _ask(ctx, path, b'{"tool": "final_answer", "kwargs": {"value": '
                     b'{"$codeact": "ndarray", "blob": 7}}}')
        assert reply["ok"] is False and "decoded" in reply["error"]["message"]
        # A frame over max_message_bytes: the sender is cut off, the host carries on.
        big = _req(ctx, path)
        big.send(b"x" * (5 * 1024 * 1024))
        assert big.poll(500) == 0
        big.close()
        # A DEALER that never reads its replies floods the host with requests.
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"ipc://{path}")
        for i in range(500):
            dealer.send_multipart([b"", b"", b'{"tool": "search_cities", "args": ["Japan"]}'])
            dealer.send_multipart([b"no delimiter", str(i).encode()])
        # Meanwhile the kernel's own calls are served.
        out = run(session, "import json\nprint(json.dumps(get_population('Paris')))")
        assert out == 2_102_650
        deadline = time.monotonic() + 10
        while server.rejected_messages < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ctx.destroy(linger=0)
    assert server.rejected_messages >= 500


def test_token_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.sock"
    with ToolServer([tool(get_population)], path, token="abc") as server:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            body = json.dumps({"tool": "get_population", "kwargs": {"city": "Nice"}}).encode()
            # Without the token in the handshake, no message is even read.
            for wrong in (b"", b"abd"):
                stranger = _req(ctx, path, wrong)
                stranger.send_multipart([b"abc", body])
                assert stranger.poll(1000) == 0
                stranger.close()
            # Past the handshake, the first frame must carry it as well.
            for wrong in (b"", b"abd", b"abc" * 100):
                reply = _ask(ctx, path, body, token=wrong, handshake=b"abc")
                assert reply["ok"] is False and "token" in reply["error"]["message"]
            # In the header, where it used to travel, a token no longer counts.
            reply = _ask(ctx, path, json.dumps({"tool": "get_population", "token": "abc",
                                                "kwargs": {"city": "Nice"}}).encode(),
                         handshake=b"abc")
            assert reply["ok"] is False and "token" in reply["error"]["message"]
            reply = _ask(ctx, path, body, token=b"abc", handshake=b"abc")
            assert reply == {"ok": True, "result": 348_085}
        finally:
            ctx.destroy(linger=0)
        assert 'token": "abc"' in server.bootstrap_code().replace("'", '"')


def test_slow_tool_times_out_without_blocking_others(tmp_path: Path) -> None:
    release = threading.Event()

    @tool
    def stuck(seconds: float) -> str:
        """Block until released.

        Args:
            seconds: Upper bound.
        """
        release.wait(seconds)
        return "done"

    path = tmp_path / "t.sock"
    with ToolServer([stuck, tool(get_population)], path, call_timeout=0.5) as server:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            slow = _req(ctx, path)
            slow.send_multipart([b"", b'{"tool": "stuck", "args": [30]}'])
            reply = _ask(ctx, path, b'{"tool": "get_population", "args": ["Lyon"]}')
            assert reply == {"ok": True, "result": 522_250}
            reply = json.loads(slow.recv())
            assert reply["error"]["category"] == "timeout" and "0.5s" in reply["error"]["message"]
            slow.close()
        finally:
            release.set()
            ctx.destroy(linger=0)
        assert "get_population" in [c.name for c in server.calls]


def test_stop_is_idempotent_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.sock"
    before = {t.name for t in threading.enumerate()}
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        server = ToolServer([tool(get_population)], path).start()
        assert path.exists() and (path.stat().st_mode & 0o777) == 0o666
        server.stop()
        server.stop()
        assert not path.exists()
    assert {t.name for t in threading.enumerate()} - before == set()
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


def test_unreachable_host_raises_clearly(tmp_path: Path) -> None:
    # The same client text the kernel runs, loaded on the host.
    mod = types.ModuleType("_codeact_rpc_test")
    exec(compile(kernel_source(), "<rpc>", "exec"), mod.__dict__)
    mod.configure(str(tmp_path / "absent.sock"), 1.0, "", 1 << 20, ["npy"])
    mod._client.connect_timeout = 0.2
    ok, exc = mod.call("get_population", (), {"city": "Paris"})
    assert ok is False and type(exc).__name__ == "ToolCallError"
    assert exc.category == "unreachable" and "cannot reach the host tool server" in str(exc)
    mod.close()


# ---- definitions, without a kernel ---------------------------------------------------


def test_tool_metadata_and_prompt_doc() -> None:
    t = tool(scale)
    assert t.name == "scale" and t.fn is scale
    assert t.description == "Multiply every value by a factor."
    assert t.param_docs == {
        "values": "The numbers to scale.",
        "factor": "The multiplier, applied to each value.",
        "label": "An optional name echoed back.",
    }
    assert str(t.signature) == (
        "(values: list[float], factor: float = 2.0, *, label: str | None = None)"
        " -> dict[str, typing.Any]"
    )
    assert tool(scale).header().endswith(" -> dict[str, Any]")  # no `typing.` for the model
    doc = tool(get_population).prompt_doc()
    assert doc.startswith('def get_population(city: str) -> int:\n    """Return the population')
    assert "\n    Args:\n        city: The city's name" in doc and doc.endswith('\n    """')
    assert tool(name="population_of")(get_population).name == "population_of"
    assert t(values=[1.0]) == {"values": [2.0], "label": None}


def test_tool_without_annotations_is_rejected() -> None:
    def untyped(city, country: str):  # type: ignore[no-untyped-def]
        """Look something up."""

    with pytest.raises(ToolError, match=r"missing on parameter 'city', the return value.*annotate"):
        tool(untyped)

    def undocumented(city: str) -> int:
        return 1

    with pytest.raises(ToolError, match="no docstring"):
        tool(undocumented)

    def star(*cities: str) -> int:
        """Count."""
        return len(cities)

    with pytest.raises(ToolError, match="not supported"):
        tool(star)
    with pytest.raises(ToolError, match="shadow the builtin"):
        tool(get_population, name="print")
    with pytest.raises(ToolError, match="reserved"):
        tool(get_population, name="final_answer")
    with pytest.raises(ToolError, match="needs a function"):
        tool(42)  # type: ignore[call-overload]
    with pytest.raises(ToolError, match="share the name"):
        ToolServer([tool(get_population), tool(get_population)], Path("/tmp/x.sock"))


def test_from_path() -> None:
    assert Tool.from_path("codeact_kernel.terminal.demo:get_population").name == "get_population"
    with pytest.raises(ToolError, match=r"cannot import module 'no_such_pkg\.mod'"):
        Tool.from_path("no_such_pkg.mod:f")
    with pytest.raises(ToolError, match=r"has no attribute 'nope'.*get_population"):
        Tool.from_path("codeact_kernel.terminal.demo:nope")
    with pytest.raises(ToolError, match="is a str, not a function"):
        Tool.from_path("codeact_kernel.terminal.demo:DEMO_TASK")
    with pytest.raises(ToolError, match="must look like"):
        Tool.from_path("nocolon")


def test_bind_checks_untrusted_json() -> None:
    t = tool(scale)
    assert t.bind([[1, 2]], {}) == {"values": [1.0, 2.0], "factor": 2.0, "label": None}
    for args, kwargs, message in [
        ([], {}, "missing a required argument: 'values'"),
        ([[1]], {"colour": 1}, r"unexpected argument\(s\) colour"),
        ([[True]], {}, "must be float, got bool"),
        ([[1]], {"label": 3}, "argument 'label' must be str | None"),
        ("oops", {}, "must be a list and a dict"),
    ]:
        with pytest.raises(ToolError, match=message):
            t.bind(args, kwargs)


def test_stub_for_non_literal_default() -> None:
    sentinel = object()

    def f(x: int, when: object = sentinel) -> int:
        """Do f."""
        return x

    stub = tool(f).render_stub()
    assert "_codeact_rpc.HostDefault(" in stub and "def f(x: 'int', when: 'object' = " in stub
    assert "kernel_bootstrap_code" not in stub
    code = kernel_bootstrap_code([tool(f)], Path("/tmp/x.sock"))
    compile(code, "<bootstrap>", "exec")


# ---- the codec -----------------------------------------------------------------------


def _roundtrip(value: Any, accept: list[str] | None = None) -> tuple[Any, list[str]]:
    encoder = codec.Encoder(list(codec.ACCEPT_ALL) if accept is None else accept)
    obj = json.loads(json.dumps(encoder.encode(value)))
    return codec.Decoder(encoder.blobs).decode(obj), encoder.notes


def test_codec_roundtrips() -> None:
    value = {"$codeact": "looks like a marker", "n": float("nan"), "b": b"\x00\x01",
             "t": (1, 2), "s": {3, 1}, "np": np.int64(7)}
    back, notes = _roundtrip(value)
    assert back["$codeact"] == "looks like a marker" and back["b"] == b"\x00\x01"
    assert np.isnan(back["n"]) and back["t"] == [1, 2] and back["s"] == [1, 3]
    assert back["np"] == 7 and type(back["np"]) is int and notes
    frame = pd.DataFrame({"mixed": [1, "a"]})  # Parquet refuses mixed columns; JSON carries it
    back, notes = _roundtrip(frame)
    assert list(back["mixed"]) == [1, "a"] and any("Parquet failed" in n for n in notes)
    back, notes = _roundtrip(pd.DataFrame({"a": [1]}), accept=[])
    assert back == {"columns": ["a"], "index": [0], "data": [[1]]}
    assert "pandas is missing" in notes[0]
    back, _ = _roundtrip(np.array([{"a": 1}], dtype=object))
    assert back == [{"a": 1}]


def test_codec_refuses_pickles() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    obj = {"$codeact": "ndarray", "blob": 0}
    with pytest.raises(ValueError, match="pickle"):
        decode_final_answer(obj, [buf.getvalue()], [])
    with pytest.raises(ValueError):
        decode_final_answer({"$codeact": "dataframe", "format": "parquet", "blob": 0},
                            [b"PAR1 not really"], [])
    with pytest.raises(ValueError, match="unknown encoded kind"):
        decode_final_answer({"$codeact": "pickle", "blob": 0}, [b""], [])

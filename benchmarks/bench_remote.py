"""Kernels beyond the local sandbox: the tool back-channel's latency, and sessions per machine.

    python benchmarks/bench_remote.py backchannel [--calls 300] [--json out.json]
    python benchmarks/bench_remote.py scale [--sessions 8 16 32] [--json out.json]

backchannel: one host tool called N times from kernel code, timed inside the kernel,
over (a) the ipc socket of a local sandboxed kernel, (b) the stdin channel of the same
kind of kernel, (c) the stdin channel of a kernel behind a jupyter-kernel-gateway on
127.0.0.1 (started here).

scale: N sandboxed sessions started at once; time until all answer, then the memory
of each idle kernel (RSS and PSS of its process tree: bwrap, setpriv, python) and of
the host process per session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_tool_rpc import KERNEL_LOOP, _stats, echo

from codeact_kernel import KernelSession
from codeact_kernel.kernels.gateway import GatewaySession
from codeact_kernel.kernels.stdin import StdinToolChannel
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import tool


def _roundtrips(session: KernelSession, transport: str, calls: int) -> dict[str, float]:
    assert session.session_dir is not None
    with ToolServer([tool(echo)], session.session_dir / "tools.sock") as server:
        session.tool_handler = StdinToolChannel(server).answer
        session.startup_code = [server.bootstrap_code(transport)]
        session.reset()
        result = session.execute(KERNEL_LOOP.format(calls=calls, warmup=20), timeout=300)
        if not result.ok:
            raise RuntimeError(result.error.text if result.error else result.reason)
    return _stats([s * 1000 for s in json.loads(result.stdout.strip().splitlines()[-1])])


def _gateway(root: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
         f"--KernelGatewayApp.port={port}", f"--KernelGatewayApp.auth_token={token}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(root)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/api", timeout=1).close()
            return proc, url, token
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the kernel gateway did not come up")


def backchannel(calls: int) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "tool_backchannel_roundtrip", "unit": "ms",
                              "calls": calls}
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        for transport in ("ipc", "stdin"):
            with KernelSession(runtime_dir=tmp, tool_transport=transport) as session:
                report[f"local sandbox, {transport}"] = _roundtrips(session, transport, calls)
        proc, url, token = _gateway(Path(tmp))
        os.environ["BENCH_GATEWAY_TOKEN"] = token
        try:
            with GatewaySession(url=url, token_env="BENCH_GATEWAY_TOKEN",
                                runtime_dir=tmp) as session:
                report["kernel gateway (loopback), stdin"] = _roundtrips(session, "stdin", calls)
        finally:
            proc.terminate()
            proc.wait(10)
    return report


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def _memory_kib(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def _self_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _scale_once(count: int, runtime: str) -> dict[str, Any]:
    sessions = [KernelSession(runtime_dir=runtime) for _ in range(count)]
    host_before = _self_rss_kib()
    threads_before, fds_before = threading.active_count(), len(os.listdir("/proc/self/fd"))
    started = time.monotonic()
    await asyncio.gather(*(s.async_start() for s in sessions))
    elapsed = time.monotonic() - started
    try:
        await asyncio.sleep(2)  # idle: imports done, caches settled
        trees = [_tree(s._provisioner().process.pid) for s in sessions]  # type: ignore[union-attr]
        memory = [_memory_kib(t) for t in trees]
        rtt = []
        for session in sessions:
            await session.async_execute("1+1")  # the first cell pays IPython's warm-up
            for _ in range(3):
                t0 = time.monotonic()
                await session.async_execute("1+1")
                rtt.append((time.monotonic() - t0) * 1000)
        return {
            "sessions": count, "start_all_s": round(elapsed, 2),
            "starts_per_s": round(count / elapsed, 2),
            "kernel_rss_mib": round(statistics.median(m[0] for m in memory) / 1024, 1),
            "kernel_pss_mib": round(statistics.median(m[1] for m in memory) / 1024, 1),
            "host_rss_per_session_mib": round((_self_rss_kib() - host_before) / 1024 / count, 2),
            "host_threads_per_session": (threading.active_count() - threads_before) / count,
            "host_fds_per_session": (len(os.listdir("/proc/self/fd")) - fds_before) / count,
            "rtt_1p1_ms_median": round(statistics.median(rtt), 2),
        }
    finally:
        await asyncio.gather(*(s.async_shutdown() for s in sessions))


def scale(counts: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as runtime:
        rows = [asyncio.run(_scale_once(n, runtime)) for n in counts]
    return {"benchmark": "sessions_per_machine", "cpus": os.cpu_count(),
            "mem_total_mib": _mem_total_mib(), "rows": rows}


def _mem_total_mib() -> int:
    line = Path("/proc/meminfo").read_text().splitlines()[0]
    return int(line.split()[1]) // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["backchannel", "scale"])
    parser.add_argument("--calls", type=int, default=300, help="timed tool calls")
    parser.add_argument("--sessions", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    report = backchannel(args.calls) if args.what == "backchannel" else scale(args.sessions)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

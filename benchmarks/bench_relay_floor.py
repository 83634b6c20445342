"""What any relay chain costs a plain-HTTP download on this machine: the floor under egress.

The egress path carries a download through two relays: the host's proxy (which
judges the request) and the bridge inside the sandbox (which gives the kernel a
TCP port, since its network namespace has no route). This script measures, on
the host and interleaved in one run, a 10 MB urllib download:

- direct from the server (the baseline);
- through one and through two bare relays, each a process with a thread per
  direction doing blocking ``recv``/``sendall`` (the least a Python relay can do);
- through codeact's own chain, EgressProxy and the egress bridge, as in a session.

If the bare two-relay chain is already far above 1.3x, no proxy of this design
reaches issue 17's target for plain HTTP on this machine; the gap between the bare
chain and codeact's chain is what the proxy's own work costs.

    python benchmarks/bench_relay_floor.py [--size-mb 10] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench_egress import SERVER  # noqa: E402 - the same server as the sandboxed benchmark

from codeact_kernel.kernel_side import egress_bridge  # noqa: E402
from codeact_kernel.sandbox.egress.policy import EgressPolicy  # noqa: E402
from codeact_kernel.sandbox.egress.proxy import EgressProxy  # noqa: E402

NAME = "bench.test"


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(256 * 1024):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _in_child(serve: Callable[[], None]) -> int:
    """Run ``serve`` in a forked process (its own GIL, as every hop has in a session)."""
    pid = os.fork()
    if pid == 0:
        try:
            serve()
        finally:
            os._exit(0)
    return pid


def bare_relay(listener: socket.socket, connect: Callable[[], socket.socket]) -> int:
    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = connect()
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()
    return _in_child(serve)


def listen_tcp() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    return sock


def listen_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(16)
    return sock


def unix_connector(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        return sock
    return connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=10, help="download size in MiB")
    parser.add_argument("--runs", type=int, default=15, help="downloads per path")
    args = parser.parse_args(argv)
    size = args.size_mb * 1024 * 1024
    server = subprocess.Popen([sys.executable, "-c", SERVER, "0", str(size)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    origin = lambda: socket.create_connection(("127.0.0.1", port))  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="relay-floor-"))
    children: list[int] = []
    try:
        one = listen_tcp()
        children.append(bare_relay(one, origin))
        inner, outer = str(tmp / "bare.sock"), listen_tcp()
        children.append(bare_relay(listen_unix(inner), origin))
        children.append(bare_relay(outer, unix_connector(inner)))
        # codeact's chain: the proxy (its own process, as the agent is) and the bridge.
        egress_sock = tmp / "egress.sock"
        policy = EgressPolicy.from_settings([NAME], [], [80], "all",
                                            {f"{NAME}:80": f"127.0.0.1:{port}"})
        children.append(_in_child(lambda: (EgressProxy(policy, egress_sock).start(),
                                           time.sleep(3600))))
        while not egress_sock.exists():
            time.sleep(0.01)
        bridge = listen_tcp()
        children.append(_in_child(lambda: egress_bridge.serve(bridge, str(egress_sock))))
        proxied = urllib.request.build_opener(urllib.request.ProxyHandler(
            {"http": f"http://127.0.0.1:{bridge.getsockname()[1]}"}))
        plain = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        paths = {
            "direct": (plain, f"http://127.0.0.1:{port}/blob"),
            "1 bare relay": (plain, f"http://127.0.0.1:{one.getsockname()[1]}/blob"),
            "2 bare relays": (plain, f"http://127.0.0.1:{outer.getsockname()[1]}/blob"),
            "codeact proxy + bridge": (proxied, f"http://{NAME}/blob"),
        }
        samples: dict[str, list[float]] = {name: [] for name in paths}
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        for i in range(args.runs + 1):
            order = list(paths.items())
            for name, (opener, url) in order if i % 2 else order[::-1]:
                began = time.perf_counter()
                with opener.open(url, timeout=60) as response:
                    assert len(response.read()) == size
                if i:  # the first round warms every path
                    samples[name].append(time.perf_counter() - began)
        base = statistics.median(samples["direct"])
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"{name:>24}: {median * 1000:7.1f} ms  ({args.size_mb / median:5.0f} MB/s)  "
                  f"{median / base:.2f}x direct")
    finally:
        server.kill()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

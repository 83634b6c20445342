"""What the review kernel's re-signing relay costs against the byte bridge.

    python benchmarks/bench_review_relay.py [--trips 200] [--json out.json]

Both kernelspecs are installed into a temporary prefix and started as a frontend starts
them (jupyter_client over TCP): ``codeact-sandbox`` (bytes copied between the frontend's
ports and the kernel's ipc sockets) and ``codeact-review`` (every message parsed, checked,
its bundles filtered, re-signed). Round trips alternate between the two kernels one at a
time, so load on the machine drifts over both alike. A trip is execute_interactive: the
request, the reply on shell, and the iopub messages up to idle. Two payloads: ``1+1``
(relay overhead alone) and a 60x8 DataFrame (an HTML table through the sanitizer).

Wall-clock trips move with the machine's load, so the relay's own CPU time per message is
also measured in-process (``time.process_time``, medians over repeated batches): the
checking and re-signing of a request, and of a status, an execute_result and a DataFrame
display coming back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from codeact_kernel.render.firewall import OutputFirewall
from codeact_kernel.sandbox.kernelspec import KERNEL_NAME, REVIEW_KERNEL_NAME, install_kernelspec
from codeact_kernel.sandbox.relay import Signer, SigningRelay

SETUP = "import pandas as pd, numpy as np\ndf = pd.DataFrame(np.arange(480).reshape(60, 8))"
PAYLOADS = {"1+1": "1+1", "dataframe": "df"}


def _start(name: str) -> tuple[KernelManager, Any]:
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.execute_interactive(SETUP, timeout=60, output_hook=lambda msg: None)
    return km, kc


def _trip(kc: Any, code: str) -> float:
    started = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
    elapsed = time.perf_counter() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{code!r} failed: {reply['content']}")
    return elapsed * 1000


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)], 3), "n": len(ordered)}


def run(trips: int) -> dict[str, Any]:
    runtime = Path(tempfile.mkdtemp(prefix="ckb-"))
    prefix = Path(tempfile.mkdtemp(prefix="ckb-prefix-"))
    for review in (False, True):
        install_kernelspec(prefix=str(prefix), review=review,
                           launcher_args=[f"--runtime-dir={runtime}"])
    os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    kernels = {"bridge": _start(KERNEL_NAME), "review": _start(REVIEW_KERNEL_NAME)}
    try:
        results: dict[str, Any] = {}
        for label, code in PAYLOADS.items():
            samples: dict[str, list[float]] = {k: [] for k in kernels}
            for _ in range(20):  # warm-up, not counted
                for _, kc in kernels.values():
                    _trip(kc, code)
            for _ in range(trips):
                for name, (_, kc) in kernels.items():
                    samples[name].append(_trip(kc, code))
            stats = {name: _stats(s) for name, s in samples.items()}
            stats["ratio_median"] = round(
                stats["review"]["median_ms"] / stats["bridge"]["median_ms"], 3)
            results[label] = stats
        return results
    finally:
        for km, kc in kernels.values():
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)


def relay_cpu(batches: int = 15, per_batch: int = 200) -> dict[str, float]:
    """Microseconds of CPU per message in the relay's conversion, without sockets."""
    import pandas as pd

    frontend, kernel = Session(key=b"f" * 32), Session(key=b"k" * 32)
    relay = SigningRelay(Signer(frontend.key), Signer(kernel.key), OutputFirewall())
    table = pd.DataFrame([[i * 8 + j for j in range(8)] for i in range(60)])
    messages = {
        "request (frontend->kernel)": ("frontend", "execute_request", {"code": "1+1"}),
        "status (kernel->frontend)": ("kernel", "status", {"execution_state": "idle"}),
        "execute_result 1+1": ("kernel", "execute_result",
                               {"data": {"text/plain": "2"}, "metadata": {}}),
        "display_data DataFrame": ("kernel", "display_data", {
            "data": {"text/html": table._repr_html_(), "text/plain": str(table)},
            "metadata": {}}),
    }
    out: dict[str, float] = {}
    for label, (side, msg_type, content) in messages.items():
        session = frontend if side == "frontend" else kernel
        convert = (relay._from_frontend if side == "frontend"
                   else lambda f: relay._from_kernel(f, iopub=True))
        times = []
        for _ in range(batches):
            # Fresh messages: a request already seen would be refused as a replay.
            frames = [[b"id", *session.serialize(session.msg(msg_type, content))]
                      for _ in range(per_batch)]
            started = time.process_time()
            for f in frames:
                assert convert(f) is not None
            times.append((time.process_time() - started) / per_batch * 1e6)
        out[label] = round(statistics.median(times), 1)
    relay.context.destroy(linger=0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=200, help="Round trips per kernel.")
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args()
    cpu = relay_cpu()
    for label, micros in cpu.items():
        print(f"relay CPU per message, {label}: {micros:.1f} us")
    results: dict[str, Any] = run(args.trips)
    for label, stats in results.items():
        print(f"{label:>10}: bridge {stats['bridge']['median_ms']:.2f} ms "
              f"(p90 {stats['bridge']['p90_ms']:.2f}), review {stats['review']['median_ms']:.2f}"
              f" ms (p90 {stats['review']['p90_ms']:.2f}), ratio {stats['ratio_median']:.2f}x")
    results["relay_cpu_us"] = cpu
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

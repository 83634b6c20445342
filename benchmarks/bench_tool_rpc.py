"""Tool RPC round trip, measured inside a real sandboxed kernel.

A trivial host tool is called N times from kernel code; each call is timed with
``time.perf_counter`` inside the kernel, so the number is what model-written
code feels: stub -> JSON -> ZMQ ipc -> host thread pool -> reply -> stub.

    python benchmarks/bench_tool_rpc.py [--calls 300] [--runs 3] [--json out.json]

Targets: median under 1 ms (issue 3) and under 0.5 ms (issue 9).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from codeact_kernel import KernelSession
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import tool

TARGETS_MS = {"issue 3": 1.0, "issue 9": 0.5}

KERNEL_LOOP = """
import json as _j, time as _t
_samples = []
for _i in range({warmup}):
    echo(_i)
for _i in range({calls}):
    _t0 = _t.perf_counter()
    echo(_i)
    _samples.append(_t.perf_counter() - _t0)
print(_j.dumps(_samples))
del _samples, _i, _t0, _j, _t
"""


def echo(x: int) -> int:
    """Return x unchanged.

    Args:
        x: Any integer.
    """
    return x


def measure(calls: int = 300, runs: int = 3, warmup: int = 20) -> dict[str, Any]:
    """Median/min/max round trip in ms, per run and over all samples."""
    per_run: list[dict[str, float]] = []
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as runtime, KernelSession(
        runtime_dir=runtime, timeout=120
    ) as session:
        assert session.session_dir is not None
        with ToolServer([tool(echo)], session.session_dir / "tools.sock") as server:
            session.startup_code = [server.bootstrap_code()]
            session.reset()
            for _ in range(runs):
                result = session.execute(KERNEL_LOOP.format(calls=calls, warmup=warmup))
                if not result.ok:
                    raise RuntimeError(result.error.text if result.error else result.reason)
                run = [s * 1000 for s in json.loads(result.stdout.strip().splitlines()[-1])]
                samples += run
                per_run.append(_stats(run))
    return {
        "benchmark": "tool_rpc_roundtrip",
        "calls_per_run": calls,
        "runs": runs,
        "unit": "ms",
        "median_of_run_medians": statistics.median(r["median"] for r in per_run),
        "all": _stats(samples),
        "per_run": per_run,
        "targets_ms": TARGETS_MS,
    }


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
    }


def table_line(report: dict[str, Any]) -> str:
    overall = report["all"]
    median = report["median_of_run_medians"]
    verdicts = ", ".join(
        f"{name} <{limit} ms: {'ok' if median < limit else 'MISSED'}"
        for name, limit in report["targets_ms"].items()
    )
    return (
        f"{'tool RPC round trip':<24} median {median:.3f} ms  min {overall['min']:.3f}  "
        f"max {overall['max']:.3f}  p90 {overall['p90']:.3f}  "
        f"({report['runs']} x {report['calls_per_run']} calls)  {verdicts}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tool RPC round trip inside a sandboxed kernel.")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per run")
    parser.add_argument("--runs", type=int, default=3, help="repeated runs")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    report = measure(args.calls, args.runs)
    print(table_line(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Host memory, trace size and time under hostile output, beside a normal step.

Each scenario is a real agent run (scripted model, real sandboxed kernel) in a fresh
process, so the peak RSS measured is that run's alone: the peak is reset
(``/proc/self/clear_refs``) once the kernel is up and read back (``VmHWM``) after
the run. A run is three steps: a marker print, the attack (or a normal small step),
then ``final_answer``. Every scenario runs ``--repeat`` times; the table gives medians
and the worst RSS growth.

    python benchmarks/bench_flood.py [--repeat 3] [--only NAME ...] [--json PATH]

Targets (issue 13): host RSS growth <= 256 MB in each case, trace size within the
configured caps, the attack step ends within its timeout + 5 s, and nothing printed
before the flood is lost. A benchmark, not a test: nothing here fails on a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MB = 1_000_000
MIB = 1024 * 1024
TIMEOUT = 30.0  # the attack step's timeout

BEFORE = "print('BEFORE-THE-FLOOD', flush=True)\nimport time\ntime.sleep(0.3)\n"
# A final answer whose Parquet is a few KB: one 8 MB string, 200 times (1.6 GB decoded),
# written from a dictionary array so the kernel itself never holds the 1.6 GB.
PARQUET_BOMB = """
import io, json, sys
import pyarrow as pa, pyarrow.parquet as pq
strings = pa.DictionaryArray.from_arrays(pa.array([0] * 200, pa.int32()),
                                         pa.array(['x' * 8_000_000]))
buf = io.BytesIO()
pq.write_table(pa.table({'s': strings}), buf, compression='zstd')
print('parquet bytes on the wire:', len(buf.getvalue()))
client = sys.modules['_codeact_rpc']._client
value = {'$codeact': 'dataframe', 'blob': 0, 'format': 'parquet'}
header = {'v': 1, 'tool': 'final_answer', 'args': [], 'kwargs': {'value': value},
          'notes': [], 'accept': client.accept}
try:
    client._roundtrip('final_answer', [json.dumps(header).encode(), buf.getvalue()])
    print('ACCEPTED')
except Exception as exc:
    print('REFUSED:', exc)
"""
# 30 sockets at once, each sending one 60 MB frame (one buffer, zero-copy) without the
# session token: a stranger's burst at the tool socket.
RPC_BURST = """
import sys, time, zmq
endpoint = sys.modules['_codeact_rpc']._client.endpoint
frame = b'{"tool": "x", "args": [' + b'[], ' * 15_000_000 + b'[]]}'
ctx = zmq.Context()
socks = []
for _ in range(30):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send(frame, copy=False)
    socks.append(s)
end = time.monotonic() + 8
replies = sum(1 for s in socks if s.poll(max(0, int((end - time.monotonic()) * 1000))))
print('replies to the burst:', replies)
ctx.destroy(linger=0)
"""

SCENARIOS: dict[str, dict[str, Any]] = {
    "normal step": {"code": BEFORE + "x = sum(range(1000))\nprint(x)"},
    "1 GB display": {
        "code": BEFORE + "chunk = 'x' * 10_000_000\n"
                         "for i in range(100):\n    display({'text/plain': chunk}, raw=True)",
        "session": {"interrupt_on_flood": False}},
    "1 GB display, flood interrupt on": {
        "code": BEFORE + "chunk = 'x' * 10_000_000\n"
                         "for i in range(100):\n    display({'text/plain': chunk}, raw=True)"},
    "1 GB prints, 1 MB lines": {
        "code": BEFORE + "line = 'y' * 1_000_000\nfor i in range(1000):\n    print(line)",
        "session": {"interrupt_on_flood": False}},
    "1 GB prints, 1 MB lines, flood interrupt on": {
        "code": BEFORE + "line = 'y' * 1_000_000\nfor i in range(1000):\n    print(line)"},
    "1 GB prints, 100-byte lines": {
        "code": BEFORE + "line = 'y' * 99\nfor i in range(10_000_000):\n    print(line)",
        "session": {"interrupt_on_flood": False}},
    "endless display past the timeout": {
        "code": BEFORE + "chunk = 'z' * 1_000_000\n"
                         "while True:\n    display({'text/plain': chunk}, raw=True)",
        "session": {"interrupt_on_flood": False}, "timeout": 10.0},
    "Parquet bomb (1.6 GB decoded)": {"code": BEFORE + PARQUET_BOMB},
    "oversized RPC burst (30 x 60 MB)": {"code": BEFORE + RPC_BURST},
}


# ---- the child: one agent run ---------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def child(name: str, workdir: str) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import pandas  # noqa: F401 - the decoders are loaded before the peak is reset
    import pyarrow.parquet  # noqa: F401

    from tests.scripted_llm import ScriptedLLMServer  # the tests' scripted model

    spec = SCENARIOS[name]
    steps = ["print('STEP-ONE-MARKER')", spec["code"], "final_answer('done')"]
    with ScriptedLLMServer([f"```python\n{code}\n```" for code in steps]) as model:
        return measure(spec, steps, model.api_base, Path(workdir))


def measure(spec: dict[str, Any], steps: list[str], api_base: str,
            workdir: Path) -> dict[str, Any]:
    from codeact_kernel import Agent

    timeout = float(spec.get("timeout", TIMEOUT))
    trace = workdir / "trace.ipynb"
    agent = Agent(model="openai/scripted", api_base=api_base, max_steps=len(steps),
                  trace_path=str(trace), step_timeout=timeout)
    agent.llm.max_retries = 1
    agent.session.runtime_dir = str(workdir)
    # The attacks import sys, zmq and pyarrow: the AST policy is not the guard measured.
    agent.policy.authorized_imports = ["sys", "zmq", "pyarrow"]
    for trait, value in spec.get("session", {}).items():
        setattr(agent.session, trait, value)
    with agent:
        agent.session.execute("1+1")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status("VmRSS")
        result = agent.run("flood")
        peak = _status("VmHWM")
    attack = result.steps[1]
    nb = json.loads(trace.read_text())
    texts = [json.dumps(c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code"]
    return {
        "rss_growth_mb": (peak - base) / MB, "trace_mb": trace.stat().st_size / MB,
        "step_s": attack.exec_duration, "timeout_s": timeout,
        "overrun_s": max(0.0, attack.exec_duration - timeout),
        "before_kept": any("STEP-ONE-MARKER" in t for t in texts)
        and any("BEFORE-THE-FLOOD" in t for t in texts),
        "status": result.status, "reason": attack.reason[:300],
        "dropped": getattr(attack, "output_dropped", None), "answer": str(result.answer)[:80],
        "stdout": "".join(o.get("text", "") for o in attack.outputs
                          if o.get("output_type") == "stream")[-300:],
        # The trace may hold one step's output cap plus a cut copy of each output.
        "trace_cap_mb": (getattr(agent.session, "max_output_bytes", 0) * len(steps)) / MB,
    }


# ---- the parent -----------------------------------------------------------------------------


def run_child(name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as workdir:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--child", name, workdir],
                              capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0 or not proc.stdout.strip():
            return {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}",
                    "wall_s": time.monotonic() - started}
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        report["wall_s"] = time.monotonic() - started
        return report


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"]}

    def median(key: str) -> float:
        return statistics.median(r[key] for r in ok)

    return {
        "rss_growth_mb": median("rss_growth_mb"),
        "rss_growth_max_mb": max(r["rss_growth_mb"] for r in ok),
        "trace_mb": median("trace_mb"), "trace_cap_mb": ok[0]["trace_cap_mb"],
        "step_s": median("step_s"), "timeout_s": ok[0]["timeout_s"],
        "overrun_max_s": max(r["overrun_s"] for r in ok),
        "before_kept": all(r["before_kept"] for r in ok),
        "runs": len(ok), "failed_runs": len(runs) - len(ok), "last": ok[-1],
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (f"{'scenario':34} {'RSS growth MB':>15} {'trace MB':>9} {'step s':>8} "
            f"{'overrun s':>10} {'before kept':>12}  verdict")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:34} ERROR {r['error'][:200]}")
            continue
        good = (r["rss_growth_max_mb"] <= 256 and r["trace_mb"] <= r["trace_cap_mb"]
                and r["overrun_max_s"] <= 5 and r["before_kept"])
        rss = f"{r['rss_growth_mb']:.0f} (max {r['rss_growth_max_mb']:.0f})"
        lines.append(f"{name:34} {rss:>15} {r['trace_mb']:>9.2f} {r['step_s']:>8.2f} "
                     f"{r['overrun_max_s']:>10.2f} {'yes' if r['before_kept'] else 'NO':>12}  "
                     f"{'within targets' if good else 'MISSES A TARGET'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="scenario names")
    parser.add_argument("--json", default=str(RESULTS / "flood.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child), default=str))
        return
    names = [n for n in SCENARIOS if args.only is None or n in args.only]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _ in range(args.repeat):  # scenarios interleaved, so load drift falls on all
        for name in names:
            runs[name].append(run_child(name))
            print(f"  {name}: {json.dumps(runs[name][-1], default=str)[:300]}", flush=True)
    results = {name: summarize(r) for name, r in runs.items()}
    print()
    print(table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"repeat": args.repeat, "results": results,
                                           "runs": runs}, indent=2, default=str))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""MCP tools: what they cost in the prompt, and per call from kernel code.

    python benchmarks/bench_mcp.py [--calls 200] [--runs 3] [--json out.json]

prompt: the system prompt with 10 and with 100 tools of a real MCP server
(mcp_bench_server.py: lookups, searches, updates and reports over ten domains, each
with a description and documented parameters), listed 'full' (signatures and docs)
and 'index' (names and one-line summaries; search_tools() and help() in the kernel).
Tokens are counted with litellm.token_counter for gpt-4o (its tokenizer, tiktoken's
o200k_base), as run_all.py counts prompts; the prompt without any tool is the baseline.

calls: one trivial tool, echo(x), called N times from kernel code in a sandboxed
kernel and timed there with time.perf_counter: as a native host tool (the baseline,
measured in the same run), on the MCP server over stdio, and over streamable HTTP on
127.0.0.1. Runs alternate between the three, medians over repeated runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_tool_rpc import _stats, echo

from codeact_kernel import KernelSession
from codeact_kernel.agent.prompt import DEFAULT_SYSTEM_PROMPT, render_system_prompt
from codeact_kernel.policy.rules import Policy
from codeact_kernel.tools.listing import prompt_docs
from codeact_kernel.tools.mcp import MCPConnection, MCPServerSpec, MCPTool, make_tools
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import tool

SERVER = Path(__file__).with_name("mcp_bench_server.py")
STARTUP = 120.0
LOOP = """
import json as _j, time as _t
_samples = []
for _i in range({warmup}):
    {call}
for _i in range({calls}):
    _t0 = _t.perf_counter()
    {call}
    _samples.append(_t.perf_counter() - _t0)
print(_j.dumps(_samples))
del _samples, _i, _t0, _j, _t
"""
CALLS = {"native": "echo(_i)", "mcp stdio": "bench.echo(x=_i)",
         "mcp http": "bench_http.echo(x=_i)"}


def connect(name: str, count: int, port: int | None = None) -> MCPConnection:
    if port is None:
        entry: dict[str, Any] = {"name": name, "command": [sys.executable, str(SERVER),
                                                           str(count)]}
    else:
        entry = {"name": name, "url": f"http://127.0.0.1:{port}/mcp"}
    spec = MCPServerSpec.from_entry(entry)
    return MCPConnection(spec, startup_timeout=STARTUP, call_timeout=60).start()


def tokens(text: str) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no fetch
    import litellm

    return int(litellm.token_counter(model="gpt-4o",
                                     messages=[{"role": "system", "content": text}]))


def prompt_tokens() -> dict[str, Any]:
    imports = sorted(Policy().effective_imports())
    base = tokens(render_system_prompt(DEFAULT_SYSTEM_PROMPT, [], imports))
    rows: dict[str, Any] = {"no tools (baseline)": base}
    for count in (10, 100):
        connection = connect("bench", count)
        try:
            tools = [t for t in make_tools(connection)[0] if t.attr != "echo"]
            for listing in ("full", "index"):
                docs = prompt_docs(tools, listing, threshold=30)
                total = tokens(render_system_prompt(DEFAULT_SYSTEM_PROMPT, docs, imports))
                rows[f"{count} tools, {listing}"] = {"prompt": total, "tools": total - base}
        finally:
            connection.close()
    return rows


def http_server(count: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen([sys.executable, str(SERVER), str(count), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the MCP HTTP server did not start")


def call_times(calls: int, runs: int, warmup: int = 20) -> dict[str, Any]:
    proc, port = http_server(1)
    stdio, http = connect("bench", 1), connect("bench_http", 1, port)
    samples: dict[str, list[float]] = {kind: [] for kind in CALLS}
    medians: dict[str, list[float]] = {kind: [] for kind in CALLS}
    try:
        mcp_tools: list[MCPTool] = [t for c in (stdio, http) for t in make_tools(c)[0]
                                    if t.attr == "echo"]
        with tempfile.TemporaryDirectory(prefix="bench-mcp-") as runtime, KernelSession(
            runtime_dir=runtime, timeout=300
        ) as session:
            assert session.session_dir is not None
            with ToolServer([tool(echo), *mcp_tools], session.session_dir / "tools.sock",
                            call_timeout=60) as server:
                session.startup_code = [server.bootstrap_code()]
                session.reset()
                for _ in range(runs):
                    for kind, call in CALLS.items():
                        run = _kernel_loop(session, call, calls, warmup)
                        samples[kind] += run
                        medians[kind].append(statistics.median(run))
    finally:
        stdio.close()
        http.close()
        proc.kill()
        proc.wait(10)
    native = statistics.median(medians["native"])
    return {kind: {**_stats(samples[kind]), "median_of_run_medians": statistics.median(m),
                   "run_medians": m, "x_native": statistics.median(m) / native}
            for kind, m in medians.items()}


def _kernel_loop(session: KernelSession, call: str, calls: int, warmup: int) -> list[float]:
    result = session.execute(LOOP.format(call=call, calls=calls, warmup=warmup), timeout=600)
    if not result.ok:
        raise RuntimeError(result.error.text if result.error else result.reason)
    return [s * 1000 for s in json.loads(result.stdout.strip().splitlines()[-1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MCP tools: prompt tokens and call latency.")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per run and kind")
    parser.add_argument("--runs", type=int, default=3, help="repeated runs")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = {"benchmark": "mcp", "prompt_tokens": prompt_tokens(),
              "calls_ms": call_times(args.calls, args.runs), "runs": args.runs,
              "calls_per_run": args.calls}
    report["duration_s"] = round(time.monotonic() - started, 1)
    print("prompt tokens (litellm.token_counter, gpt-4o):")
    for name, row in report["prompt_tokens"].items():
        text = f"{row}" if isinstance(row, int) else (
            f"{row['prompt']:>6} in the prompt, {row['tools']:>6} for the tools")
        print(f"  {name:<22} {text}")
    print(f"tool call from kernel code, ms ({args.runs} runs x {args.calls} calls):")
    for kind, row in report["calls_ms"].items():
        print(f"  {kind:<10} median {row['median_of_run_medians']:.3f}  p90 {row['p90']:.3f}  "
              f"runs {', '.join(f'{m:.3f}' for m in row['run_medians'])}  "
              f"{row['x_native']:.1f}x native")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs one hostile scenario in a fresh process and reports what it cost the host.

The process that runs the agent (or the tool server) is the host under attack, so
each scenario runs in its own interpreter: its peak RSS is then the scenario's and
nothing else's. The peak is reset (``/proc/self/clear_refs``) once the kernel is up,
right before the attack, and read back (``VmHWM``) after it.

    python -m tests.security.probe < spec.json     # prints one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Make the peak RSS the current RSS; return it."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_kb("VmRSS")


def run(spec: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
    """Run ``spec`` in a child interpreter; return its report."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.security.probe"], input=json.dumps(spec),
        capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT),
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"probe failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


# ---- scenarios (run in the child) -------------------------------------------------------


def _configure(obj: Any, traits: dict[str, Any]) -> None:
    # setattr, not constructor keywords: a trait the code under test lacks is then
    # a plain attribute, so the same scenario also runs against older code.
    for name, value in traits.items():
        setattr(obj, name, value)


def agent_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps of scripted code through a real Agent; the peak covers the whole run."""
    from traitlets.config import Config

    from codeact_kernel import Agent
    from tests.scripted_llm import ScriptedLLMServer

    workdir = Path(spec["tmp"])
    trace = workdir / "trace.ipynb"
    with ScriptedLLMServer() as llm:
        llm.enqueue(*(f"Step.\n```python\n{code}\n```" for code in spec["steps"]))
        agent = Agent(model="openai/scripted", api_base=llm.api_base, tools=[],
                      trace_path=str(trace), max_steps=len(spec["steps"]),
                      config=Config(spec.get("config", {})))
        _configure(agent, spec.get("agent", {}))
        _configure(agent.session, spec.get("session", {}))
        agent.session.runtime_dir = str(workdir / "rt")
        (workdir / "rt").mkdir(exist_ok=True)
        agent.llm.max_retries = 1
        with agent:
            agent.session.execute("1+1")  # warm: the first execute imports things
            base = reset_peak()
            started = time.monotonic()
            result = agent.run(spec.get("task", "flood"))
            elapsed = time.monotonic() - started
            peak = status_kb("VmHWM")
            kept_after = agent.session.execute("print('alive')").stdout
        prompts = [m.get("content") for m in llm.requests[-1]["messages"]] if llm.requests else []
    return {
        "rss_base": base, "rss_peak": peak, "rss_growth": peak - base, "elapsed": elapsed,
        "status": result.status, "reason": result.reason, "trace": str(trace),
        "trace_bytes": trace.stat().st_size,
        "answer": result.answer if isinstance(result.answer, (int, str, type(None))) else None,
        "steps": [{"status": s.status, "reason": s.reason, "exec_duration": s.exec_duration,
                   "outputs_key": s.outputs_key} for s in result.steps],
        "alive_after": kept_after,
        "last_prompt_chars": sum(len(str(p)) for p in prompts),
    }


def tool_attack(spec: dict[str, Any]) -> dict[str, Any]:
    """Attack code in a real sandboxed kernel against the real tool socket of this process."""
    # Loaded before the peak is reset: the host has its decoders loaded already, and
    # their import is not what a bomb costs.
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from codeact_kernel import KernelSession, tool
    from codeact_kernel.tools.server import ToolServer

    def get_population(city: str) -> int:
        """Return a city's population.

        Args:
            city: The city.
        """
        return len(city)

    runtime = Path(spec["tmp"]) / "rt"
    runtime.mkdir(exist_ok=True)
    with KernelSession(runtime_dir=str(runtime), timeout=120) as session:
        assert session.session_dir is not None
        server = ToolServer([tool(get_population)], session.session_dir / "tools.sock",
                            token="s3cret-token-of-this-session", **spec.get("server", {}))
        _configure(server, spec.get("server_attrs", {}))
        with server:
            session.startup_code = [server.bootstrap_code()]
            session.reset()
            base = reset_peak()
            attack = session.execute(spec["code"], timeout=120)
            deadline = time.monotonic() + 60
            while refused(server) < spec.get("expect_rejected", 0):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            settled = status_kb("VmRSS")
            peak = status_kb("VmHWM")
            legit = session.execute("print(get_population('Lyon'))")
            final = server.final_answer
    return {
        "rss_base": base, "rss_peak": peak, "rss_growth": peak - base,
        "rss_settled_growth": settled - base, "rejected": refused(server),
        "attack_stdout": attack.stdout[-2000:], "attack_error": attack.reason[-2000:],
        "legit_stdout": legit.stdout, "final_kind": final.kind if final else None,
        "calls": [(c.name, c.error) for c in server.calls][-5:],
    }


def refused(server: Any) -> int:
    """Messages the server refused, and peers it turned away in the handshake."""
    return int(server.rejected_messages + getattr(server, "refused_peers", 0))


SCENARIOS = {"agent_run": agent_run, "tool_attack": tool_attack}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    report = SCENARIOS[spec["scenario"]](spec)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()

"""The agent's cost per step with OpenTelemetry export on, against export off.

Both runs use a scripted model (a real OpenAI-compatible server on 127.0.0.1) and a real
sandboxed kernel; "on" exports every span to a real OTLP/HTTP receiver on 127.0.0.1. Runs
alternate on/off so that load drifting on a shared machine hits both alike. The figure is
the agent's own time per step (step wall time minus the model's and the kernel's), median
over all steps; the target is under 1 ms added per step.

    .venv/bin/python benchmarks/bench_otel.py [--reps 5] [--steps 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeact_kernel import Agent
from tests.scripted_llm import ScriptedLLMServer
from tests.telemetry.receiver import OTLPReceiver

FENCE = "Next.\n```python\n{}\n```"


async def one_run(llm: ScriptedLLMServer, steps: int, runtime: str,
                  endpoint: str) -> list[float]:
    codes = [f"v{i} = {i} * 2" for i in range(steps - 1)] + ["final_answer(v0)"]
    llm.enqueue(*(FENCE.format(code) for code in codes))
    agent = Agent(model="openai/scripted", api_base=llm.api_base, max_steps=steps + 1,
                  trace_dir=str(Path(runtime) / "traces"), otel_endpoint=endpoint)
    agent.session.runtime_dir = runtime
    began: dict[int, float] = {}
    own: list[float] = []

    def on_event(event: Any) -> None:
        if event.kind == "thinking":
            began[event.step] = time.perf_counter()
        elif event.kind == "step_end":
            record = event.data
            wall = time.perf_counter() - began[event.step]
            own.append((wall - record.llm_duration - record.exec_duration) * 1e3)

    async with agent:
        result = await agent.arun("Double some numbers.", on_event=on_event)
        assert result.status == "answered", result.reason
    return own


def observer_cost(rx: OTLPReceiver, steps: int, reps: int) -> list[float]:
    """Microseconds the live exporter adds on the agent's thread per saved step: building
    the step's spans and queueing them (conversion and export happen on other threads).
    A whole-run A/B on a loaded 2-core machine is noise-bound; this is the added work."""
    from codeact_kernel.telemetry.config import Telemetry
    from codeact_kernel.telemetry.live import LiveExport
    from codeact_kernel.trace.notebook import TraceWriter
    from codeact_kernel.trace.record import StepRecord

    samples: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(reps):
            writer = TraceWriter(Path(folder) / "t.ipynb", {"model": "m"})
            live = LiveExport(rx.endpoint, Telemetry(), agent_name="bench", model="m")
            live.on_task({"task": "t", "started_at": time.time()}, writer.nb, writer.path)
            for step in range(1, steps + 1):
                record = StepRecord(step=step, model_text="x", code=f"v{step} = {step} * 2",
                                    model="m", prompt_tokens=100, completion_tokens=20,
                                    llm_duration=0.1, exec_duration=0.005, status="ok")
                record.tool_calls = [{"name": "lookup", "arguments": {"k": step},
                                      "result": "42", "error": None, "started": time.time(),
                                      "duration": 0.0004}]
                meta = {**record.metadata(), "ended_at": time.time()}
                began = time.perf_counter()
                live.on_step(record, meta)
                samples.append((time.perf_counter() - began) * 1e6)
            live.on_finish({"status": "answered", "ended_at": time.time()})
            live.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as runtime, ScriptedLLMServer() as llm, \
            OTLPReceiver() as rx:
        for _ in range(args.reps):
            for mode in ("off", "on"):
                endpoint = rx.endpoint if mode == "on" else ""
                samples[mode] += asyncio.run(one_run(llm, args.steps, runtime, endpoint))
        observer = observer_cost(rx, args.steps, args.reps * 4)
        received = len(rx.spans)
    off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
    report = {
        "steps_per_mode": len(samples["on"]),
        "own_ms_per_step_off": round(off, 3),
        "own_ms_per_step_on": round(on, 3),
        "added_ms_per_step": round(on - off, 3),
        "observer_us_per_step_median": round(statistics.median(observer), 1),
        "observer_us_per_step_p90": round(sorted(observer)[int(len(observer) * 0.9)], 1),
        "spans_received": received,
        "target_added_ms": 1.0,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

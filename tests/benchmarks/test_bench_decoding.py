"""The decoding benchmark measures the requests the agent really sends.

The agent runs a tuning task on a real sandboxed kernel against a scripted model; its first
request must be the benchmark's request for that task, word for word. The benchmark's round
then goes through the same scripted server, and its summary compares replies.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from codeact_kernel.models.llm import LLM
from codeact_kernel.models.provider import Endpoint

from ..scripted_llm import ScriptedLLMServer
from .test_bench_runner import fence, run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_decoding
import unseen_tasks as ut


def test_the_first_step_request_is_the_agents(tmp_path: Path) -> None:
    task = ut.TUNING[0]
    with ScriptedLLMServer() as scripted:
        scripted.enqueue(fence(task.solution))
        row = run("code", task.name, scripted, tmp_path)
    assert row["ok"], row
    sent = scripted.requests[0]["messages"]
    (name, messages), *_ = bench_decoding.first_step_requests(1)
    assert name == task.name
    assert messages == [{"role": m["role"], "content": m["content"]} for m in sent]


def test_a_round_times_each_request_and_compares_replies() -> None:
    requests = bench_decoding.first_step_requests(2)
    with ScriptedLLMServer() as scripted:
        scripted.enqueue(fence("final_answer(1)"), fence("final_answer(2)"),
                         fence("final_answer(1)"), fence("final_answer(3)"))
        llm = LLM(temperature=0.0)
        llm.attach(Endpoint(model="openai/scripted", api_base=scripted.api_base,
                            api_key="k", stop_after_first_block=True))
        rounds = [{"variant": variant, "round_seconds": 1.0, "rss_bytes": 2**20,
                   "rows": asyncio.run(bench_decoding.one_round(llm, requests))}
                  for variant in ("logits-all", "lookup")]
    summary = bench_decoding.summarize(rounds, ["logits-all", "lookup"])
    assert summary["logits-all"]["same_text_as_first"] == 2
    assert summary["lookup"]["same_text_as_first"] == 1  # its second reply differs
    assert summary["lookup"]["requests"] == 2 and summary["lookup"]["median_rss_mb"] == 1

"""How the local model server decodes: time and memory per reply, variant against baseline.

    python benchmarks/bench_decoding.py                      # every variant, 3 rounds
    python benchmarks/bench_decoding.py --variants logits-all,lookup --rounds 5

The requests are the first steps of the unseen tasks' *tuning* half, as the agent sends them:
its default system prompt with the task's tools listed, the imports the default policy
allows, and the task; at temperature 0, each reply cut at the end of its first code block as
``LocalModelServer.stop_after_first_block`` has the agent do. Each variant is one server
started with different ``LocalModelServer.extra_args``:

- ``logits-all``: ``--logits_all True``, llama-cpp-python's server default: the logits of
  every prompt position are computed and kept.
- ``last-logits``: ``--logits_all False`` (``LocalModelServer.logits_all``'s default): only
  the last position's logits, which is all that sampling needs.
- ``lookup``: prompt-lookup speculative decoding (``--draft_model prompt-lookup-decoding``):
  the continuation of an n-gram seen earlier in the context is proposed as a draft and
  checked in one batch. Code copies names and literals from the prompt, so drafts often hold.
  It needs every position's logits, so it keeps them whatever ``--logits_all`` says.

Rounds alternate the variants (ABAB...), so a slow minute of the machine falls on each. Per
variant: the median seconds of a request and of the whole round, completion tokens per
second, the server's resident memory after the round, and how many replies are the first
variant's (the baseline's) character for character (greedy decoding should not change the text; a
tie between logits computed in another batch shape can).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from traitlets.config import Config

from codeact_kernel.agent.prompt import DEFAULT_SYSTEM_PROMPT, PREIMPORTED, render_system_prompt
from codeact_kernel.models.llm import LLM
from codeact_kernel.models.local import LocalModelServer
from codeact_kernel.policy.rules import Policy
from codeact_kernel.tools.listing import prompt_docs
from codeact_kernel.tools.tool import tool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import unseen_tasks  # noqa: E402 - a sibling script, found through sys.path

RESULTS = HERE / "results"
VARIANTS: dict[str, list[str]] = {
    "logits-all": ["--logits_all", "True"],
    "last-logits": ["--logits_all", "False"],
    "lookup": ["--draft_model", "prompt-lookup-decoding"],
}


def first_step_requests(limit: int) -> list[tuple[str, list[dict[str, str]]]]:
    """(task name, messages) of the tuning tasks' first steps, as the agent words them."""
    imports = sorted(Policy().effective_imports())
    requests = []
    for task in unseen_tasks.TUNING[:limit]:
        docs = prompt_docs([tool(f) for f in task.tools], "full", 12)
        system = render_system_prompt(DEFAULT_SYSTEM_PROMPT, docs, imports, "", PREIMPORTED)
        requests.append((task.name, [{"role": "system", "content": system},
                                     {"role": "user", "content": f"Task: {task.prompt}"}]))
    return requests


async def one_round(llm: LLM, requests: list[tuple[str, list[dict[str, str]]]]
                    ) -> list[dict[str, Any]]:
    await llm.astart()  # checks the settings and takes the endpoint's key
    rows = []
    for name, messages in requests:
        completion = await llm.complete(messages)
        rows.append({"task": name, "seconds": completion.duration, "text": completion.text,
                     "prompt_tokens": completion.prompt_tokens,
                     "completion_tokens": completion.completion_tokens})
    return rows


def run_variant(name: str, requests: list[tuple[str, list[dict[str, str]]]],
                gguf: str | None) -> dict[str, Any]:
    """One round of every request on a fresh server started with the variant's arguments."""
    config = Config()
    config.LocalModelServer.extra_args = VARIANTS[name]
    config.LLM.temperature = 0.0
    server = LocalModelServer(config=config, gguf_path=gguf or "")
    with server:
        llm = LLM(config=config)
        server.point(llm)
        began = time.monotonic()
        rows = asyncio.run(one_round(llm, requests))
        return {"variant": name, "round_seconds": time.monotonic() - began, "rows": rows,
                "rss_bytes": server.rss_bytes()}


def summarize(rounds: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    first = next(r for r in rounds if r["variant"] == variants[0])
    reference = {row["task"]: row["text"] for row in first["rows"]}
    out: dict[str, Any] = {}
    for name in variants:
        mine = [r for r in rounds if r["variant"] == name]
        rows = [row for r in mine for row in r["rows"]]
        tokens = sum(row["completion_tokens"] for row in rows)
        out[name] = {
            "rounds": len(mine),
            "median_round_s": round(statistics.median(r["round_seconds"] for r in mine), 1),
            "median_request_s": round(statistics.median(row["seconds"] for row in rows), 2),
            "completion_tokens_per_s": round(tokens / sum(row["seconds"] for row in rows), 1),
            "median_rss_mb": round(statistics.median(r["rss_bytes"] for r in mine) / 2**20),
            "same_text_as_first": sum(row["text"] == reference.get(row["task"])
                                      for row in mine[-1]["rows"]),
            "requests": len(mine[-1]["rows"]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="Comma-separated variants; the first is the baseline the "
                        f"others' replies are compared with (default: {','.join(VARIANTS)}).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per variant.")
    parser.add_argument("--tasks", type=int, default=12,
                        help="How many tuning tasks' first steps make a round.")
    parser.add_argument("--gguf", default=None, help="GGUF file (default: the resolver's).")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}: use some of {', '.join(VARIANTS)}")
    requests = first_step_requests(args.tasks)
    rounds = []
    for number in range(args.rounds):
        for name in variants:
            rnd = run_variant(name, requests, args.gguf)
            rounds.append(rnd)
            print(f"round {number + 1} {name:14} {rnd['round_seconds']:6.1f} s  "
                  f"rss {rnd['rss_bytes'] / 2**20:6.0f} MB", flush=True)
    summary = summarize(rounds, variants)
    for name, row in summary.items():
        print(f"{name:14} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"decoding-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"summary": summary, "rounds": rounds, "args": vars(args)},
                              indent=2))
    print(f"details: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local-model benchmark: the agent in each action format, and a minimal loop, on the
embedded model.

    python benchmarks/bench_local_model.py                        # everything (make bench-local)
    python benchmarks/bench_local_model.py --set tuning --agents code
    python benchmarks/bench_local_model.py --only lisbon_cancelled --agents code,baseline

Three task sets: the unseen tasks' ``tuning`` and ``held_out`` halves (unseen_tasks.py; tune
on the first only) and the ``old`` 13 tasks (local_tasks.py, which the prompt was tuned on).
Four agents: codeact_kernel's Agent in each action format, ``code``, ``json`` and ``auto``,
run by the engine of ``codeact bench`` (codeact_kernel.bench: the same agent, categories and
traces), and ``baseline`` (minimal_loop.py, a plain CodeAct loop without repair or hints).
Each agent runs every task before the next agent starts (``--order agent``): the model
server keeps the prompt it evaluated last and reuses its longest common prefix, so an agent
whose tasks follow each other finds its fixed instructions evaluated, as it does for a user.
Run task by task (``--order task``), each agent finds the other's prompt instead and pays
for its whole prompt on every first step; that order spreads a shared machine's noise more
evenly. One llama-cpp server serves the whole run; each run gets a fresh
sandboxed kernel. A pass needs the right answer *and* a successful call of each of the
task's required tools (a small model sometimes types in made-up data and is right by luck).

A run that lasts longer than ``--cap`` seconds (120, the issue's per-task target) is
cancelled and counts as a failure; the table counts the runs over ``--target`` (120 s)
too. Other jobs on a small machine slow the model down many times over (0.3 instead of
~15 tokens/s at a load of 11 on 2 cores), so each run records the load it started under,
and ``--max-load`` waits for a quieter machine before each run. It prints a line per run as it
finishes, then per (agent, set): pass rate, pass rate on hard tasks, median steps, median and
max seconds; then the tasks side by side. JSON with every run (answers, statuses, tokens,
trace paths) goes to benchmarks/results/, the agent's traces (.ipynb, per format) and the
baseline's transcripts (.json) to a folder beside it.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from traitlets.config import Config

from codeact_kernel.agent.prompt import DEFAULT_SYSTEM_PROMPT
from codeact_kernel.bench import BenchTask
from codeact_kernel.bench.runner import Bench
from codeact_kernel.models.llm import LLM
from codeact_kernel.models.local import LocalModelServer
from codeact_kernel.models.provider import Endpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import local_tasks  # noqa: E402 - sibling scripts, found through sys.path
import unseen_tasks  # noqa: E402
from bench_report import print_report, summarize  # noqa: E402
from minimal_loop import MinimalLoop  # noqa: E402

RESULTS = HERE / "results"
# The held-out half first: what a run cut short by time has measured is what matters most.
SET_NAMES = ("held_out", "tuning", "old")
FORMATS = ("code", "json", "auto")  # the agent's action formats, run through Bench
AGENTS = (*FORMATS, "baseline")
T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    """A task of any set, in one shape: the old tasks require every tool they offer."""

    set_name: str
    name: str
    prompt: str
    tools: tuple[Callable[..., Any], ...]
    required: tuple[Callable[..., Any], ...]
    check: Callable[[Any], bool]
    expected: str
    difficulty: str = ""
    domain: str = ""
    kinds: tuple[str, ...] = ()


def cases(set_names: Sequence[str], only: Sequence[str] | None) -> list[Case]:
    out: list[Case] = []
    for set_name in set_names:
        if set_name == "old":
            out += [Case("old", t.name, t.prompt, t.tools, t.tools, t.check, t.expected)
                    for t in local_tasks.TASKS]
        else:
            out += [Case(set_name, t.name, t.prompt, t.tools, t.required, t.check, t.expected,
                         t.difficulty, t.domain, t.kinds)
                    for t in unseen_tasks.SETS[set_name]]
    return [c for c in out if not only or c.name in only]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=[*SET_NAMES, "all"], default="all",
                        help="Task set to run (default: all three).")
    parser.add_argument("--agents", default=",".join(AGENTS), type=_agent_list,
                        help="Comma-separated agents to run each task with: the agent's "
                        "action formats code, json, auto, and the minimal loop baseline "
                        "(default: all four).")
    parser.add_argument("--only", nargs="+", default=None, metavar="TASK",
                        help="Run only these tasks (of the chosen sets).")
    parser.add_argument("--max-steps", type=int, default=6, help="Step budget per task.")
    parser.add_argument("--cap", type=float, default=120.0,
                        help="Seconds after which a run is cancelled and counts as failed.")
    parser.add_argument("--run-seconds", type=float, default=105.0,
                        help="Agent.max_run_seconds: the time the agent is told it has, as an "
                        "orchestrator that knows --cap would tell it (the cap less a margin "
                        "for the kernel's start and shutdown); at its end the agent makes "
                        "its last call for an answer. 0: the agent's default.")
    parser.add_argument("--target", type=float, default=120.0,
                        help="Seconds per task the issue targets; runs over it are counted.")
    parser.add_argument("--max-load", type=float, default=0.0,
                        help="Before each run, wait while the 1-minute load average is above "
                        "this (0: never wait); other jobs on a small machine slow the model "
                        "down many times over. The wait is not part of the run's time.")
    parser.add_argument("--max-wait", type=float, default=900.0,
                        help="Seconds to wait for --max-load at most before a run starts "
                        "anyway.")
    parser.add_argument("--order", choices=("agent", "task"), default="agent",
                        help="agent: each agent runs all tasks in turn (each keeps the model "
                        "server's prompt cache warm, as for a user); task: each task is run "
                        "by every agent in turn.")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Runs per task; worth it only with a temperature above 0.")
    parser.add_argument("--prompt", default=None, metavar="FILE",
                        help="System prompt template for the agent's code format instead of "
                        "DEFAULT_SYSTEM_PROMPT.")
    parser.add_argument("--temperature", type=float, default=None, help="LLM.temperature.")
    parser.add_argument("--max-tokens", type=int, default=None, help="LLM.max_tokens.")
    parser.add_argument("--label", default="default", help="Name of this variant in the JSON.")
    parser.add_argument("--config", nargs="+", default=[], metavar="CLASS.TRAIT=VALUE",
                        help="Settings for the agent, e.g. Agent.break_cycles=False "
                        "(values are Python literals; anything else is a string).")
    parser.add_argument("--gguf", default="", help="GGUF file (default: the resolver's).")
    parser.add_argument("--no-stop", action="store_true",
                        help="Let replies run past their first code block "
                        "(LocalModelServer.stop_after_first_block = False).")
    return parser.parse_args(argv)


def agent_config(args: argparse.Namespace, trace_dir: Path) -> Config:
    config = Config()
    config.Agent.max_steps = args.max_steps
    config.Agent.trace_dir = str(trace_dir)
    if args.run_seconds > 0:
        config.Agent.max_run_seconds = args.run_seconds
    if args.prompt:
        config.Agent.system_prompt_template = Path(args.prompt).read_text()
    if args.temperature is not None:
        config.LLM.temperature = args.temperature
    if args.max_tokens is not None:
        config.LLM.max_tokens = args.max_tokens
    for item in args.config:
        key, _, text = item.partition("=")
        section, _, trait = key.partition(".")
        if not (section and trait and _):
            raise SystemExit(f"--config {item!r}: write CLASS.TRAIT=VALUE, e.g. "
                             "Agent.break_cycles=False")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config[section][trait] = value
    return config


async def capped(work: Awaitable[T], cap: float) -> tuple[T | None, bool]:
    """``work``'s result, or (None, True) when it ran past ``cap`` seconds and was cancelled
    (given 30 s more to finish its trace and shut its kernel down)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=cap)
    if done:
        return task.result(), False
    task.cancel()
    await asyncio.wait({task}, timeout=30)
    return None, True


def _agent_list(text: str) -> tuple[str, ...]:
    agents = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in agents if a not in AGENTS]
    if unknown or not agents:
        raise argparse.ArgumentTypeError(
            f"{unknown[0] if unknown else text!r} is not an agent: name some of "
            + ", ".join(AGENTS))
    return agents


def bench_task(case: Case) -> BenchTask:
    return BenchTask(case.name, case.prompt, list(case.tools), case.check, case.difficulty,
                     list(case.required))


async def run_agent(fmt: str, case: Case, endpoint: Endpoint, config: Config, trace_dir: Path,
                    cap: float, run: int) -> dict[str, Any]:
    """One run of the agent in action format ``fmt``, by ``codeact bench``'s engine."""
    bench = Bench(config=config, output_dir=str(trace_dir))
    bench.llm.attach(endpoint)  # requests go to the one server kept for every task
    row, killed = await capped(bench.arun_task(bench_task(case), fmt, run), cap)
    if row is None:
        trace = bench.folder / "traces" / fmt / f"{case.name}-{run}.ipynb"
        return {"status": "killed" if killed else "crashed", "ok": False,
                "steps": _steps_in(trace), "trace": str(trace)}
    return {"ok": row.category == "pass", "category": row.category, "note": row.note,
            "answer": row.answer, "status": row.status, "steps": row.steps,
            "llm_seconds": row.model_seconds, "tokens": row.tokens, "trace": row.trace}


def _steps_in(trace: Path) -> int:
    """The steps a cancelled run's trace recorded (it is saved after every step)."""
    try:
        cells = json.loads(trace.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return 0
    return len({c["metadata"]["codeact"]["step"] for c in cells
                if "step" in c.get("metadata", {}).get("codeact", {})})


def grade(case: Case, answered: bool, answer: Any, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Pass: answered, the checker accepts, and each required tool had a call without error."""
    try:
        correct = answered and bool(case.check(answer))
    except Exception:  # a checker fed an odd answer type says no, it does not crash
        correct = False
    called = {c["name"] for c in calls if not c.get("error")}
    missing = sorted({f.__name__ for f in case.required} - called)
    return {"ok": correct and not missing, "correct": correct, "tools_not_called": missing,
            "answer": repr(answer)[:300]}


async def run_baseline(case: Case, endpoint: Endpoint, config: Config, trace_dir: Path,
                       cap: float, run: int) -> dict[str, Any]:
    trace = trace_dir / "baseline" / f"{case.name}-{run}.json"
    trace.parent.mkdir(parents=True, exist_ok=True)
    llm = LLM(config=config)
    # The reply grammar is one of the product's techniques: the plain loop goes without it
    # (it keeps the stop after the first block, which it had from the start).
    plain = {k: v for k, v in endpoint.params.items() if k != "extra_body"}
    llm.attach(replace(endpoint, params=plain))
    llm.validate()  # takes the endpoint's key, as the Agent's start does
    loop = MinimalLoop(case.tools, llm, max_steps=config.Agent.max_steps, config=config)
    result, killed = await capped(loop.arun(case.prompt), cap)
    done = loop.result
    trace.write_text(json.dumps({"messages": done.messages,
                                 "steps": [asdict(s) for s in done.steps]}, indent=1,
                                default=repr))
    if result is None:
        return {"status": "killed" if killed else "crashed", "ok": False,
                "steps": len(done.steps), "trace": str(trace)}
    calls = [c for s in result.steps for c in s.tool_calls]
    return {
        **grade(case, result.ok, result.answer, calls),
        "status": result.status, "steps": len(result.steps),
        "step_statuses": [_baseline_status(s) for s in result.steps],
        "llm_seconds": round(sum(s.llm_seconds for s in result.steps), 1),
        "tokens": result.prompt_tokens + result.completion_tokens,
        "trace": str(trace),
    }


def _baseline_status(step: Any) -> str:
    return "no-code" if step.code is None else "error" if step.error else "ok"


def run_one(agent: str, case: Case, endpoint: Endpoint, config: Config, trace_dir: Path,
            cap: float, run: int) -> dict[str, Any]:
    # On 2 shared cores, other jobs slow the model down many times over: each run notes the
    # load it started under, so that slow figures can be told apart from a slow agent.
    load = round(os.getloadavg()[0], 2)
    started = time.monotonic()
    try:
        if agent == "baseline":
            work = run_baseline(case, endpoint, config, trace_dir, cap, run)
        else:
            work = run_agent(agent, case, endpoint, config, trace_dir, cap, run)
        row = asyncio.run(work)
    except Exception as exc:  # one broken run must not end the benchmark
        row = {"status": "crashed", "ok": False, "steps": 0,
               "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"agent": agent, "set": case.set_name, "task": case.name, "run": run,
            "difficulty": case.difficulty, "domain": case.domain, "kinds": list(case.kinds),
            "expected": case.expected, **row, "load": load,
            "seconds": round(time.monotonic() - started, 1)}


def wait_for_load(max_load: float, max_wait: float) -> float:
    """Sleep while the 1-minute load average is above ``max_load`` (at most ``max_wait``
    seconds); return the seconds waited."""
    started = time.monotonic()
    while max_load and os.getloadavg()[0] > max_load and time.monotonic() - started < max_wait:
        time.sleep(5)
    return round(time.monotonic() - started, 1)


def split_report() -> dict[str, Any]:
    digest = unseen_tasks.split_sha256()
    return {"held_out_sha256": digest, "recorded": unseen_tasks.HELD_OUT_SHA256,
            "matches": digest == unseen_tasks.HELD_OUT_SHA256,
            "held_out": list(unseen_tasks.HELD_OUT_NAMES)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_names = SET_NAMES if args.set == "all" else (args.set,)
    agents = args.agents
    todo = cases(set_names, args.only)
    if not todo:
        print(f"no such task in {', '.join(set_names)}", file=sys.stderr)
        return 2
    split = split_report()
    verdict = ("matches the recorded hash" if split["matches"]
               else f"DIFFERS from the recorded {split['recorded']}")
    print(f"held-out split sha256 {split['held_out_sha256']} ({verdict})", flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    trace_dir = RESULTS / f"traces-{stamp}-{args.label}"
    trace_dir.mkdir(parents=True, exist_ok=True)
    config = agent_config(args, trace_dir)
    rows: list[dict[str, Any]] = []
    server = LocalModelServer(gguf_path=args.gguf, config=config)  # --config LocalModelServer.x
    if args.no_stop:
        server.stop_after_first_block = False
    started = time.monotonic()
    with server:
        print(f"server ready in {server.ready_seconds:.1f} s; {len(todo)} tasks x "
              f"{len(agents)} agents x {args.repeat} runs", flush=True)
        endpoint = server.endpoint()
        for run, case, agent in run_order(todo, agents, args.repeat, args.order):
            waited = wait_for_load(args.max_load, args.max_wait)
            row = run_one(agent, case, endpoint, config, trace_dir, args.cap, run)
            row["waited_for_load"] = waited
            rows.append(row)
            print(_line(row), flush=True)
    summary = summarize(rows, agents, set_names, args.target)
    print_report(summary, rows, agents, set_names)
    out = RESULTS / f"local-{stamp}-{args.label}.json"
    prompt = Path(args.prompt).read_text() if args.prompt else DEFAULT_SYSTEM_PROMPT
    out.write_text(json.dumps({
        "label": args.label, "split": split, "summary": summary, "runs": rows,
        "args": vars(args), "prompt": prompt,
        "total_seconds": round(time.monotonic() - started, 1)}, indent=2))
    print(f"details: {out}")
    return 0


def run_order(todo: list[Case], agents: Sequence[str], repeat: int,
              order: str) -> list[tuple[int, Case, str]]:
    """(run, task, agent) in the order they are run."""
    if order == "agent":
        return [(run, case, agent) for run in range(1, repeat + 1) for agent in agents
                for case in todo]
    return [(run, case, agent) for run in range(1, repeat + 1) for case in todo
            for agent in agents]


def _line(row: dict[str, Any]) -> str:
    mark = "PASS" if row["ok"] else "FAIL"
    missing = row.get("tools_not_called")
    return (f"{mark} {row['agent']:8s} {row['set']:8s} {row['task']:26s} {row['status']:9s} "
            f"steps={row['steps']} {row['seconds']:6.1f}s load={row['load']:<5g} "
            f"answer={row.get('answer', row.get('error', ''))}"
            + (f" (no successful call of {', '.join(missing)})" if missing else ""))


if __name__ == "__main__":
    raise SystemExit(main())

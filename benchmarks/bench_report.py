"""Figures and tables of the local-model benchmark (bench_local_model.py): per agent and set,
then the tasks side by side."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def _rate(passed: int, total: int) -> str:
    return f"{passed}/{total} {passed / total:4.0%}" if total else "-"


def summarize_rows(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The figures of one (agent, set): pass rates overall, on hard tasks and per
    difficulty, steps and seconds per run."""
    if not rows:
        return {"runs": 0}
    hard = [r for r in rows if r["difficulty"] == "hard"]
    levels = sorted({r["difficulty"] for r in rows if r["difficulty"]})
    seconds = [r["seconds"] for r in rows]
    return {
        "runs": len(rows),
        "passed": sum(r["ok"] for r in rows),
        "pass_rate": round(sum(r["ok"] for r in rows) / len(rows), 3),
        "hard_runs": len(hard),
        "hard_passed": sum(r["ok"] for r in hard),
        "hard_pass_rate": round(sum(r["ok"] for r in hard) / len(hard), 3) if hard else None,
        "by_difficulty": {lvl: [sum(r["ok"] for r in rows if r["difficulty"] == lvl),
                                sum(r["difficulty"] == lvl for r in rows)] for lvl in levels},
        "answered": sum(r["status"] == "answered" for r in rows),
        "median_steps": statistics.median(r["steps"] for r in rows),
        "median_seconds": round(statistics.median(seconds), 1),
        "max_seconds": max(seconds),
        "over_target": sum(s > target for s in seconds),
        "killed": sum(r["status"] == "killed" for r in rows),
        "total_seconds": round(sum(seconds), 1),
        "median_load": statistics.median(r.get("load", 0.0) for r in rows),
        "failed": sorted({r["task"] for r in rows if not r["ok"]}),
    }


def summarize(rows: list[dict[str, Any]], agents: Sequence[str], set_names: Sequence[str],
              target: float) -> dict[str, Any]:
    """``{"agent/set": figures}`` for every pair that ran."""
    out = {}
    for agent in agents:
        for set_name in set_names:
            mine = [r for r in rows if r["agent"] == agent and r["set"] == set_name]
            if mine:
                out[f"{agent}/{set_name}"] = {"target_seconds": target,
                                              **summarize_rows(mine, target)}
    return out


def print_report(summary: dict[str, Any], rows: list[dict[str, Any]], agents: Sequence[str],
                 set_names: Sequence[str]) -> None:
    target = next(iter(summary.values()))["target_seconds"] if summary else 0
    print(f"\n{'agent':9s} {'set':9s} {'pass':>10s} {'hard':>10s} {'med steps':>9s} "
          f"{'med s':>6s} {'max s':>6s} {'>' + format(target, 'g') + ' s':>6s} {'killed':>6s} "
          f"{'load':>5s}")
    for key, s in summary.items():
        agent, set_name = key.split("/")
        hard = _rate(s["hard_passed"], s["hard_runs"])
        print(f"{agent:9s} {set_name:9s} {_rate(s['passed'], s['runs']):>10s} {hard:>10s} "
              f"{s['median_steps']:>9g} {s['median_seconds']:>6.1f} {s['max_seconds']:>6.1f} "
              f"{s['over_target']:>6d} {s['killed']:>6d} {s['median_load']:>5.1f}")
    for set_name in set_names:
        _print_tasks(set_name, [r for r in rows if r["set"] == set_name], agents)


def _print_tasks(set_name: str, rows: list[dict[str, Any]], agents: Sequence[str]) -> None:
    if not rows:
        return
    print(f"\n{set_name}: " + " | ".join(f"{a}: result steps seconds" for a in agents))
    tasks = list(dict.fromkeys((r["task"], r["difficulty"]) for r in rows))
    for task, level in tasks:
        cells = []
        for agent in agents:
            mine = [r for r in rows if r["task"] == task and r["agent"] == agent]
            cells.append(" ".join(
                f"{'PASS' if r['ok'] else 'FAIL'} {r['steps']} {r['seconds']:5.1f}s"
                + ("" if r["ok"] else f" ({r['status']})") for r in mine) or "-")
        print(f"  {task:26s} {level or '':6s} " + " | ".join(f"{c:28s}" for c in cells))

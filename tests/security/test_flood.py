"""Output floods from the kernel against the host: memory, trace size and time stay bounded.

Each attack runs a real Agent (scripted model, real sandboxed kernel) in a fresh
process and measures that process's peak RSS from just before the run
(tests/security/probe.py). The floods are a few hundred MB, small enough to stay
quick but far past the caps configured here, so the unguarded host multiplied them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nbformat
import pytest

from . import probe

pytestmark = pytest.mark.timeout(300)

MIB = 1024 * 1024
STEP_CAP = 4 * MIB
# Caps small enough that a 200 MB flood is far past them.
SESSION = {"max_output_bytes": STEP_CAP, "max_output_messages": 2_000}
AGENT = {"max_trace_output_bytes": 256 * 1024, "max_kept_output_chars": 512 * 1024}
# What a step of the trace may hold beyond its output cap: cell source, metadata, notes.
TRACE_SLACK = 512 * 1024
RSS_BOUND = 160 * MIB


def run_agent(tmp_path: Path, steps: list[str], **spec: Any) -> dict[str, Any]:
    session = {**SESSION, **spec.pop("session", {})}
    agent = {**AGENT, **spec.pop("agent", {})}
    return probe.run({"scenario": "agent_run", "tmp": str(tmp_path), "steps": steps,
                      "session": session, "agent": agent, **spec})


def code_cells(report: dict[str, Any]) -> list[Any]:
    nb = nbformat.read(report["trace"], as_version=4)
    nbformat.validate(nb)
    return [c for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("codeact", {}).get("role") != "setup"]


def texts(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(str(output.data.get("text/plain", "")))
    return "".join(parts)


def test_display_flood_is_capped_and_interrupted(tmp_path: Path) -> None:
    # 200 MB of display_data, then a long sleep: the flood is cut at the step's cap,
    # the cell is interrupted because it kept flooding (or, if it does not stop within
    # the grace, as on a loaded machine, the kernel is restarted), and the run goes on.
    report = run_agent(tmp_path, [
        "print('BEFORE-FLOOD-STEP')",
        "print('FLOOD-STEP-START', flush=True)\n"
        "import time\n"
        "chunk = 'x' * 10_000_000\n"
        "for i in range(20):\n"
        "    display({'text/plain': chunk}, raw=True)\n"
        "time.sleep(30)\n"
        "print('NEVER')",
        "final_answer('survived')",
    ])
    assert report["status"] == "answered" and report["answer"] == "survived", report
    assert report["rss_growth"] <= RSS_BOUND, report["rss_growth"] / MIB
    assert report["trace_bytes"] <= 2 * (STEP_CAP + TRACE_SLACK), report["trace_bytes"]
    flood = report["steps"][1]
    assert flood["exec_duration"] < 20, flood  # interrupted, not the 30 s sleep
    assert "flood" in flood["reason"], flood
    assert "interrupted" in flood["reason"] or "restarted" in flood["reason"], flood
    first, second = code_cells(report)[:2]
    assert "BEFORE-FLOOD-STEP" in texts(first)
    assert texts(second).startswith("FLOOD-STEP-START")
    assert "NEVER" not in texts(second)
    dropped = second.metadata["codeact"]["output_dropped"]
    assert dropped["bytes"] > 0 and dropped["messages"] > 0, dropped
    assert report["alive_after"] == "alive\n"


def test_print_flood_keeps_the_head_and_bounds_the_host(tmp_path: Path) -> None:
    # 200 MB of prints in 1 MB lines, slow enough that each stream message stays under
    # the message size limit; flood interrupts off, so all of it is sent and counted.
    report = run_agent(tmp_path, [
        "print('BEFORE-FLOOD-STEP')",
        "import time\n"
        "print('PRINT-FLOOD-START')\n"
        "line = 'y' * 1_000_000\n"
        "for i in range(200):\n"
        "    print(line)\n"
        "    time.sleep(0.02)\n"
        "print('PRINT-FLOOD-END')",
        "final_answer(len(_outputs[2]))",
    ], session={"interrupt_on_flood": False})
    assert report["status"] == "answered", report
    assert report["rss_growth"] <= RSS_BOUND, report["rss_growth"] / MIB
    assert report["trace_bytes"] <= 2 * (STEP_CAP + TRACE_SLACK), report["trace_bytes"]
    first, second = code_cells(report)[:2]
    assert "BEFORE-FLOOD-STEP" in texts(first)
    assert texts(second).startswith("PRINT-FLOOD-START")
    dropped = second.metadata["codeact"]["output_dropped"]
    assert dropped["bytes"] >= 190 * 1_000_000, dropped  # counted, not stored
    assert "truncated" in report["steps"][1]["reason"], report["steps"][1]
    # _outputs[2] (the whole text the model saw cut) is capped as well.
    assert report["answer"] <= AGENT["max_kept_output_chars"] + 1000, report["answer"]
    assert report["last_prompt_chars"] < 100_000


def test_tight_print_loop_is_stopped_as_a_flood(tmp_path: Path) -> None:
    # Printing as fast as it can, the kernel sends 0.2 s of prints per stream message:
    # messages far over the size limit. Each drops the connection; the session re-opens
    # it, counts the loss against the budget and interrupts the flood.
    report = run_agent(tmp_path, [
        "print('BEFORE-FLOOD-STEP')",
        "print('TIGHT-START', flush=True)\n"
        "import time\n"
        "time.sleep(0.3)\n"
        "line = 'y' * 1_000_000\n"
        "for i in range(100):\n"
        "    print(line)\n"
        "time.sleep(30)\n"
        "print('NEVER')",
        "final_answer('stopped')",
    ], config={"BoundedKernelClient": {"max_message_bytes": 8 * MIB}})
    assert report["status"] == "answered" and report["answer"] == "stopped", report
    assert report["rss_growth"] <= RSS_BOUND, report["rss_growth"] / MIB
    flood = report["steps"][1]
    assert flood["exec_duration"] < 20, flood
    assert "flood" in flood["reason"] and "lost" in flood["reason"], flood
    first, second = code_cells(report)[:2]
    assert "BEFORE-FLOOD-STEP" in texts(first)
    assert texts(second).startswith("TIGHT-START") and "NEVER" not in texts(second)
    assert report["alive_after"] == "alive\n"


def test_slow_flood_past_the_timeout_ends_on_time(tmp_path: Path) -> None:
    # A flood that outlasts the timeout (about 15 s of it), with flood interrupts off:
    # the step still ends at its timeout, plus the interrupt's grace and a restart if
    # the kernel is too busy publishing its backlog to answer the interrupt in time.
    report = run_agent(tmp_path, [
        "print('BEFORE-FLOOD-STEP')",
        "import time\n"
        "chunk = 'z' * 2_000_000\n"
        "for i in range(150):\n"
        "    display({'text/plain': chunk}, raw=True)\n"
        "    time.sleep(0.1)",
        "final_answer('on time')",
    ], session={"interrupt_on_flood": False, "interrupt_grace": 3},
       agent={"step_timeout": 3})
    assert report["status"] == "answered", report
    flood = report["steps"][1]
    # timeout + grace + a restart, with room for a loaded 2-core machine
    assert flood["exec_duration"] <= 3 + 3 + 4, flood
    assert "timed out" in flood["reason"], flood
    assert report["rss_growth"] <= RSS_BOUND, report["rss_growth"] / MIB
    assert "BEFORE-FLOOD-STEP" in texts(code_cells(report)[0])


def test_trace_keeps_head_tail_size_and_sha256_of_a_large_output(tmp_path: Path) -> None:
    # One 3 MB output: under the step cap, over the trace's per-output cap.
    text = "".join(f"{i:07d}\n" for i in range(375_000))
    report = run_agent(tmp_path, [
        "print(''.join(f'{i:07d}\\n' for i in range(375_000)), end='')",
        "final_answer(len(_outputs[1]))",
    ])
    assert report["status"] == "answered", report
    assert report["answer"] <= AGENT["max_kept_output_chars"] + 1000, report["answer"]
    cell = code_cells(report)[0]
    [output] = cell.outputs
    cap = AGENT["max_trace_output_bytes"]
    assert len(output.text.encode()) <= cap + 1000
    # Stream outputs have no metadata field in nbformat: the note is the cell's.
    [note] = cell.metadata["codeact"]["outputs_cut"]
    assert note["index"] == 0
    assert note["original_bytes"] == len(text)
    assert note["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    head, tail = output.text.split(note["marker"])
    assert text.startswith(head) and text.endswith(tail) and len(head) > cap // 3
    assert report["trace_bytes"] < 3 * cap + TRACE_SLACK


def test_one_message_over_the_size_limit_is_reported_and_the_session_recovers(
    tmp_path: Path,
) -> None:
    # A single 100 MB display message: over the client's MAXMSGSIZE, so libzmq drops
    # the connection instead of buffering it. The step says messages were lost, and
    # the next step's output arrives (the channel was re-opened).
    report = run_agent(tmp_path, [
        "print('BEFORE-BIG-MESSAGE', flush=True)\n"
        "import time; time.sleep(0.3)\n"
        "display({'text/plain': 'q' * 100_000_000}, raw=True)",
        "print('NEXT-STEP-OUTPUT')",
        "final_answer('recovered')",
    ], agent={"step_timeout": 30},
        config={"BoundedKernelClient": {"max_message_bytes": 16 * MIB}})
    assert report["status"] == "answered", report
    assert report["rss_growth"] <= 64 * MIB, report["rss_growth"] / MIB
    big = report["steps"][0]
    assert "lost" in big["reason"], big
    assert big["exec_duration"] < 15, big
    first, second = code_cells(report)[:2]
    assert "BEFORE-BIG-MESSAGE" in texts(first)
    assert "NEXT-STEP-OUTPUT" in texts(second)
    assert report["alive_after"] == "alive\n"


def test_host_client_sockets_carry_size_and_queue_caps(tmp_path: Path) -> None:
    import zmq
    from traitlets.config import Config

    from codeact_kernel import KernelSession

    runtime = tmp_path / "rt"
    runtime.mkdir()
    config = Config({"BoundedKernelClient": {"max_message_bytes": 8 * MIB, "receive_hwm": 3}})
    with KernelSession(runtime_dir=str(runtime), config=config) as session:
        for name in ("iopub", "shell", "stdin"):
            sock = getattr(session.kc, f"{name}_channel").socket
            assert sock.getsockopt(zmq.MAXMSGSIZE) == 8 * MIB, name
            assert sock.getsockopt(zmq.RCVHWM) == 3, name
        assert session.execute("print(6 * 7)").stdout == "42\n"

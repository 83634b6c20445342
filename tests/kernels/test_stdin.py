"""The stdin back-channel for host tools, on a real sandboxed kernel (no gateway needed)."""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from codeact_kernel import KernelSession
from codeact_kernel.kernels.stdin import (
    TOOL_PROMPT_MARK,
    StdinToolChannel,
    decode_frames,
    encode_frames,
)
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import tool


@tool
def double(x: int) -> int:
    """Return twice x.

    Args:
        x: A number.
    """
    return 2 * x


@tool
def table(rows: int) -> pd.DataFrame:
    """A small table.

    Args:
        rows: How many rows.
    """
    return pd.DataFrame({"n": range(rows), "sq": [i * i for i in range(rows)]})


@tool
def slow(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return "done"


@pytest.fixture(scope="module")
def stdin_kernel(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[KernelSession, ToolServer, StdinToolChannel]]:
    runtime = tmp_path_factory.mktemp("rt")
    with KernelSession(runtime_dir=str(runtime), timeout=30, tool_transport="stdin") as session:
        assert session.session_dir is not None
        server = ToolServer([double, table, slow], session.session_dir / "tools.sock",
                            call_timeout=2)
        with server:
            channel = StdinToolChannel(server)
            session.tool_handler = channel.answer
            session.startup_code = [server.bootstrap_code("stdin")]
            session.reset()
            yield session, server, channel


def run(session: KernelSession, code: str) -> Any:
    result = session.execute(code)
    assert result.ok, result.error.text if result.error else result.reason
    return result.stdout


def test_tools_answer_over_stdin_without_allowing_input(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    session, server, _ = stdin_kernel
    server.drain_calls()
    assert run(session, "print(double(21))") == "42\n"
    frame = run(session, "df = table(4)\nprint(type(df).__name__, df['sq'].tolist())")
    assert frame == "DataFrame [0, 1, 4, 9]\n"  # a Parquet blob, base64 on the channel
    assert [c.name for c in server.drain_calls()] == ["double", "table"]
    # No human handler: input() from model code still fails at once, as before.
    result = session.execute("input('name? ')")
    assert result.error is not None and result.error.ename == "StdinNotImplementedError"


def test_argument_errors_and_timeouts_come_back_as_exceptions(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    session, _, _ = stdin_kernel
    out = run(session, "try:\n    double('x')\nexcept TypeError as e:\n    print('TypeError', e)")
    assert out.startswith("TypeError double(x: int) -> int")
    started = time.monotonic()
    out = run(session, "try:\n    slow(30)\nexcept ToolCallError as e:\n    print(e.category)")
    assert out == "timeout\n" and time.monotonic() - started < 10


def test_threads_get_a_clear_error(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    session, _, _ = stdin_kernel
    out = run(session, (
        "import threading\nbox = []\n"
        "def work():\n    try:\n        double(1)\n    except ToolCallError as e:\n"
        "        box.append(str(e))\n"
        "t = threading.Thread(target=work)\nt.start()\nt.join()\nprint(box[0])"
    ))
    assert "only the main thread" in out


def test_oversized_reply_is_refused_with_a_hint(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    session, _, channel = stdin_kernel
    channel.max_reply_chars = 2000
    try:
        out = run(session, "try:\n    table(500)\nexcept ToolCallError as e:\n    print(e)")
    finally:
        channel.max_reply_chars = 8 * 1024 * 1024
    assert "over its 2000 limit" in out and "return less data" in out


def test_interrupt_during_a_tool_call_keeps_the_kernel(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    session, _, _ = stdin_kernel
    result = session.execute("kept = 7\nslow(1.5)\nslow(1.5)", timeout=1)
    assert result.recovery == "interrupted"
    assert run(session, "print(kept, double(2))") == "7 4\n"


def test_malformed_prompts_get_a_protocol_error(
    stdin_kernel: tuple[KernelSession, ToolServer, StdinToolChannel],
) -> None:
    _, server, channel = stdin_kernel
    before = server.rejected_messages
    reply = decode_frames(asyncio.run(channel.answer(TOOL_PROMPT_MARK + "not json")))
    assert b'"category": "protocol"' in reply[0]
    assert server.rejected_messages == before + 1
    with pytest.raises(ValueError, match="malformed"):
        decode_frames('["ok", "***"]')
    assert decode_frames(encode_frames([b'{"a": 1}', b"\x00\xff"])) == [b'{"a": 1}', b"\x00\xff"]


def test_both_ends_use_the_same_marker() -> None:
    source = (Path(__file__).parents[2] / "codeact_kernel" / "kernel_side" /
              "stdin_rpc.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == \
                "TOOL_PROMPT_MARK":
            assert ast.literal_eval(node.value) == TOOL_PROMPT_MARK
            return
    raise AssertionError("no TOOL_PROMPT_MARK in kernel_side/stdin_rpc.py")

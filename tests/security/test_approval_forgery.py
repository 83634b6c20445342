"""Attacks on the approval gate from the sandbox's side: the kernel holds the tool
socket's token, so it can send any request the stub could, with any header.

Each request here is exactly what kernel code can put on the wire (the tool server's
handle_request is the same dispatch as the socket's); the gate must never run a call
that no human approved.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from codeact_kernel.tools.approval import ApprovalGate
from codeact_kernel.tools.server import ToolServer

from ..tools import approval_tools


def send(server: ToolServer, key: str, **header: Any) -> dict[str, Any]:
    # The session token travels alone in the first frame, as the kernel's client sends it.
    frames = [server.token.encode(),
              json.dumps({"v": 1, "tool": "delete_record", "args": [], "kwargs": {"key": key},
                          **header}).encode()]
    reply: dict[str, Any] = json.loads(server.handle_request(frames)[0])
    return reply


def test_kernel_code_cannot_forge_reuse_or_skip_an_approval(tmp_path: Path) -> None:
    approval_tools.DELETED.clear()
    gate = ApprovalGate(mode="ask")
    server = ToolServer([approval_tools.delete_record], tmp_path / "s.sock")
    server.gate = gate.check
    gate.begin_step(1, "delete_record('a')", human=True)
    asked: list[str] = []

    def human(prompt: str, password: bool) -> str:
        asked.append(prompt)
        return "y"

    # Calling past the stub (no ticket): held for a human, not run.
    held = send(server, "a")["error"]
    assert held["category"] == "approval" and len(held["ticket"]) == 24
    # A made-up ticket, and the real one before any human answered: denied.
    for ticket in ("0" * 24, held["ticket"]):
        error = send(server, "a", approval=ticket)["error"]
        assert error["category"] == "denied" and error["type"] == "ToolDenied"
    # A ticket a human approved for 'b' does not run the call for 'a'...
    ticket_b = send(server, "b")["error"]["ticket"]
    assert asyncio.run(gate.answer(ticket_b, human)) == "approved"
    assert "no approval was given for this call" in send(server, "a", approval=ticket_b)[
        "error"]["message"]
    # ...and it was good for one call only, even the right one.
    assert send(server, "b", approval=ticket_b)["error"]["category"] == "denied"
    # An approval prompt for a ticket the host never issued asks no one.
    assert asyncio.run(gate.answer("f" * 24, human)) == "denied"
    assert len(asked) == 1
    # Tickets of a finished step are void.
    ticket_c = send(server, "c")["error"]["ticket"]
    assert asyncio.run(gate.answer(ticket_c, human)) == "approved"
    gate.end_step()
    gate.begin_step(2, "", human=True)
    assert send(server, "c", approval=ticket_c)["error"]["category"] == "denied"
    assert approval_tools.DELETED == []
    # Every refused attempt is in the record, as a denied call.
    assert sum(1 for c in server.calls if (c.error or "").startswith("ToolDenied")) == 5

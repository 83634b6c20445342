"""The tool socket under hostile frames from the sandbox.

The per-session token must be checked on a small first frame before anything is
parsed; a kernel (which holds the token) must not get a huge JSON header parsed
either; and a burst of oversized frames must not leave the host holding GBs.
Attacks run from a real sandboxed kernel against the real ToolServer of a fresh
host process (probe.py), whose peak and settled RSS are measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import probe

pytestmark = pytest.mark.timeout(300)

MIB = 1024 * 1024

# A 40 MB JSON header of ten million empty lists: json.loads turns it into ~600 MB.
HEADER_BOMB = """
import json, sys, zmq
_rpc = sys.modules['_codeact_rpc']
client = _rpc._client
def bomb(token):
    return (b'{"v": 1, "tool": "get_population", "token": "' + token.encode()
            + b'", "args": [' + b'[], ' * 10_000_000 + b'[]]}')
def ask(frames, n=1, wait=8.0):
    import time
    ctx = zmq.Context.instance()
    socks = []
    for _ in range(n):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        # A REQ socket whose only connection was turned away has no peer: send would
        # wait for one forever.
        s.setsockopt(zmq.SNDTIMEO, int(wait * 1000))
        s.connect(client.endpoint)
        try:
            s.send_multipart(frames, copy=False)
        except zmq.Again:
            s.close(0)
            s = None
        socks.append(s)
    replies, end = [], time.monotonic() + wait
    for s in socks:
        left = max(0, int((end - time.monotonic()) * 1000))
        replies.append(s.recv()[:300] if s is not None and s.poll(left) else b'NO REPLY')
        if s is not None:
            s.close(0)
    return replies
"""


def attack(tmp_path: Path, code: str, expect_rejected: int) -> dict[str, Any]:
    return probe.run({"scenario": "tool_attack", "tmp": str(tmp_path),
                      "code": HEADER_BOMB + code, "expect_rejected": expect_rejected})


def test_wrong_token_is_refused_before_the_header_is_parsed(tmp_path: Path) -> None:
    report = attack(tmp_path, "print(ask([bomb('wrong-token')]))", expect_rejected=1)
    assert report["rejected"] >= 1
    # Refused: with a reply naming the token, or turned away before any reply at all.
    out = report["attack_stdout"]
    assert "token" in out or "NO REPLY" in out, report
    assert '"ok": true' not in out
    assert report["rss_growth"] <= 100 * MIB, report["rss_growth"] / MIB
    assert report["legit_stdout"] == "4\n"


def test_kernel_with_the_token_cannot_have_a_huge_header_parsed(tmp_path: Path) -> None:
    # The kernel holds the token, so the token is no guard against it: the header's
    # size is checked before json.loads.
    # Sent the way the kernel's own client frames a request, token and all.
    report = attack(tmp_path, (
        "try:\n"
        "    client._roundtrip('get_population', [bomb(client.token)])\n"
        "except Exception as exc:\n"
        "    print('REFUSED', exc)\n"
    ), expect_rejected=1)
    out = report["attack_stdout"]
    assert "REFUSED" in out and "header" in out and "max_header_bytes" in out, out
    assert report["rss_growth"] <= 100 * MIB, report["rss_growth"] / MIB
    assert report["legit_stdout"] == "4\n"


def test_burst_of_oversized_frames_leaves_nothing_held(tmp_path: Path) -> None:
    # 30 sockets at once, each with a 40 MB first frame (one buffer, sent zero-copy).
    report = attack(tmp_path, (
        "frame = bomb('wrong-token')\n"
        "replies = ask([frame], n=30)\n"
        "print(sum(r != b'NO REPLY' for r in replies), 'replies')\n"
    ), expect_rejected=30)
    assert report["rejected"] >= 30, report
    assert report["rss_growth"] <= 256 * MIB, report["rss_growth"] / MIB
    assert report["rss_settled_growth"] <= 64 * MIB, report["rss_settled_growth"] / MIB
    assert report["legit_stdout"] == "4\n"

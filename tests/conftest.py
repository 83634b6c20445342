"""Shared fixtures: real sandboxed kernels, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codeact_kernel import KernelSession


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runtime"
    path.mkdir()
    return path


@pytest.fixture
def session(runtime_dir: Path) -> Iterator[KernelSession]:
    with KernelSession(runtime_dir=str(runtime_dir), timeout=30) as s:
        yield s

"""Fixtures shared by the kernel backend tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager


@pytest.fixture
def outside_kernel(tmp_path: Path) -> Iterator[KernelManager]:
    """A kernel someone else started (plain ipykernel over ipc)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    km = KernelManager(transport="ipc", ip=str(folder / "k"),
                       connection_file=str(folder / "kernel.json"))
    km.start_kernel()
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)

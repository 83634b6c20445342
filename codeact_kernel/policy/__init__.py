"""The AST policy: the configurable surface and verdicts (``rules``) and the walk
(``walk``). A second layer behind the OS sandbox, and a source of helpful messages."""

from .rules import Policy, Violation

__all__ = ["Policy", "Violation"]

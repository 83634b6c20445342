"""Host-side tools called from the sandbox: ``@tool`` (``tool``), argument checks
(``args``), the RPC ``server``, the kernel's client ``bootstrap``, each tool's kernel-side
``stubs`` and the value codec (``serialize``)."""

from .tool import Tool, tool

__all__ = ["Tool", "tool"]

# Runs INSIDE the sandboxed kernel: turns it into a tool client. The host sends this text,
# then a call _codeact_bootstrap(source, config, stubs, names, spaces) with literal arguments
# (codeact_kernel.tools.bootstrap): ``source`` is the RPC client (codec.py + rpc.py, and
# stdin_rpc.py for the stdin transport), kept as sys.modules["_codeact_rpc"] so that the
# user's namespace only gains the tool stubs (an MCP server's as one namespace, ``spaces``
# maps each to its doc), final_answer, search_tools, ToolCallError and ToolDenied (all in
# user_ns_hidden). Re-running it (after %reset or a restart) reuses the client.


def _codeact_bootstrap(source: str, config: "dict[str, object]", stubs: str,
                       names: "list[str | list[str]]", spaces: "dict[str, str]") -> None:
    import sys
    import types

    key = hash(source)
    mod = sys.modules.get("_codeact_rpc")
    if mod is None or getattr(mod, "_codeact_key", None) != key:
        if mod is not None and hasattr(mod, "close"):
            mod.close()
        mod = types.ModuleType("_codeact_rpc")
        exec(compile(source, "<codeact rpc client>", "exec"), mod.__dict__)
        mod.__dict__["_codeact_key"] = key
        sys.modules["_codeact_rpc"] = mod
    mod.__dict__["configure"](**config)
    try:
        hidden = get_ipython().user_ns_hidden  # type: ignore[name-defined]  # noqa: F821
    except Exception:
        hidden = None
    mod.__dict__["install"](globals(), hidden, stubs, names, spaces)

# Runs INSIDE the sandboxed kernel: installs probe.py (its text is ``source``) as the module
# sys.modules[name], out of the user's namespace. The host sends this text, then a call
# _codeact_install_probe(name, source) with literal arguments (codeact_kernel.agent.steps).
# The first baseline is kept across %reset, so that hooks registered before a reset are
# still counted as the model's.


def _codeact_install_probe(name: str, source: str) -> None:
    import sys
    import types

    old = sys.modules.get(name)
    mod = types.ModuleType(name)
    exec(compile(source, "<codeact probe>", "exec"), mod.__dict__)
    mod.start(get_ipython(), getattr(old, "_baseline", None))  # type: ignore[name-defined]  # noqa: F821
    sys.modules[name] = mod

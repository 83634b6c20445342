# Runs INSIDE the sandboxed kernel, silently and without history, before any model code
# (and again after every restart and %reset). IPython's prefilter would otherwise run
# `ls -la` as a shell alias and `cd /tmp` as %cd (automagic), and `f x` as `f(x)`
# (autocall); the AST policy checks the code after IPython's input transformations,
# which come before the prefilter, so these are turned off here instead.


def __codeact_harden() -> None:
    shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821 - IPython's builtin
    shell.automagic = False
    shell.autocall = 0
    aliases = shell.alias_manager
    aliases.clear_aliases()
    # %reset re-creates the default aliases; make that a no-op so hardening survives it
    aliases.default_aliases = []
    aliases.user_aliases = []
    aliases.define_alias = lambda name, cmd: None


__codeact_harden()
del __codeact_harden

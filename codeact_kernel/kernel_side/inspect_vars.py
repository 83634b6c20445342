# Runs INSIDE the sandboxed kernel (shipped as text; the kernel cannot import
# codeact_kernel). Defines the class of _outputs; the variables summary is in probe.py.


class _CodeActOutputs(dict):  # type: ignore[type-arg]
    """_outputs[step]: the full text of a step whose output the model saw truncated.

    The host sets each entry with a silent execute, so it works wherever the kernel runs
    (a gateway's, a container's), with no file shared between host and kernel.
    """

    def __missing__(self, step: int) -> str:
        raise KeyError(f"no output kept for step {step}: only steps whose output was cut "
                       f"are kept, and these are: {sorted(self) or 'none yet'}")


_outputs = _CodeActOutputs()

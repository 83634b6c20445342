# Code in this folder runs INSIDE the sandboxed kernel: it is shipped there as text.
# The host may import codec.py too, so that both ends share one value codec.
# The name of the kernel-side probe module (probe.py) in the kernel's sys.modules.
PROBE_MODULE = "_codeact_probe"

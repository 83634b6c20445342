# Code in this folder runs INSIDE the sandboxed kernel: it is shipped there as text.
# The host may import codec.py too, so that both ends share one value codec.

"""How much of what the sandbox produces the agent keeps: the trace, ``_outputs`` and
final answers. A base of :class:`Agent`, so each is configured as ``Agent.<name>``."""

from __future__ import annotations

from traitlets import Int
from traitlets.config import Configurable

MIB = 1024 * 1024


class OutputLimits(Configurable):
    """Caps on what the agent keeps from the kernel (the kernel decides the sizes)."""

    max_kept_output_chars = Int(
        1_000_000,
        help="Characters of a cut step's text kept in the kernel as _outputs[step] (sent "
        "back to it as a str literal); longer text keeps its head and tail.",
    ).tag(config=True)
    max_trace_output_bytes = Int(
        1 * MIB,
        help="Bytes of one output kept in the trace; a larger output keeps its head and "
        "tail around a note with its original size and sha256.",
    ).tag(config=True)
    max_answer_bytes = Int(
        256 * MIB,
        help="Decoded size of a final answer (Parquet, .npy) the host accepts, read from "
        "the value's own metadata before anything is decoded; a larger one is refused.",
    ).tag(config=True)

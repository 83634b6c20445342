"""Code extraction is lenient where small models slip, strict about what is code."""

from __future__ import annotations

from codeact_kernel.models.blocks import extract_code, first_block_end, strip_code


def test_python_fence() -> None:
    assert extract_code("Plan.\n```python\nx = 1\n```\nDone.") == "x = 1"


def test_bare_fence_and_py_alias() -> None:
    assert extract_code("```\nprint(2)\n```") == "print(2)"
    assert extract_code("```py\nprint(3)\n```") == "print(3)"


def test_code_tags() -> None:
    assert extract_code("Thought: go\n<code>\ny = 2\n</code>") == "y = 2"


def test_several_blocks_run_in_order_as_one_step() -> None:
    reply = "A\n```python\na = 1\n```\nB\n```python\nb = a + 1\n```"
    assert extract_code(reply) == "a = 1\n\nb = a + 1"


def test_non_python_fences_are_ignored() -> None:
    reply = "Output will be:\n```text\n42\n```\n```python\nprint(42)\n```"
    assert extract_code(reply) == "print(42)"
    assert extract_code("```json\n{\"a\": 1}\n```") is None


def test_missing_closing_fence_takes_the_rest() -> None:
    assert extract_code("```python\nz = 3\nprint(z)") == "z = 3\nprint(z)"


def test_missing_opening_fence_takes_code_lines_before_the_fence() -> None:
    reply = "I will compute it now.\nx = 5\nprint(x * 2)\n```"
    assert extract_code(reply) == "x = 5\nprint(x * 2)"


def test_first_block_end_needs_a_closing_fence() -> None:
    assert first_block_end("plan\n```python\nx = 1") is None
    assert first_block_end("plan\n```\n") is None  # a bare opening fence is not an end
    text = "plan\n```\nx = 1\n```\nmore\n```python\ny = 2\n```"
    assert text[: first_block_end(text)] == "plan\n```\nx = 1\n```"
    assert first_block_end("a <code>x = 1</code> b") == len("a <code>x = 1</code>")


def test_no_code() -> None:
    assert extract_code("I think the answer is 42.") is None
    assert extract_code("```python\n\n```") is None


def test_strip_code_keeps_prose() -> None:
    assert strip_code("Plan it.\n```python\nx = 1\n```\nThen check.") == "Plan it.\n\nThen check."

"""The system prompt: what it lists, and in which order."""

from __future__ import annotations

from codeact_kernel.agent.prompt import DEFAULT_SYSTEM_PROMPT, render_system_prompt


def test_system_prompt_lists_tools_imports_variables() -> None:
    text = render_system_prompt(
        DEFAULT_SYSTEM_PROMPT,
        ["def f(x: int) -> int:\n    \"\"\"Double.\"\"\""],
        ["math", "pandas"],
        "- df: DataFrame = shape (3, 2)",
    )
    assert "def f(x: int) -> int" in text
    assert "math, pandas" in text
    assert "df: DataFrame" in text
    assert "final_answer" in text
    assert "$" not in text.replace("$tools", "")  # every placeholder was filled


def test_the_tools_come_last_so_tasks_share_the_prompt_prefix() -> None:
    # A server caching the longest common prefix (llama.cpp) then reads only the tools anew.
    docs_a, docs_b = ["def f(x: int) -> int: ..."], ["def g(name: str) -> str: ..."]
    text_a = render_system_prompt(DEFAULT_SYSTEM_PROMPT, docs_a, ["math"])
    text_b = render_system_prompt(DEFAULT_SYSTEM_PROMPT, docs_b, ["math"])
    assert text_a.rstrip().endswith(docs_a[0]) and text_b.rstrip().endswith(docs_b[0])
    assert text_a[: -len(docs_a[0]) - 1] == text_b[: -len(docs_b[0]) - 1]
    assert "final_answer(red[0])" in text_a[: -len(docs_a[0])]  # the example precedes them

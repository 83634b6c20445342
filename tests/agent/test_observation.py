"""The model view: short, head+tail truncated, images noted; nothing lost."""

from __future__ import annotations

from nbformat.v4 import new_output

from codeact_kernel.agent.observation import (
    failure_note,
    format_variables,
    model_view,
    truncate_middle,
)
from codeact_kernel.kernels.execution import ErrorInfo, ExecutionResult


def test_truncation_keeps_head_and_tail_and_the_whole_text() -> None:
    text = "".join(f"row {i}\n" for i in range(5000))
    result = ExecutionResult("ok", outputs=[new_output("stream", name="stdout", text=text)])
    obs = model_view(result, 4, [], 1000)
    assert obs.truncated and obs.full_length == len(text.rstrip("\n"))
    assert "row 0\n" in obs.text and "row 4999" in obs.text
    assert "_outputs[4]" in obs.text
    assert obs.full_text == text.rstrip("\n")  # the agent hands it to the kernel
    assert model_view(result, 4, [], 10**6).full_text == ""


def test_short_output_untouched() -> None:
    result = ExecutionResult(
        "ok",
        outputs=[
            new_output("stream", name="stdout", text="hello\n"),
            new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
        ],
    )
    obs = model_view(result, 1, [{"name": "x", "type": "int", "summary": "42"}], 1000)
    assert obs.text == "Step 1 output:\nhello\nOut: 42\n\nVariables in the kernel:\n- x: int = 42"
    assert not obs.truncated


def test_images_are_noted_and_attached_for_vision() -> None:
    result = ExecutionResult(
        "ok", outputs=[new_output("display_data", data={"image/png": "iVBOR", "text/plain": "F"})]
    )
    obs = model_view(result, 2, [], 1000)
    assert "an image (image/png) was displayed" in obs.text
    assert obs.message(vision=False) == {"role": "user", "content": obs.text}
    parts = obs.message(vision=True)["content"]
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,iVBOR"


def test_restart_reason_is_told_plainly() -> None:
    result = ExecutionResult("timeout", timed_out=True, recovery="restarted", state_lost=True,
                             reason="timed out; ALL VARIABLES WERE LOST")
    assert "ALL VARIABLES WERE LOST" in model_view(result, 1, [], 1000).text


def test_truncate_middle_bounds() -> None:
    out = truncate_middle("x" * 10_000, 300, 1)
    assert out.startswith("x" * 200) and out.endswith("x" * 100)
    assert "9,700 characters omitted" in out


def test_format_variables() -> None:
    rows = [{"name": "df", "type": "DataFrame", "summary": "shape (2, 1)"}]
    assert format_variables(rows) == "- df: DataFrame = shape (2, 1)"


def failed(ename: str, evalue: str) -> ExecutionResult:
    return ExecutionResult("error", error=ErrorInfo(ename, evalue, []))


def test_failure_note_asks_for_fixed_code_and_flags_a_repeat() -> None:
    note = failure_note(None, failed("TypeError", "unsupported operand"), ["get_prices"])
    assert note.endswith("a ```python block that fixes the error.")
    assert "same code" not in note and "get_prices" not in note
    assert "This is the same code as step 2" in failure_note(2, failed("TypeError", "x"))


def test_name_error_names_the_tools_that_fetch_data() -> None:
    # Measured on the local model: it assumed a `prices` variable instead of calling the tool.
    note = failure_note(None, failed("NameError", "name 'prices' is not defined"),
                        ["get_prices", "search"])
    assert "comes from calling get_prices(), search()" in note
    assert "calling" not in failure_note(None, failed("NameError", "name 'x'"), [])


def test_attribute_error_on_a_plain_type_says_what_it_is() -> None:
    # Measured: `.iloc` / `.items()` on a list of dicts, resent until the budget ran out.
    note = failure_note(None, failed("AttributeError", "'list' object has no attribute 'iloc'"))
    assert "a plain list, which has no .iloc" in note and "pd.DataFrame(value)" in note
    on_dict = failure_note(None, failed("AttributeError", "'dict' object has no attribute 'x'"))
    assert "plain dict" in on_dict and "DataFrame" not in on_dict
    other = failure_note(None, failed("AttributeError", "'Foo' object has no attribute 'x'"))
    assert "plain" not in other

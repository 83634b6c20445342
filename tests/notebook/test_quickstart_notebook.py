"""notebooks/quickstart.ipynb runs headless with nbclient against a scripted model."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ..scripted_llm import ScriptedLLMServer

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "quickstart.ipynb"
REPLIES = [
    "I will total by month and plot.\n```python\n"
    "import matplotlib.pyplot as plt\n"
    "totals = sales.groupby('month', as_index=False)['amount'].sum()\n"
    "plt.bar(totals['month'], totals['amount'])\nplt.title('Sales by month')\nplt.show()\n"
    "print(totals)\n```",
    "The totals look right.\n```python\nfinal_answer(totals)\n```",
]


def run_quickstart(workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with ScriptedLLMServer(list(REPLIES)) as llm:
        env = dict(os.environ, CODEACT_MODEL="openai/scripted", CODEACT_API_BASE=llm.api_base)
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute(env=env)
    return nb


def test_quickstart_runs_and_shows_steps_plot_and_answer(tmp_path: Path) -> None:
    nb = run_quickstart(tmp_path)
    nbformat.validate(nb)
    agent_cell = next(c for c in nb.cells if c.source.startswith("%%agent"))
    texts = [o.get("text", "") for o in agent_cell.outputs if o.output_type == "stream"]
    markdown = [o["data"].get("text/markdown", "") for o in agent_cell.outputs
                if o.output_type == "display_data"]
    assert any("Step 1" in m for m in markdown) and any("Step 2" in m for m in markdown)
    assert any("2026-03" in t for t in texts)  # the step's printed output streamed in
    assert any("image/png" in o.get("data", {}) for o in agent_cell.outputs)  # the plot
    assert any("Final answer" in m for m in markdown)
    answer_cell = next(c for c in nb.cells if c.source == "monthly")
    html = answer_cell.outputs[0]["data"]["text/html"]
    assert "<table" in html and "200.5" in html and "243.1" in html  # a real DataFrame came back
    traces = list((tmp_path / "traces").glob("*.ipynb"))
    assert len(traces) == 1
    nbformat.validate(nbformat.read(traces[0], as_version=4))


if __name__ == "__main__":
    # Refresh the saved outputs of the committed notebook:
    #   python -m tests.notebook.test_quickstart_notebook
    import tempfile

    executed = run_quickstart(Path(tempfile.mkdtemp()))
    nbformat.write(executed, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")

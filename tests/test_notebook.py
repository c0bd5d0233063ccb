import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_notebook_plots_the_smoke_run(smoke_run, monkeypatch):
    cwd, _, _ = smoke_run
    figure = cwd / "smac_run.png"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlflow.db'}")
    monkeypatch.setenv("SMAC_FIGURE", str(figure))
    notebook = nbformat.read(ROOT / "notebooks/smac_run.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    assert figure.stat().st_size > 10_000
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "at the phase switch:" in printed and "diag/kl_online" in printed

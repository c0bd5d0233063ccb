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


def test_notebook_finds_the_store_from_the_notebooks_folder_and_skips_test_runs(smoke_run, monkeypatch, tmp_path):
    import shutil

    from conftest import SMOKE_ARGS, run_cli

    cwd, _, _ = smoke_run
    project = tmp_path / "project"
    shutil.copytree(cwd, project)
    ckpt = next(project.glob("runs/*/*/checkpoints/last.ckpt"))
    assert run_cli(project, "test", *SMOKE_ARGS, "--ckpt_path", str(ckpt)).returncode == 0  # the newest run now
    (project / "notebooks").mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SMAC_FIGURE", str(project / "figure.png"))
    notebook = nbformat.read(ROOT / "notebooks/smac_run.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(project / "notebooks")}}).execute()
    assert not (project / "notebooks/mlflow.db").exists()
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "point_robot-smac-fit-" in printed and "-test-" not in printed

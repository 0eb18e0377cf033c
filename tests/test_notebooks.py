"""Executes every notebook in `notebooks/` top to bottom with `FAST=1`.

Each notebook asserts its own headline claim in a cell, so a notebook that runs through is a
notebook whose story still holds. The notebooks run on a temporary copy: the committed
outputs (from a full run) are never overwritten. About 5 minutes on 2 CPU cores; marked
`slow`, so run them with `pytest -m slow tests/test_notebooks.py`.
"""

import pathlib
import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_six_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_sgm_from_scratch.ipynb",
        "02_implicit_score_matching.ipynb",
        "03_ncsn_annealed_langevin.ipynb",
        "04_samplers_and_solvers.ipynb",
        "05_conditional_generation.ipynb",
        "06_inverse_problems.ipynb",
    ]


@pytest.mark.slow  # about 5 minutes for the six: out of the default run (CI's 25-minute budget)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_fast(path, tmp_path, monkeypatch):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    # The kernel inherits this process's environment.
    monkeypatch.setenv("FAST", "1")
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed with FAST=1:\n{error}", pytrace=False)
    finally:
        nbformat.write(nb, copy)  # the executed copy, for a look after a failure

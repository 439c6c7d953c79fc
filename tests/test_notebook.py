"""notebooks/gd_vs_sgd.ipynb executed by a real Jupyter kernel (nbclient + ipykernel), in a fresh
folder: its cells' outputs (summary lines, a figure, the sweep's rows) and the runs in its store.
The executed notebook is left in test-output/notebook/ (scripts/notebook_screenshot.py renders it)."""
import os
import re

import pytest

from conftest import ROOT, all_runs

pytestmark = pytest.mark.slow  # a Jupyter kernel: make test-slow (README)

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


WIDGET = "application/vnd.jupyter.widget-view+json"


def outputs(cell, mime):
    found = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and mime == "stream":
            found.append(out["text"])
        elif WIDGET in out.get("data", {}):  # the progress bar (tqdm.auto's widget)
            continue
        elif mime in out.get("data", {}):
            found.append(out["data"][mime])
    return found


def test_the_notebook_runs_and_shows_its_results(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(ROOT / "notebooks" / "gd_vs_sgd.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    out_dir = ROOT / "test-output" / "notebook"
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / "gd_vs_sgd.ipynb")
    cells = {c.source.split("\n")[0]: c for c in nb.cells if c.cell_type == "code"}
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]

    gd = cells['gd = runner.run("gd_vs_sgd")']
    assert any(WIDGET in o.get("data", {}) for o in gd.outputs)  # the notebook's progress bar
    [text] = outputs(gd, "text/plain")
    assert text.startswith("finished: final_loss=") and "optim=gd lr=0.01" in text and "(optimum reached)" in text
    assert outputs(gd, "image/png") and "<img src=\"data:image/png" in outputs(gd, "text/html")[0]
    [head] = outputs(cells["gd.history.head()"], "text/plain")
    assert re.search(r"^epoch", head, re.M) and len(head.strip().splitlines()) == 2 + 5  # header, index, 5 rows
    [printed] = outputs(cells['print(f"gd:  w={gd.history.w.iloc[-1]:.6f} final_loss={gd.final_loss:.3g}")'],
                        "stream")
    assert re.search(r"gd:  w=1\.99994\d", printed) and "sgd: w=2.000000" in printed, printed

    sweep = cells['comparison = runner.sweep(optim=["gd", "minibatch", "adam"], epochs=10)']
    [html] = outputs(sweep, "text/html")
    assert html.count("<tr") == 1 + 3 and outputs(sweep, "image/png")
    assert "sweep: 3 of 3 jobs ok" in outputs(sweep, "text/plain")[0]
    [table] = outputs(cells['runner.compare(experiment="runner")[["optim.name", "status", "final_loss"]]'],
                      "text/plain")
    assert len(table.strip().splitlines()) == 4 and table.count("FINISHED") == 3
    [typo] = outputs(cells["try:"], "stream")
    assert typo.strip() == "UserError: lrr: unknown key; did you mean lr? (the keys are the schema's: runner/config.py)"

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert len(all_runs(store, "gd_vs_sgd")) == 2 and len(all_runs(store, "runner")) == 1 + 3
    assert all(r.info.status == "FINISHED" for r in all_runs(store))

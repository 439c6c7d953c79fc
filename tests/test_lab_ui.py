"""The optimizer lab's overlay in MLflow's UI: the four classic solvers swept on Rosenbrock
through the CLI to a real `mlflow server`, and the parent run's sweep_paths.png opened in a
browser (screenshot: test-output/ui/lab_sweep_paths.png)."""
import re

import pytest

from conftest import cli, client_for
from test_ui import SHOTS, needs_chromium, open_page, page, ui  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # a server process and a browser


@needs_chromium
def test_the_sweeps_overlay_shows_on_its_parent_in_the_ui(ui, page, tmp_path):  # noqa: F811
    done = cli("-m", "experiment=rosenbrock", "optim=gd,momentum,rmsprop,adam", "epochs=1000",
               f"tracking.uri={ui}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parent_id = re.search(r"parent run (\w+)", done.stdout).group(1)
    exp_id = client_for(ui).get_run(parent_id).info.experiment_id
    open_page(page, ui, f"#/experiments/{exp_id}/runs/{parent_id}/artifacts/sweep_paths.png"
                        "?workflowType=machine_learning", "sweep_paths.png")
    page.screenshot(path=str(SHOTS / "lab_sweep_paths.png"))  # first: what it showed, pass or fail
    # the viewer shows the PNG as an <img> of a blob URL: one image as wide as the PNG has loaded
    page.wait_for_function("() => [...document.images].some(i => i.naturalWidth >= 700)")
    page.screenshot(path=str(SHOTS / "lab_sweep_paths.png"))

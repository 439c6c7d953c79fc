"""A real `mlflow server` (sqlite backend, proxied artifacts) on 127.0.0.1, started once for the
module: a preset run and two sweeps log to it over HTTP through the CLI; then MLflow's own UI,
which that server serves, as a person sees it in headless Chromium (Debian's package, driven by
Playwright). Screenshots go to test-output/ui/. At the end the server and every process it
started are stopped, each by its own PID."""
import json
import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from conftest import ROOT, all_runs, cli, client_for, free_port, stop, wait_healthy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "test-output" / "ui"
pytestmark = pytest.mark.slow  # a server process (~15 s to answer) and a browser
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium "
                             "(.ci/run does) to run the browser tests")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """http://127.0.0.1:PORT of a real `mlflow server`: the store and its UI."""
    root = tmp_path_factory.mktemp("server")
    port, log = free_port(), root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, log)
        yield base
    finally:
        assert stop(proc, grace=5) == [], "mlflow server processes still alive"  # SIGKILL after 5 s


@pytest.fixture(scope="module")
def store(ui, tmp_path_factory):
    """A preset run, a sweep over lr and a sweep over seeds and optimizers, all through the CLI
    (launched from an empty folder) to the server."""
    cwd = tmp_path_factory.mktemp("cli")
    runs = [("experiment=gd_vs_sgd",), ("-m", "lr=1e-3,1e-2", "epochs=20"),
            ("-m", "seed=0,1", "optim=gd,adam", "lr=0.05", "epochs=20")]
    out = {}
    for args in runs:
        done = cli(*args, f"tracking.uri={ui}", cwd=cwd)
        assert done.returncode == 0, done.stderr
        out[args] = done.stdout
    return {"cwd": cwd, "uri": ui, "lr_sweep": out[runs[1]], "seed_sweep": out[runs[2]]}


def test_a_sweep_logs_to_the_mlflow_server(store):
    assert not (store["cwd"] / "mlflow.db").exists()  # nothing went to the default store
    exp_id, parent, children = sweep_parent(store, store["lr_sweep"])
    assert parent.info.run_name == "sweep lr=1e-3,1e-2 epochs=20"  # where it was stored is no part of it
    runs = [r for r in all_runs(store["uri"]) if r.info.experiment_id == exp_id]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)
    client = client_for(store["uri"])
    for run in children:
        assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "loss"),
                                       key=lambda m: m.step)] == list(range(21))
        assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    best = min(children, key=lambda r: r.data.metrics["final_loss"])
    assert parent.data.tags["runner.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_final_loss"] == best.data.metrics["final_loss"]
    assert "sweep_loss_curves.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]


@pytest.fixture(scope="module")
def page(ui):
    playwright = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        # the flags keep Chromium off the network: this machine has none beyond 127.0.0.1
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1500, "height": 950})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def open_page(page, ui: str, fragment: str, wait_for: str) -> str:
    """Open UI_BASE/#fragment, wait until `wait_for` shows, close MLflow's assistant panel."""
    page.goto(f"{ui}/{fragment}")
    page.get_by_text(wait_for, exact=False).first.wait_for()
    close = page.locator("button[aria-label='Close']")
    if close.count():
        close.first.click()
    # Plotly animates its drawing after the data came (the text above): for the screenshots and the
    # plot's text. No event marks its end, and the UI polls the server, so the network never idles.
    page.wait_for_timeout(1500)
    return page.inner_text("body")


def sweep_parent(store, line_source: str):
    """(experiment id, parent run, children) of the sweep whose stdout is given."""
    parent_id = re.search(r"parent run (\w+)", line_source).group(1)
    c = client_for(store["uri"])
    parent = c.get_run(parent_id)
    kids = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return parent.info.experiment_id, parent, kids


@needs_chromium
def test_the_experiment_opens_on_its_runs_and_a_sweep_folds_its_children(store, ui, page):
    exp_id, parent, kids = sweep_parent(store, store["lr_sweep"])
    text = open_page(page, ui, f"#/experiments/{exp_id}/runs?workflowType=machine_learning", "Run Name")
    assert "No data available" not in text and "Traces\n0" not in text  # not the GenAI overview
    assert parent.info.run_name in text and "lr=0.01" not in text  # children folded under it
    row = page.locator("[role=row]", has_text=parent.info.run_name)
    row.locator("button").first.click()  # the [+] beside the parent's name
    page.get_by_text("lr=0.001", exact=True).wait_for()
    text = page.inner_text("body")
    page.screenshot(path=str(SHOTS / "runs_table.png"))
    assert {"lr=0.001", "lr=0.01"} <= {k.info.run_name for k in kids}
    assert "lr=0.01" in text
    # the Dataset column: name (digest), the same for both children (same data); Models: `model`
    digests = re.findall(r"synthetic_linear \((\w{8})\)", text)
    assert len(digests) == 2 and digests[0] == digests[1], text
    assert page.get_by_text("model", exact=True).count() == 2


@needs_chromium
def test_the_sweep_link_charts_the_swept_param_against_final_loss(store, ui, page):
    link = re.search(r"charts: (\S+)", store["lr_sweep"]).group(1)
    fragment = link[len(f"{urlsplit(link).scheme}://{urlsplit(link).netloc}/"):]
    text = open_page(page, ui, fragment, "lr vs. final_loss")
    page.screenshot(path=str(SHOTS / "sweep_charts.png"))
    assert "Parallel Coordinates" in text and "2 matching runs" in text
    assert "lr=0.001" in text and "lr=0.01" in text


@needs_chromium
def test_the_compare_page_of_a_sweep_plots_the_swept_param(store, ui, page):
    exp_id, parent, kids = sweep_parent(store, store["seed_sweep"])
    ids = json.dumps([k.info.run_id for k in kids]).replace(" ", "")
    text = open_page(page, ui, f"#/compare-runs?runs={ids}&experiments=[\"{exp_id}\"]", "Parallel Coordinates")
    page.screenshot(path=str(SHOTS / "compare.png"))
    plot = page.locator(".js-plotly-plot").first.inner_text()
    # the params that differ are exactly the swept ones (no per-run bookkeeping), and the metric
    # is `loss`, whose latest value is final_loss: the first one each run logs
    assert "optim.name" in plot and "seed" in plot and "loss" in plot
    assert "optimal_loss" not in plot and "run_name" not in text


@needs_chromium
def test_a_parent_describes_its_children_ranked_with_their_spread_over_seeds(store, ui, page):
    exp_id, parent, kids = sweep_parent(store, store["seed_sweep"])
    text = open_page(page, ui, f"#/experiments/{exp_id}/runs/{parent.info.run_id}?workflowType=machine_learning",
                     "ranked by")
    page.screenshot(path=str(SHOTS / "sweep_parent.png"))
    ranked = [k.info.run_name for k in sorted(kids, key=lambda k: k.data.metrics["final_loss"])]
    positions = [text.index(name) for name in ranked]
    assert positions == sorted(positions), (ranked, text[:2000])
    assert "optim:gd" in text and "optim:adam" in text and "mean final_loss" in text
    link = page.get_by_role("link", name=ranked[0]).first
    assert link.get_attribute("href").endswith(f"/runs/{next(k for k in kids if k.info.run_name == ranked[0]).info.run_id}")

"""MLflow's UI as a person clicks it. Started once for the module the way `make ui` starts it
(`python -m runner.tracking.links`, which notes its address beside mlflow.db and becomes `mlflow
ui`); then, from an empty folder, the runs of the issue through the real CLI into that store; then
headless Chromium (Debian's package, driven by Playwright, a fresh profile) opens what the runner
printed and clicks. Screenshots go to test-output/ui/. At the end the UI and every process it
started are stopped, each by its own PID."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, cli, client_for, free_port, stop, wait_healthy
from runner.tracking import links

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "test-output" / "ui"
pytestmark = pytest.mark.slow  # a UI process (~15 s to answer), five CLI runs and a browser
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium "
                                    "(.ci/run does) to run the browser tests")
RUNS = {"lab": ("-m", "experiment=rosenbrock", "optim=gd,momentum,rmsprop,adam", "epochs=1000"),
        "single": ("experiment=gd_vs_sgd", "epochs=20"),
        "lr": ("-m", "lr=1e-6,1e-4", "epochs=20"),
        "optim": ("-m", "experiment=gd_vs_sgd", "optim=gd,sgd,minibatch,adam", "epochs=20"),
        "seeds": ("-m", "experiment=gd_vs_sgd", "seed=0,1", "optim=gd,adam", "epochs=20")}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """{"ui": http://127.0.0.1:PORT, "uri": the sqlite store, "out": each run's stdout}."""
    cwd = tmp_path_factory.mktemp("cli")
    port, log = free_port(), cwd / "ui.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(log, "w") as f:  # what `make ui PORT=...` runs
        proc = subprocess.Popen([sys.executable, "-m", "runner.tracking.links", "--port", str(port),
                                 "--store", str(cwd / "mlflow.db")], cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, log)
        assert (cwd / links.UI_URL_FILE).read_text().strip() == base
        out = {}
        for key, args in RUNS.items():
            done = cli(*args, cwd=cwd)
            assert done.returncode == 0, done.stderr
            out[key] = done.stdout
        yield {"ui": base, "uri": f"sqlite:///{cwd / 'mlflow.db'}", "out": out, "log": log}
    finally:
        assert stop(proc, grace=5) == [], "mlflow ui processes still alive"  # SIGKILL after 5 s


@pytest.fixture(scope="module")
def browser(store):
    playwright = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        # the flags keep Chromium off the network: this machine has none beyond 127.0.0.1
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh profile for each test: no localStorage, no table state left by another."""
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def settle(page, wait_for: str) -> str:
    """Wait until `wait_for` shows, close MLflow's assistant panel, return the page's text."""
    page.get_by_text(wait_for, exact=False).first.wait_for()
    close = page.locator("button[aria-label='Close']")
    if close.count():
        close.first.click()
    # Plotly animates its drawing after the data came (the text above): for the screenshots and the
    # plot's text. No event marks its end, and the UI polls the server, so the network never idles.
    page.wait_for_timeout(1500)
    return page.inner_text("body")


def printed(stdout: str, label: str) -> str:
    return re.search(rf"{label}: (http\S+)", stdout).group(1)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / name))


def test_every_printed_link_points_at_the_ui_that_runs(store):
    for key, out in store["out"].items():
        link = printed(out, "open" if key == "single" else "charts")
        assert link.startswith(store["ui"] + "/#/experiments/") and "workflowType=machine_learning" in link, out
    assert len(re.findall(r"^open: ", store["out"]["single"], re.M)) == 1
    assert "open: " not in store["out"]["optim"]  # a sweep prints one link, at its end


def test_make_ui_prints_each_experiment_s_runs_and_they_open_on_the_runs_table(store, page):
    lines = links.experiment_links(store["uri"], store["ui"])
    assert [line.split(":")[0].strip() for line in lines] == ["gd_vs_sgd", "runner", "lab"], lines
    page.goto(lines[0].split(": ", 1)[1])
    text = settle(page, "Run Name")
    shot(page, "experiment_runs.png")
    assert "No data available" not in text and "Traces\n0" not in text  # not the GenAI overview
    # two sweeps of one preset told apart within what the runs table shows of a name
    names = [n for n in re.findall(r"^sweep .*$", text, re.M)]
    assert len({n[:30] for n in names}) == 2, names


def test_in_the_list_one_switch_makes_every_experiment_click_open_its_runs(store, page):
    """README's way inside the UI: from make ui's URL, press Model training once (it stays in the
    browser's storage); then a click on an experiment opens its runs."""
    url = re.search(r"MLflow UI: (\S+)", store["log"].read_text()).group(1)
    assert url == f"{store['ui']}/#/experiments"
    page.goto(url)
    settle(page, "gd_vs_sgd")
    page.get_by_text("Model training", exact=True).first.click()
    page.get_by_role("link", name="gd_vs_sgd").first.click()
    text = settle(page, "Run Name")
    shot(page, "experiment_clicked.png")
    assert "/runs" in page.url and "No data available" not in text


def children_ticked(page, parent_prefix: str, names) -> None:
    """On an experiment's runs table: the [+] beside the sweep's parent, then its jobs' boxes."""
    row = page.locator("[role=row]", has_text=parent_prefix).first
    row.locator("button").first.click()
    for name in names:
        job = page.locator("[role=row]", has=page.get_by_text(name, exact=True)).first
        job.locator("input[type=checkbox]").first.click()


@needs_chromium
@pytest.mark.parametrize("sweep, first", [("optim", ["Swept: optim.name"]),
                                          ("seeds", ["Swept: optim.name", "Swept: seed"])])
def test_compare_on_a_sweep_plots_the_swept_keys_first(store, page, sweep, first):
    lines = links.experiment_links(store["uri"], store["ui"])
    page.goto(lines[0].split(": ", 1)[1])
    settle(page, "Run Name")
    parent = re.search(r"parent run (\w+)", store["out"][sweep]).group(1)
    c = client_for(store["uri"])
    kids = c.search_runs([c.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    prefix = "sweep optim=gd,sgd" if sweep == "optim" else "sweep seed=0,1"
    children_ticked(page, prefix, [k.info.run_name for k in kids])
    shot(page, f"ticked_{sweep}.png")
    page.get_by_role("button", name="Compare").first.click()
    text = settle(page, "Parallel Coordinates")
    shot(page, f"compare_{sweep}.png")
    assert f"Comparing {len(kids)} Runs" in text and all(k.info.run_name in text for k in kids)
    plot = page.locator(".js-plotly-plot").first.inner_text()
    assert all(key in plot for key in first), plot


@needs_chromium
def test_the_sweep_link_shows_its_jobs_loss_curves_and_swept_param(store, page):
    page.goto(printed(store["out"]["lr"], "charts"))
    text = settle(page, "lr vs. final_loss")
    shot(page, "sweep_charts.png")
    assert "2 matching runs" in text and "lr=1e-06" in text and "lr=0.0001" in text
    assert "The sweep: loss curves" in text


@needs_chromium
def test_a_single_run_s_link_opens_its_page(store, page):
    link = printed(store["out"]["single"], "open")
    page.goto(link)
    text = settle(page, "final_loss")
    shot(page, "single_run.png")
    run = client_for(store["uri"]).get_run(link.rsplit("/", 1)[1].split("?")[0])
    assert run.info.run_name in text


@needs_chromium
def test_a_seed_sweep_that_cannot_vary_says_so(store, page):
    out = store["out"]["seeds"]
    assert "note: the seed changes nothing here" in out
    parent = re.search(r"parent run (\w+)", out).group(1)
    run = client_for(store["uri"]).get_run(parent)
    page.goto(links.run_link(store["ui"], run.info.experiment_id, parent))
    text = settle(page, "ranked by")
    shot(page, "seed_sweep_parent.png")
    assert "Note: the seed changes nothing here" in text


@needs_chromium
def test_the_lab_s_overlay_opens_from_the_experiment_list_by_clicks(store, page):
    """The optimizer lab's "different solvers" figure, as a teacher finds it: make ui's page, Model
    training, the lab experiment, the sweep's parent, Artifacts, sweep_paths.png."""
    parent = re.search(r"parent run (\w+)", store["out"]["lab"]).group(1)
    name = client_for(store["uri"]).get_run(parent).info.run_name
    page.goto(re.search(r"MLflow UI: (\S+)", store["log"].read_text()).group(1))
    settle(page, "gd_vs_sgd")
    page.get_by_text("Model training", exact=True).first.click()
    page.get_by_role("link", name="lab", exact=True).first.click()
    settle(page, "Run Name")
    page.get_by_role("link", name=name).first.click()
    settle(page, "Artifacts")
    page.get_by_role("tab", name="Artifacts").first.click()
    page.get_by_text("sweep_paths.png", exact=True).first.click()
    # the viewer shows the PNG as an <img> of a blob URL: one image as wide as the PNG has loaded
    page.wait_for_function("() => [...document.images].some(i => i.naturalWidth >= 700)")
    text = settle(page, "sweep_paths.png")
    shot(page, "lab_sweep_paths.png")
    assert parent in page.url and "sweep_loss_curves.png" in text

"""device=cuda for real. Skipped where no CUDA GPU is visible (CI has none); run on a GPU
machine with `pytest tests/test_cuda.py`."""
import pytest
import torch

from conftest import all_runs, cli, client_for, make_cfg
from runner import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def losses(uri, run_id):
    hist = client_for(uri).get_metric_history(run_id, "loss")
    return [m.value for m in sorted(hist, key=lambda m: m.step)]


def test_cli_run_on_cuda_is_tracked_and_matches_the_cpu_run(tmp_path):
    common = ["experiment=mlp_adam", "epochs=50", "dtype=float64"]
    for device in ("cuda", "cpu"):
        out = cli(*common, f"device={device}", f"run_name={device}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {r.info.run_name: r for r in all_runs(uri)}
    assert runs["cuda"].info.status == "FINISHED"
    assert runs["cuda"].data.tags["runner.device_resolved"].startswith("cuda:0 ")
    assert runs["cpu"].data.tags["runner.device_resolved"] == "cpu"
    # the same seed builds the same weights on either device (initialised on the cpu, then moved)
    gpu, cpu = losses(uri, runs["cuda"].info.run_id), losses(uri, runs["cpu"].info.run_id)
    assert len(gpu) == len(cpu) == 6
    assert gpu == pytest.approx(cpu, rel=1e-9)  # float64: only the order of the sums differs


def test_textbook_gd_on_cuda_matches_the_closed_form(shared_store):
    result = train.run(make_cfg("experiment=gd_vs_sgd", "device=cuda", f"tracking.uri={shared_store}"))
    w = [m for m in client_for(shared_store).get_metric_history(result.run_id, "w") if m.step == 100]
    assert w[0].value == pytest.approx(2 - (1 - 0.01 * 2 / 3 * 14) ** 100, rel=1e-13)


def test_gradient_check_on_cuda(shared_store):
    for model in ("line", "mlp"):
        result = train.run(make_cfg(f"model={model}", "device=cuda", "epochs=5", "check_grad=true",
                                    f"tracking.uri={shared_store}"))
        assert result.extra["grad_check_max_rel_diff"] < 1e-12


def test_deep_mlp_on_cuda_matches_the_cpu_and_its_gradients_check(shared_store):
    common = ["experiment=mlp_adam", "model.hidden=[64,32,16]", "model.activation=tanh", "dtype=float64",
              "epochs=30", "check_grad=true", f"tracking.uri={shared_store}"]
    runs = {d: train.run(make_cfg(*common, f"device={d}")) for d in ("cuda", "cpu")}
    assert runs["cuda"].extra["grad_check_max_rel_diff"] < 1e-12
    assert [v for _, v in runs["cuda"].curve] == pytest.approx([v for _, v in runs["cpu"].curve], rel=1e-9)


def test_digits_classification_on_cuda(shared_store):
    result = train.run(make_cfg("experiment=digits_mlp", "device=cuda", f"tracking.uri={shared_store}"))
    assert result.extra["test_accuracy"] >= 0.95


def test_a_sweep_of_cuda_jobs(tmp_path):
    out = cli("-m", "experiment=gd_vs_sgd", "device=cuda", "lr=0.01,0.02", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["runner.device_resolved"].startswith("cuda:0") for r in children)


def test_real_out_of_gpu_memory_is_one_line_and_a_failed_run(tmp_path):
    # 100k samples x 300k hidden units of float32: a 120 GB activation, more than any one GPU has
    out = cli("model=mlp", "model.hidden=300000", "dataset=random_mlp", "dataset.n_samples=100000",
              "dataset.in_features=1", "device=cuda", "epochs=1", cwd=tmp_path)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and "out of GPU memory" in lines[0], out.stderr[-2000:]
    [run] = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FAILED" and run.info.run_id in lines[0]


@pytest.mark.parametrize("log_every", [1, 1000])  # caught by the record, or by the batch-loss check
def test_divergence_on_cuda_stops_at_the_same_epoch_as_on_the_cpu(tmp_path, log_every):
    epochs = {}
    for device in ("cuda", "cpu"):
        out = cli("lr=100", "epochs=100", "dtype=float64", f"log_every={log_every}", f"device={device}",
                  f"run_name={device}", cwd=tmp_path)
        assert out.returncode == 1 and "diverged at epoch" in out.stderr, out.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for run in all_runs(uri):
        epoch = int(run.data.tags["runner.failed_epoch"])
        steps = [m.step for m in client_for(uri).get_metric_history(run.info.run_id, "loss")]
        assert run.info.status == "FAILED" and steps == list(range(0, epoch, log_every))
        epochs[run.info.run_name] = epoch
    assert epochs["cuda"] == epochs["cpu"] > 1

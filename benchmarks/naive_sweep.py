"""The naive baseline for P4: a plain Hydra app that trains what `experiment=gd_vs_sgd` trains
(a line without bias, hand-written gradient descent, mse, float64) and logs to MLflow the
obvious way, one fluent `mlflow.log_metric` call per point.

    python benchmarks/naive_sweep.py -m lr=0.005,0.01 tracking_uri=sqlite:////tmp/x/mlflow.db

It logs the same metric names at the same steps as the runner with log_every=1: loss, w and b
at every epoch from 0 to `epochs`, then final_loss and train_seconds at step `epochs`.
"""
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import mlflow
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class NaiveConfig:
    data: str = str(ROOT / "experiments" / "data" / "gd_vs_sgd.csv")
    lr: float = 0.01
    epochs: int = 100
    w0: float = 1.0  # as the preset: init=constant, value=1.0, bias=false
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "naive"


ConfigStore.instance().store(name="naive", node=NaiveConfig)


@hydra.main(version_base="1.3", config_path=None, config_name="naive")
def main(cfg: DictConfig) -> float:
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment_name)
    data = np.loadtxt(cfg.data, delimiter=",", skiprows=1, ndmin=2)  # header x,y
    X = torch.from_numpy(data[:, :-1]).to(torch.float64)  # (N, 1)
    y = torch.from_numpy(data[:, -1:]).to(torch.float64)  # (N, 1)
    w = torch.full((1, 1), cfg.w0, dtype=torch.float64)
    with mlflow.start_run():
        mlflow.log_params(OmegaConf.to_container(cfg))

        def log(step: int) -> float:
            loss = (X @ w - y).square().mean().item()
            mlflow.log_metric("loss", loss, step=step)
            mlflow.log_metric("w", w.item(), step=step)
            mlflow.log_metric("b", 0.0, step=step)  # no bias: the line goes through the origin
            return loss

        start = time.perf_counter()
        loss = log(0)
        for epoch in range(1, cfg.epochs + 1):
            grad = X.T @ ((X @ w - y) * (2.0 / X.shape[0]))  # d mse / dw, (1, 1)
            w -= cfg.lr * grad
            loss = log(epoch)
        seconds = time.perf_counter() - start
        mlflow.log_metric("final_loss", loss, step=cfg.epochs)
        mlflow.log_metric("train_seconds", seconds, step=cfg.epochs)
    print(f"naive: final_loss={loss:.6g} lr={cfg.lr:g} epochs={cfg.epochs} train_seconds={seconds:.3f}",
          flush=True)
    return loss


if __name__ == "__main__":
    main()

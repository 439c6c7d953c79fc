"""The child process (`bench.py --child P3|P6|P7|GPU`): in-process measurements of the runner's
train.run against bare torch loops written here, printed as one JSON line. It imports torch and
the runner; the parent never does."""
import gc
import json
import time
from pathlib import Path
from typing import Callable, Dict, List

from bench_common import P6_LINE_EPOCHS, P6_MLP_EPOCHS, P7_TEST, P7_TRAIN, ROOT, med


def compose(*overrides: str):
    """The config `python -m runner OVERRIDES` composes (as tests/conftest.py does)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from runner import config

    config.register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def run_runner(cfg, workdir: Path, tracker=None):
    """(wall seconds of train.run, its Result): tracked to the child's store, no progress bar;
    through `tracker` (a tracking process) or in-process."""
    from runner import train

    start = time.perf_counter()
    result = train.run(cfg, train.Job(launch_dir=str(workdir), quiet=True, tracker=tracker))
    return time.perf_counter() - start, result


def child_p3(args) -> dict:
    store = f"tracking.uri=sqlite:///{args.dir}/mlflow.db"
    base = ["experiment=csv_linreg", f"dataset.path={args.csv}", "device=cpu", "epochs=1000", store]
    cfgs = {"every": compose(*base, "log_every=1"), "once": compose(*base, "log_every=1000")}
    from runner.tracking import service

    tracker = service.get()  # as `python -m runner` records: through its tracking process
    for cfg in cfgs.values():
        run_runner(cfg, args.dir, tracker)  # warm-up: imports, the store, the experiment
    from runner.session import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)  # as `python -m runner` runs (runner.session)
    out: Dict[str, List[float]] = {}
    for _ in range(max(7, 2 * args.repeats + 1)):
        for name, cfg in cfgs.items():
            wall, result = run_runner(cfg, args.dir, tracker)
            out.setdefault(name, []).append(wall)
            out.setdefault(f"{name}_train", []).append(result.train_seconds)
    return out


def bare_mlp(epochs: int, log_every: int, device: str = "cpu", n: int = 64, d_in: int = 1000,
             hidden: int = 100, d_out: int = 10, warmup: int = 0) -> float:
    """Seconds for the textbook loop: mlp without bias, sse, Adam lr 1e-4; the whole-set loss
    (one .item()) at epoch 0 and every log_every epochs, as the runner records it."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    X, y = torch.randn(n, d_in, device=device), torch.randn(n, d_out, device=device)  # (N, in), (N, out)
    model = nn.Sequential(nn.Linear(d_in, hidden, bias=False), nn.ReLU(),
                          nn.Linear(hidden, d_out, bias=False)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad()
        (model(X) - y).square().sum().backward()
        opt.step()

    def record() -> float:
        with torch.no_grad():
            return (model(X) - y).square().sum().item()

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    record()
    for epoch in range(1, epochs + 1):
        step()
        if epoch % log_every == 0 or epoch == epochs:
            record()
    sync()
    return time.perf_counter() - start


def bare_line(csv_path: str, epochs: int, log_every: int, lr: float = 1e-4, epoch_loss: bool = True) -> float:
    """Seconds for the vectorized textbook loop: ŷ = X·w + b, the mse of the epoch, analytic mse
    gradients, w = b = 0, float64; at epoch 0 and every log_every epochs it reads what the runner
    records for a line: the whole-set loss, w and b. epoch_loss=False drops the epoch's loss (the
    runner computes it to stop a diverging run at once; a textbook loop computes it to print it)."""
    import numpy as np
    import torch

    data = np.loadtxt(csv_path, delimiter=",", skiprows=1, ndmin=2)
    X = torch.from_numpy(data[:, :1]).to(torch.float64)  # (N, 1)
    y = torch.from_numpy(data[:, 1:]).to(torch.float64)  # (N, 1)
    w, b = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    scale = 2.0 / X.shape[0]

    def record() -> tuple:
        return (X @ w + b - y).square().mean().item(), w.item(), b.item()

    start = time.perf_counter()
    record()
    for epoch in range(1, epochs + 1):
        r = X @ w + b - y  # ŷ - y, (N, 1)
        if epoch_loss:
            loss = r.square().mean()  # noqa: F841 (the textbook's `loss = mse(ŷ, y)`)
        g = r * scale  # dL/dŷ, (N, 1)
        w -= lr * (X.T @ g)
        b -= lr * g.sum(0)
        if epoch % log_every == 0 or epoch == epochs:
            record()
    return time.perf_counter() - start


def child_p6(args) -> dict:
    store = f"tracking.uri=sqlite:///{args.dir}/mlflow.db"
    mlp = compose("experiment=mlp_adam", "device=cpu", f"epochs={P6_MLP_EPOCHS}", "log_every=10", store)
    line = compose("experiment=csv_linreg", f"dataset.path={args.csv}", "device=cpu",
                   f"epochs={P6_LINE_EPOCHS}", "log_every=10", store)
    arms = {"mlp_runner": lambda: run_runner(mlp, args.dir)[1].train_seconds,
            "mlp_bare": lambda: bare_mlp(P6_MLP_EPOCHS, 10),
            "line_runner": lambda: run_runner(line, args.dir)[1].train_seconds,
            "line_bare": lambda: bare_line(args.csv, P6_LINE_EPOCHS, 10),
            "line_bare_no_loss": lambda: bare_line(args.csv, P6_LINE_EPOCHS, 10, epoch_loss=False)}
    return warm_then_rounds(arms, args.repeats)


def warm_then_rounds(arms: Dict[str, Callable[[], float]], repeats: int) -> Dict[str, List[float]]:
    """One warm-up call of each arm, then at least 5 rounds of all arms in turn (in one child
    process, so the arms share its imports and caches)."""
    for arm in arms.values():
        arm()
    out: Dict[str, List[float]] = {}
    for _ in range(max(5, repeats)):
        for name, arm in arms.items():
            out.setdefault(name, []).append(arm())
    return out


def write_random_mnist(folder: Path) -> None:
    """MNIST's four IDX files, random pixels and labels: the shapes and format of the real thing."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, shape in (("train-images-idx3-ubyte", (P7_TRAIN, 28, 28)), ("train-labels-idx1-ubyte", (P7_TRAIN,)),
                        ("t10k-images-idx3-ubyte", (P7_TEST, 28, 28)), ("t10k-labels-idx1-ubyte", (P7_TEST,))):
        a = rng.integers(0, 256 if len(shape) == 3 else 10, shape, dtype=np.uint8)
        header = (0x800 + len(shape)).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
        (folder / name).write_bytes(header + a.tobytes())


def bare_mnist(folder: Path) -> float:
    """Seconds for the textbook epoch of the mnist_mlp network: shuffled batches of 200, SGD lr 0.01
    momentum 0.9, cross-entropy; before and after it, what the runner records for a classifier (the
    whole-set loss and accuracy, the test loss and accuracy, each read with .item())."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn.functional import cross_entropy

    def read(name: str, header: int, width: int):
        a = np.fromfile(folder / name, np.uint8, offset=header).reshape(-1, width)
        return torch.from_numpy((a.astype(np.float32) / 255 - 0.1307) / 0.3081)

    X, Xt = read("train-images-idx3-ubyte", 16, 784), read("t10k-images-idx3-ubyte", 16, 784)  # (N, 784)
    y, yt = (torch.from_numpy(np.fromfile(folder / n, np.uint8, offset=8).astype(np.int64))
             for n in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)

    def record() -> None:
        with torch.no_grad():
            for inputs, labels in ((X, y), (Xt, yt)):
                out = model(inputs)  # (N, 10)
                cross_entropy(out, labels).item(), (out.argmax(1) == labels).double().mean().item()

    start = time.perf_counter()
    record()
    for idx in torch.randperm(len(X), generator=gen).split(200):
        opt.zero_grad()
        cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    record()
    return time.perf_counter() - start


def child_p7(args) -> dict:
    from runner import data

    folder = args.dir / "mnist"
    write_random_mnist(folder)
    cfg = compose("experiment=mnist_mlp", f"dataset.root={folder}", "epochs=1", "device=cpu",
                  f"tracking.uri=sqlite:///{args.dir}/mlflow.db")

    def read() -> float:
        start = time.perf_counter()
        data.build(cfg, 0)  # the one validation step reads and checks the files, once
        return time.perf_counter() - start

    arms = {"runner": lambda: run_runner(cfg, args.dir)[1].train_seconds, "bare": lambda: bare_mnist(folder),
            "read": read}
    return warm_then_rounds(arms, args.repeats)


def child_gpu(args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    size = dict(n=8192, d_in=1000, hidden=1000, d_out=10)
    cuda_steps, cpu_steps = 200, 5
    cuda_s = med([bare_mlp(cuda_steps, cuda_steps, "cuda", warmup=10, **size) for _ in range(3)])
    cpu_s = med([bare_mlp(cpu_steps, cpu_steps, "cpu", warmup=1, **size) for _ in range(3)])
    # the runner's own loop on cuda, against the bare cuda loop with the same logging
    epochs = 500
    cfg = compose("experiment=mlp_adam", "device=cuda", f"epochs={epochs}", "log_every=10",
                  "dataset.n_samples=8192", "model.hidden=1000",
                  f"tracking.uri=sqlite:///{args.dir}/mlflow.db")
    run_runner(cfg, args.dir)  # warm-up
    runner_s = med([run_runner(cfg, args.dir)[1].train_seconds for _ in range(3)])
    bare_s = med([bare_mlp(epochs, 10, "cuda", warmup=10, **size) for _ in range(3)])
    # a small network (the preset's 64x1000 -> 100 -> 10), where each step is a few µs of GPU
    # work and waiting for the GPU every epoch (the divergence check) would show
    small = compose("experiment=mlp_adam", "device=cuda", f"epochs={epochs}", "log_every=10",
                    f"tracking.uri=sqlite:///{args.dir}/mlflow.db")
    run_runner(small, args.dir)
    small_runner_s = med([run_runner(small, args.dir)[1].train_seconds for _ in range(3)])
    small_bare_s = med([bare_mlp(epochs, 10, "cuda", warmup=10) for _ in range(3)])
    return {"device": torch.cuda.get_device_name(0), "cuda_steps_s": cuda_steps / cuda_s,
            "cpu_steps_s": cpu_steps / cpu_s, "runner_cuda_s": runner_s, "bare_cuda_s": bare_s,
            "runner_epochs": epochs,
            "small_runner_s": small_runner_s, "small_bare_s": small_bare_s}


def child(args) -> None:
    args.dir = Path(args.dir)
    if args.child in ("P3", "P6", "P7"):
        import torch

        # Both arms single-threaded: with other work on the 2 cores, OpenMP's barriers turn a
        # 1 ms step into 10-50 ms at random, which swamps any loop overhead. At these sizes
        # (64x1000 @ 1000x100 and smaller) a second thread gains nothing on an idle machine.
        torch.set_num_threads(1)
    out = {"P3": child_p3, "P6": child_p6, "P7": child_p7, "GPU": child_gpu}[args.child](args)
    print(json.dumps(out))

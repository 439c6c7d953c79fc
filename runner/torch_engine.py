"""The torch engine: data, model and optimizer on the device, trained in one loop.

torch is imported inside the functions, not at the top: engine=numpy must run without it.
"""
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runner import config, data
from runner.config import Diverged, UserError
from runner.trace import Log, Trace, optimum as _optimum, record_point as _record_point


def save_torch(state: dict, folder: Path) -> None:
    import torch

    torch.save(state, folder / "model.pt")  # a state_dict: loads with weights_only=True


def torch_train(cfg: Any, dataset: data.Dataset, log: Log, set_tags, device, quiet: bool = False) -> Trace:
    """The loop: epochs of batches; the whole-set loss (and w, b, accuracy, gap) every
    `log_every` epochs and at the last."""
    import torch

    from runner import devices, models, optim

    set_tags({"runner.device_resolved": devices.describe(device), "runner.torch_version": torch.__version__})
    p = _build(cfg, dataset, device)
    optimum = _optimum(cfg, lambda: models.optimal_loss(p.X, p.y, cfg.model.bias, p.loss))
    trace = Trace()
    record = functools.partial(_evaluate, p, trace, log, optimum)

    def grad_check(epoch: int) -> None:
        if cfg.check_grad:
            _grad_check(cfg, models.gradient_check(p.model, p.loss, p.X, p.y), epoch, log, trace)

    # plain locals: a DictConfig lookup costs ~20 µs, more than a whole epoch of a small line
    epochs, log_every, batch_size, shuffle = cfg.epochs, cfg.log_every, cfg.optim.batch_size, cfg.optim.shuffle
    model, loss, optimizer, guard = p.model, p.loss, p.optimizer, _Guard(device)
    grad_check(0)
    # timed from here: not the device's start-up (a first CUDA call takes seconds), the copy of
    # the data, the model's build or the closed-form optimum
    start = time.perf_counter()
    record(0)
    for epoch in _progress(epochs, quiet):
        for xb, yb in optim.batches(p.X, p.y, batch_size, shuffle, p.shuffle_gen):
            batch_loss = model.fill_gradients(loss, xb, yb)
            optimizer.step()
        guard.add(epoch, batch_loss)
        if epoch % log_every == 0 or epoch == epochs:
            guard.check()  # never record a point after the loss blew up
            record(epoch)
    trace.seconds = time.perf_counter() - start  # the last record's .item() waited for the GPU
    grad_check(epochs)
    _finish(p, trace)
    return trace


@dataclass
class _Parts:
    """What the torch loop works on, on its device."""
    X: Any
    y: Any
    X_test: Any
    y_test: Any
    n_classes: int
    model: Any
    optimizer: Any
    shuffle_gen: Any
    loss: str


def _build(cfg: Any, dataset: data.Dataset, device) -> _Parts:
    """The data as tensors on the device, the model (seeded), its optimizer, the shuffle's own
    random stream (apart from the init's)."""
    import torch

    from runner import models, optim

    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, str(cfg.dtype))
    X, y, X_test, y_test = (_tensor(a, dtype, device) for a in
                            (dataset.X, dataset.y, dataset.X_test, dataset.y_test))
    model = models.build(cfg.model, X.shape[1], dataset.out_features, dtype, device)
    optimizer = optim.build(cfg.optim, list(model.parameters()), cfg.lr)
    return _Parts(X, y, X_test, y_test, dataset.n_classes, model, optimizer,
                  torch.Generator().manual_seed(cfg.seed + 1), cfg.loss)


def _evaluate(p: _Parts, trace: Trace, log: Log, optimum: Optional[float], epoch: int) -> None:
    """One record: the whole-set loss (w, b and the gap where they apply; accuracy and the test
    set's loss and accuracy for classification). Diverged if the loss is NaN or infinite."""
    import torch

    from runner import models

    with torch.no_grad():
        pred = p.model(p.X)
        value = models.loss_value(p.loss, pred, p.y).item()
        if not math.isfinite(value):
            raise Diverged(epoch, "loss", value)
        _record_point(trace, log, epoch, value, p.model.slope_intercept(), optimum)
        if p.n_classes:
            log("accuracy", (pred.argmax(1) == p.y).double().mean().item(), epoch)
            if p.X_test is not None:
                test_pred = p.model(p.X_test)
                log("test_loss", models.loss_value(p.loss, test_pred, p.y_test).item(), epoch)
                log("test_accuracy", (test_pred.argmax(1) == p.y_test).double().mean().item(), epoch)


def _finish(p: _Parts, trace: Trace) -> None:
    """After the loop: the labels for the confusion matrix, the final line, the weights and the
    module, all on the CPU."""
    import torch

    from runner import models

    if p.n_classes:
        Xe, ye = (p.X_test, p.y_test) if p.X_test is not None else (p.X, p.y)
        with torch.no_grad():
            trace.labels = (ye.cpu().numpy(), p.model(Xe).argmax(1).cpu().numpy())
        trace.extra["test_accuracy" if p.X_test is not None else "accuracy"] = float(
            (trace.labels[0] == trace.labels[1]).mean())
    trace.line = p.model.slope_intercept()
    trace.state = {k: v.detach().cpu() for k, v in p.model.state_dict().items()}
    trace.module = p.model.as_module()


class _Guard:
    """Stops the run at the first epoch whose (last) batch loss is NaN or infinite. On the CPU a
    loss is read as it comes (.item() costs ~0.1 µs); on a GPU .item() waits for every queued
    kernel, so there up to WINDOW losses are read together: one wait per WINDOW epochs, and still
    the exact epoch."""
    WINDOW = 32

    def __init__(self, device):
        self.at_once = device.type == "cpu"
        self.pending: list = []  # (epoch, loss tensor), not read yet

    def add(self, epoch: int, loss) -> None:
        if self.at_once:
            if not math.isfinite(loss.item()):
                raise Diverged(epoch, "batch loss", loss.item())
            return
        self.pending.append((epoch, loss))
        if len(self.pending) == self.WINDOW:
            self.check()

    def check(self) -> None:
        if not self.pending:
            return
        import torch

        values = torch.stack([loss for _, loss in self.pending]).tolist()  # one wait for them all
        bad = next(((e, v) for (e, _), v in zip(self.pending, values) if not math.isfinite(v)), None)
        self.pending.clear()
        if bad:
            raise Diverged(bad[0], "batch loss", bad[1])


def _grad_check(cfg: Any, diff: float, epoch: int, log: Log, trace: Trace) -> None:
    log("grad_check_max_rel_diff", diff, epoch)
    trace.extra["grad_check_max_rel_diff"] = max(diff, trace.extra.get("grad_check_max_rel_diff", 0.0))
    if not diff <= cfg.check_grad_tol:
        raise UserError(f"check_grad: hand-written and autograd gradients differ by {diff:.3g} "
                        f"(relative) at epoch {epoch}, over check_grad_tol={cfg.check_grad_tol:g}")


def _tensor(a: Optional[np.ndarray], dtype, device):
    import torch

    if a is None:
        return None
    return torch.tensor(a, dtype=torch.long if a.dtype == np.int64 else dtype, device=device)


def _progress(epochs: int, quiet: bool):
    """A progress bar over epochs on a terminal or in a Jupyter kernel (tqdm.auto: the notebook's
    own bar there); a plain range otherwise (a pipe, a log file)."""
    if quiet or not (sys.stdout.isatty() or "ipykernel" in sys.modules):
        return range(1, epochs + 1)
    from tqdm.auto import tqdm

    return tqdm(range(1, epochs + 1), desc="epochs", leave=False, mininterval=0.2)

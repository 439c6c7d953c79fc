"""What a sweep's jobs import, imported while the sweep waits for its parent run.

A sweep's callback waits about 3 s for the store to create the parent run (the tracking process
imports mlflow and opens the store) before any job may start; the jobs then import torch (~2 s
here) and, for a torch.optim optimizer, torch._dynamo (~1.9 s: torch.optim's step imports it).
Imported in a thread during that wait, the two overlap: the basic launcher's first job and the
warm launcher's workers (forked after it) start with them in place. `make bench` P5 and P4 carry
the figure."""
import threading
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


def while_waiting(wait: Callable[[], T], engine: str, optims: Iterable[str]) -> T:
    """wait(), with the trainer's modules imported meanwhile; returns once both are done, so that
    no thread is left running when a launcher forks."""
    worker = threading.Thread(target=trainer, args=(engine, set(optims)), daemon=True)
    worker.start()
    try:
        return wait()
    finally:
        worker.join()


def trainer(engine: str, optims: set) -> None:
    """torch, torch._dynamo unless every job uses the hand-written gd, and the runner's trainer.
    engine=numpy needs none of it."""
    if engine == "numpy":
        return
    try:
        import torch  # noqa: F401

        if optims != {"gd"}:
            import torch._dynamo  # noqa: F401
            import torch.optim  # noqa: F401
        from runner import data, devices, models, optim, plots, torch_engine, train  # noqa: F401
    except Exception:  # noqa: BLE001  the job imports it again and reports what is wrong
        pass

"""runner: a Hydra + MLflow experiment runner for PyTorch. From Python (a notebook):

    import runner
    r = runner.run("gd_vs_sgd", lr=0.1)            # one run, as python -m runner ...
    s = runner.sweep("gd_vs_sgd", optim=["gd", "sgd"])  # a sweep, as python -m runner -m ...
    df = runner.compare(experiment="gd_vs_sgd")     # the table of python -m runner.compare

`import runner` imports nothing heavy: Hydra, torch and mlflow come with the first call."""
from runner.errors import UserError

__all__ = ["run", "sweep", "compare", "UserError", "RunFailed"]


def __getattr__(name: str):
    if name == "compare":  # the module of python -m runner.compare, callable as runner.compare(...)
        import importlib

        return importlib.import_module("runner.compare")
    if name in ("run", "sweep", "RunFailed"):
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")

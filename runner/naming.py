"""How runs and sweeps are named, in one place: train names a single run, the CLI a sweep's job,
the sweep's callback its parent run, and a param's name follows the command line's key."""
from typing import Any, Dict, List, Optional

GROUPS = ("dataset", "model", "optim", "device", "objective")  # `optim=adam` is the param `optim.name`

# On the command line but not what a run is about: left out of run names and the sweep's name
# (the preset, `experiment`, leads them instead).
UNNAMED = ("experiment", "tracking.uri", "hydra/launcher", "hydra/sweeper", "hparams_search", "resume",
           "debug", "run_name", "experiment_name")


def named(overrides: List[str]) -> List[str]:
    """The overrides that say what a run or a sweep is about."""
    return [o for o in overrides if override_key(o) not in UNNAMED]


def override_key(override: str) -> str:
    """`lr=0.1` -> `lr`, `+foo.bar=1` -> `foo.bar`."""
    return override.split("=", 1)[0].lstrip("+~")


def param_name(key: str) -> str:
    """The param a command-line key lands in: a group's choice is its `.name`."""
    return f"{key}.name" if key in GROUPS else key


def run_name(cfg: Any, preset: Optional[str] = None, overrides: List[str] = (),
             varying: Optional[Dict[str, str]] = None) -> str:
    """A name a person reads: a sweep's job by what varies in its sweep (`lr=1e-06`); a single
    run by its preset and overrides (`mlp_adam lr=0.1`), else by its model (or objective) and
    optimizer."""
    if varying:
        return ",".join(f"{k}={v}" for k, v in varying.items())
    rest = ",".join(named(overrides))
    objective = getattr(cfg, "objective", None)  # the optimizer lab's: no model
    what = cfg.model.name if objective is None else objective.name
    head = preset or ("" if rest else f"{what} {cfg.optim.name}")
    return " ".join(part for part in (head, rest) if part)[:250]


def varying(overrides: List[str], swept_keys: List[str]) -> Dict[str, str]:
    """key -> value of a sweep's job, for the keys its sweep varies."""
    return {override_key(o): o.split("=", 1)[1] for o in overrides if override_key(o) in swept_keys}


# MLflow 3.17's Compare plots the first three params that differ, sorted as JS sorts strings
# (capitals before lower case): each job repeats its swept values under this prefix so that they
# come first, before the options that one optimizer has and another lacks (optim.betas ...).
SWEPT_PREFIX = "Swept: "


def swept_params(flat: Dict[str, Any], keys: List[str]) -> Dict[str, Any]:
    """`Swept: optim.name` -> adam for each swept key of a job, from its logged params."""
    return {SWEPT_PREFIX + param_name(k): flat[param_name(k)] for k in keys if param_name(k) in flat}


def parent_name(preset: Optional[str], overrides: List[str], space: Dict[str, str]) -> str:
    """`sweep optim=gd,sgd (gd_vs_sgd)`: what is swept right after `sweep`, so that two sweeps of
    one preset differ within the 30 characters the runs table shows; then the fixed overrides."""
    keys = [o for o in named(overrides) if override_key(o) in space]
    fixed = [o for o in named(overrides) if override_key(o) not in space]
    searched = [f"{k}={v}" for k, v in space.items() if k not in {override_key(o) for o in keys}]
    head = " ".join(["sweep", *keys, *searched, *fixed])
    return (f"{head} ({preset})" if preset else head)[:250]

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


def sweep_name(preset: Optional[str], overrides: List[str]) -> str:
    """The sweep's parent run: `sweep`, its preset, what its command line says it is about."""
    return " ".join(["sweep", *([preset] if preset else []), *named(overrides)])[:250]

"""Typed schema for the whole config (the groups' options in groups.py), registered in Hydra's ConfigStore, plus range checks.

Types are enforced by OmegaConf while Hydra composes (so `lr=abc` never reaches the code);
`check(cfg)` then enforces ranges and cross-field rules before torch or mlflow is imported.
"""
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from runner import objectives
from runner.errors import Diverged, Terminated, UserError  # noqa: F401 (re-exported)
from runner.groups import (  # noqa: F401 (re-exported: the schema is config.*)
    Task, Activation, LineInit, LinearInit, MlpInit, DatasetConfig, CsvDataset,
    SyntheticLinearDataset, RandomMlpDataset, DigitsDataset, MnistDataset, ModelConfig, LineModel,
    LinearModel, MlpModel, OptimConfig, OptimBase, GdOptim, SgdOptim, MinibatchOptim, AdamOptim,
    hidden_sizes, _require,
)


# Every choice is a StrEnum: each member equals its string (Engine.numpy == "numpy",
# f"{Device.cuda}" == "cuda"), so tags, messages and code that hands them on as plain strings
# read the same, while OmegaConf still refuses any other value when Hydra composes.
class Loss(StrEnum):
    mse = "mse"  # mean of squared errors
    sse = "sse"  # sum of squared errors
    half_mse = "half_mse"  # mean of (ŷ-y)²/2, as in the d2l book
    cross_entropy = "cross_entropy"  # softmax cross-entropy, for classification


class DType(StrEnum):
    float32 = "float32"
    float64 = "float64"


class Engine(StrEnum):
    torch = "torch"
    numpy = "numpy"  # line or mlp with gd, no torch imported at all


class Device(StrEnum):
    auto = "auto"  # cuda, then mps, then cpu
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


# ---- device, tracking, top level -----------------------------------------------------------
@dataclass
class DeviceConfig:
    name: Device = Device.auto
    index: Optional[int] = None  # cuda only; None: 0, or job number modulo GPUs in a sweep


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<launch dir>/mlflow.db


@dataclass
class Config:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    # set: the optimizer lab minimises it; dataset and model do not apply (runner/lab.py)
    objective: Optional[objectives.ObjectiveBase] = None
    device: DeviceConfig = field(default_factory=DeviceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Full-batch gd on the default data (2 features, unit variance) is stable for lr < ~1; at 0.1
    # it reaches the least-squares optimum in 100 epochs (gap ~1e-10). d2l's 0.03 is for batches
    # of 10 over 3 epochs (experiment=d2l_scratch); full batch at 0.03 stops at gap 1.6e-4.
    lr: float = 0.1
    epochs: int = 100
    seed: int = 0
    loss: Loss = Loss.mse
    dtype: DType = DType.float32
    log_every: int = 1
    experiment_name: str = "runner"
    run_name: Optional[str] = None  # None: derived from the overrides
    engine: Engine = Engine.torch
    check_grad: bool = False  # compare hand-written gradients with a reference, first and last step
    check_grad_tol: float = 1e-6  # largest relative difference allowed before the run fails
    resume: bool = False  # in a sweep: skip jobs whose identical config already FINISHED
    debug: bool = False  # show tracebacks instead of one-line errors


# A checkout keeps conf/ and experiments/ at its top, where users edit them; a wheel ships them
# inside the package (pyproject.toml maps them to runner/conf and runner/experiments). ROOT is
# the folder that holds both: presets find their data files there (`${root:}`).
PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE if (PACKAGE / "conf").is_dir() else PACKAGE.parent
CONF_DIR = str(ROOT / "conf")  # absolute: Hydra takes it as is, whether imported or run as a file


def register() -> None:
    """Put the schemas in Hydra's ConfigStore and the `${root:}` resolver in OmegaConf."""
    from runner import groups_optim  # the lab's optim options: subclasses of OptimConfig, so here

    OmegaConf.register_new_resolver("root", lambda: str(ROOT), replace=True)
    _register_launcher()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, nodes in {
        "dataset": [CsvDataset, SyntheticLinearDataset, RandomMlpDataset, DigitsDataset, MnistDataset],
        "model": [LineModel, LinearModel, MlpModel],
        "optim": [GdOptim, SgdOptim, MinibatchOptim, AdamOptim, *groups_optim.LAB_OPTIMS],
        "objective": objectives.SCHEMAS,  # the optimizer lab's, beside its functions
    }.items():
        for node in nodes:
            cs.store(group=f"schema/{group}", name=node.name, node=node)
    cs.store(group="schema/device", name="device", node=DeviceConfig)


def _register_launcher() -> None:
    """hydra/launcher=warm. Hydra finds plugins by walking the hydra_plugins folders on sys.path;
    an editable install (make's) maps our package without adding a folder there, so name it."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.runner_launcher.warm_launcher import WarmLauncher

    Plugins.instance().register(WarmLauncher)


# ---- range checks --------------------------------------------------------------------------
SEEDS = (0, 2**63)  # numpy's default_rng takes any integer >= 0, torch.manual_seed one below 2**64


def typed(cfg: Any) -> Any:
    """The composed config (or one group of it) as the schema's dataclasses (OmegaConf.to_object),
    so that the code dispatches on their types; what is typed already is returned as it is."""
    return OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg


def _check_engine(cfg: Config) -> None:
    if cfg.engine == Engine.numpy:
        m, o = cfg.model, cfg.optim
        _require(isinstance(m, (LineModel, MlpModel)), "model", m.name, "engine=numpy runs line or mlp")
        _require(isinstance(o, GdOptim), "optim", o.name, "engine=numpy runs gd only")
        _require(not o.shuffle, "optim.shuffle", True, "engine=numpy takes batches in order")
        _require(not cfg.dataset.classification, "loss", cfg.loss.value, "engine=numpy runs regression losses only")
        _require(cfg.device.name in (Device.auto, Device.cpu), "device", cfg.device.name,
                 "engine=numpy runs on the CPU")


def _check_names(cfg: Config) -> None:
    """An option's `name` is the option itself (`optim=sgd`): `optim.name=gd` would relabel SGD's
    settings as gd's, so any other value is refused."""
    for group in ("dataset", "model", "optim", "objective"):
        node = getattr(cfg, group)
        if node is None:  # objective: null, the default
            continue
        chosen = type(node).name  # the class default: the option Hydra composed
        _require(node.name == chosen, f"{group}.name", node.name,
                 f"is fixed by the option ({group}={chosen}); choose another with {group}=NAME")


def check(cfg: Any) -> None:
    """Range and cross-field checks that a type alone cannot express. Raises UserError."""
    cfg = typed(cfg)
    _require(isinstance(cfg.seed, int) and SEEDS[0] <= cfg.seed < SEEDS[1], "seed", cfg.seed,
             "must be an integer in [0, 2**63), the range numpy and torch both accept")
    _require(math.isfinite(cfg.lr) and cfg.lr > 0, "lr", cfg.lr, "must be a finite number > 0")
    _require(cfg.epochs >= 1, "epochs", cfg.epochs, "must be an integer >= 1")
    _require(cfg.log_every >= 1, "log_every", cfg.log_every, "must be an integer >= 1")
    _require(bool(cfg.experiment_name.strip()), "experiment_name", cfg.experiment_name,
             "must not be empty")
    _check_names(cfg)
    cfg.dataset.check()
    if cfg.dataset.classification != (cfg.loss == Loss.cross_entropy):
        _require(False, "loss", cfg.loss.value, "classification (dataset=digits, mnist or dataset.task="
                 "classification) takes loss=cross_entropy, regression mse, sse or half_mse")
    _check_engine(cfg)
    _require(cfg.check_grad_tol > 0, "check_grad_tol", cfg.check_grad_tol, "must be > 0")
    cfg.model.check()
    cfg.optim.check()
    _require(cfg.device.index is None or cfg.device.index >= 0, "device.index", cfg.device.index,
             "must be >= 0 (or null)")

"""Typed schema for every config group, registered in Hydra's ConfigStore, plus range checks.

Types are enforced by OmegaConf while Hydra composes (so `lr=abc` never reaches the code);
`check(cfg)` then enforces ranges and cross-field rules before torch or mlflow is imported.
"""
import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from runner import objectives
from runner.errors import Diverged, Terminated, UserError  # noqa: F401 (re-exported)


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


class Activation(StrEnum):  # between an mlp's Linear layers
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"


class Engine(StrEnum):
    torch = "torch"
    numpy = "numpy"  # line or mlp with gd, no torch imported at all


class Task(StrEnum):  # of a csv dataset
    regression = "regression"
    classification = "classification"  # the target holds labels 0..K-1


class Device(StrEnum):
    auto = "auto"  # cuda, then mps, then cpu
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


# init: one Enum per model family, since each allows a different set; every model has its own
# dataclass, so the schema can say which, and Hydra names the allowed ones in its error.
class LineInit(StrEnum):
    zeros = "zeros"
    normal = "normal"  # N(0, std)
    constant = "constant"  # every weight (and the bias) starts at `value`


class LinearInit(StrEnum):
    default = "default"  # torch's
    normal = "normal"
    zeros = "zeros"


class MlpInit(StrEnum):
    default = "default"  # torch's
    normal = "normal"


# ---- dataset, model, optim: one dataclass per option, each a subclass of its group's base ----
# Hydra's schema pattern (`db: DBConfig = MISSING`, filled by a subclass): the code dispatches on
# the dataclass's type, and each option's `name` is its class default, fixed (see _check_names).
@dataclass
class DatasetConfig:
    name: str = MISSING

    @property
    def classification(self) -> bool:  # y holds class labels: loss=cross_entropy
        return False

    def check(self) -> None:
        pass


@dataclass
class CsvDataset(DatasetConfig):
    name: str = "csv"
    path: str = MISSING
    target: Optional[str] = None  # column name or index (negative counts from the end); None: last
    delimiter: Optional[str] = None  # None: detected
    header: Optional[bool] = None  # None: detected
    task: Task = Task.regression
    test_fraction: float = 0.0  # held out for test_accuracy / test_loss

    @property
    def classification(self) -> bool:
        return self.task == Task.classification

    def check(self) -> None:
        _require(bool(self.path), "dataset.path", self.path, "must name a CSV file")
        _require(self.delimiter is None or len(self.delimiter) == 1, "dataset.delimiter", self.delimiter,
                 "must be one character (or null to detect it)")
        _check_test_fraction(self.test_fraction)


@dataclass
class SyntheticLinearDataset(DatasetConfig):
    name: str = "synthetic_linear"
    weights: List[float] = field(default_factory=lambda: [2.0, -3.4])
    bias: float = 4.2
    n_samples: int = 1000
    noise: float = 0.01

    def check(self) -> None:
        _check_n_samples(self.n_samples)
        _require(self.noise >= 0 and math.isfinite(self.noise), "dataset.noise", self.noise,
                 "must be a finite number >= 0")
        _require(len(self.weights) >= 1, "dataset.weights", list(self.weights), "needs at least one weight")


@dataclass
class RandomMlpDataset(DatasetConfig):
    name: str = "random_mlp"
    n_samples: int = 64
    in_features: int = 1000
    out_features: int = 10

    def check(self) -> None:
        _check_n_samples(self.n_samples)
        _require(self.in_features >= 1, "dataset.in_features", self.in_features, "must be >= 1")
        _require(self.out_features >= 1, "dataset.out_features", self.out_features, "must be >= 1")


@dataclass
class DigitsDataset(DatasetConfig):
    name: str = "digits"  # scikit-learn's 8x8 handwritten digits, 1797 images, 10 classes
    test_fraction: float = 0.2

    @property
    def classification(self) -> bool:
        return True

    def check(self) -> None:
        _check_test_fraction(self.test_fraction)


@dataclass
class MnistDataset(DatasetConfig):
    name: str = "mnist"  # the four IDX files (plain or .gz) in ROOT/MNIST/raw/ or ROOT/; never downloaded
    root: str = "data"  # torchvision's MNIST(root="data", download=True) leaves data/MNIST/raw/
    limit: Optional[int] = None  # the first N training images; None: all (the test split is whole)
    mean: float = 0.1307  # (pixel/255 - mean) / std, torchvision's usual Normalize for MNIST
    std: float = 0.3081

    @property
    def classification(self) -> bool:
        return True

    def check(self) -> None:
        _require(bool(self.root.strip()), "dataset.root", self.root, "must name the folder that holds the MNIST files")
        _require(self.limit is None or self.limit >= 1, "dataset.limit", self.limit,
                 "must be an integer >= 1 (or null for every training image)")
        _require(math.isfinite(self.mean), "dataset.mean", self.mean, "must be a finite number")
        _require(self.std > 0 and math.isfinite(self.std), "dataset.std", self.std, "must be a finite number > 0")


@dataclass
class ModelConfig:
    name: str = MISSING
    bias: bool = True

    def check(self) -> None:
        std = getattr(self, "std", None)
        if getattr(self, "init", None) == "normal":
            _require(std > 0 and math.isfinite(std), "model.std", std, "must be a finite number > 0")


@dataclass
class LineModel(ModelConfig):
    name: str = "line"
    init: LineInit = LineInit.zeros
    std: float = 0.01  # for init=normal
    value: float = 0.0  # for init=constant: every weight (and the bias) starts here


@dataclass
class LinearModel(ModelConfig):
    name: str = "linear"
    init: LinearInit = LinearInit.default
    std: float = 0.01


@dataclass
class MlpModel(ModelConfig):
    name: str = "mlp"
    hidden: Any = 100  # an int (one hidden layer) or a list of ints ([200, 200]); see hidden_sizes
    activation: Activation = Activation.relu
    init: MlpInit = MlpInit.default
    std: float = 1.0

    def check(self) -> None:
        super().check()
        hidden_sizes(self.hidden)


@dataclass
class OptimConfig:
    name: str = MISSING
    batch_size: Optional[int] = None  # None: the full batch
    shuffle: bool = False

    def check(self) -> None:
        _require(self.batch_size is None or self.batch_size >= 1, "optim.batch_size", self.batch_size,
                 "must be an integer >= 1 (or null for the full batch)")


OptimBase = OptimConfig  # the former name


@dataclass
class GdOptim(OptimConfig):
    name: str = "gd"


@dataclass
class SgdOptim(OptimConfig):
    name: str = "sgd"
    batch_size: Optional[int] = 1
    shuffle: bool = True
    momentum: float = 0.0

    def check(self) -> None:
        super().check()
        _require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "must be in [0, 1)")


@dataclass
class MinibatchOptim(SgdOptim):
    name: str = "minibatch"
    batch_size: Optional[int] = 10


@dataclass
class AdamOptim(OptimConfig):
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    def check(self) -> None:
        super().check()
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas",
                 list(self.betas), "must be two numbers in [0, 1)")


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


def hidden_sizes(hidden: Any) -> Tuple[int, ...]:
    """The widths of an mlp's hidden layers: an int is one layer, a list one per entry. The schema
    types `hidden` as Any (OmegaConf has no int-or-list), so this is its type check too."""
    sizes = list(hidden) if isinstance(hidden, (list, tuple, ListConfig)) else [hidden]
    if not sizes or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in sizes):
        shown = sizes if isinstance(hidden, (list, ListConfig)) else hidden
        raise UserError(f"model.hidden={shown!r}: must be an "
                        "integer >= 1 (one hidden layer) or a list of them, one per layer, e.g. [200,200]")
    return tuple(sizes)


def _check_test_fraction(f: float) -> None:
    _require(0 <= f < 1, "dataset.test_fraction", f, "must be in [0, 1)")


def _check_n_samples(n: int) -> None:
    _require(n >= 1, "dataset.n_samples", n, "must be an integer >= 1")


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        value = value.value if isinstance(value, Enum) else value  # 'numpy', not <Engine.numpy: ...>
        raise UserError(f"{key}={value!r}: {allowed}")


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

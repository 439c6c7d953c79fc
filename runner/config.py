"""Typed schema for every config group, registered in Hydra's ConfigStore, plus range checks.

Types are enforced by OmegaConf while Hydra composes (so `lr=abc` never reaches the code);
`check(cfg)` then enforces ranges and cross-field rules before torch or mlflow is imported.
"""
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, ListConfig, OmegaConf

from runner import objectives
from runner.errors import Diverged, Terminated, UserError  # noqa: F401 (re-exported)


class Loss(Enum):
    mse = "mse"  # mean of squared errors
    sse = "sse"  # sum of squared errors
    half_mse = "half_mse"  # mean of (ŷ-y)²/2, as in the d2l book
    cross_entropy = "cross_entropy"  # softmax cross-entropy, for classification


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


class Activation(Enum):  # between an mlp's Linear layers
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"


# The choices below are StrEnums: each member equals its string (Engine.numpy == "numpy",
# f"{Device.cuda}" == "cuda"), so tags, messages and code that hands them on as plain strings
# read the same, while OmegaConf still refuses any other value when Hydra composes.
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


# ---- dataset -------------------------------------------------------------------------------
@dataclass
class CsvDataset:
    name: str = "csv"
    path: str = MISSING
    target: Optional[str] = None  # column name or index (negative counts from the end); None: last
    delimiter: Optional[str] = None  # None: detected
    header: Optional[bool] = None  # None: detected
    task: Task = Task.regression
    test_fraction: float = 0.0  # held out for test_accuracy / test_loss


@dataclass
class SyntheticLinearDataset:
    name: str = "synthetic_linear"
    weights: List[float] = field(default_factory=lambda: [2.0, -3.4])
    bias: float = 4.2
    n_samples: int = 1000
    noise: float = 0.01


@dataclass
class RandomMlpDataset:
    name: str = "random_mlp"
    n_samples: int = 64
    in_features: int = 1000
    out_features: int = 10


@dataclass
class DigitsDataset:
    name: str = "digits"  # scikit-learn's 8x8 handwritten digits, 1797 images, 10 classes
    test_fraction: float = 0.2


@dataclass
class MnistDataset:
    name: str = "mnist"  # the four IDX files (plain or .gz) in ROOT/MNIST/raw/ or ROOT/; never downloaded
    root: str = "data"  # torchvision's MNIST(root="data", download=True) leaves data/MNIST/raw/
    limit: Optional[int] = None  # the first N training images; None: all (the test split is whole)
    mean: float = 0.1307  # (pixel/255 - mean) / std, torchvision's usual Normalize for MNIST
    std: float = 0.3081


# ---- model ---------------------------------------------------------------------------------
@dataclass
class LineModel:
    name: str = "line"
    bias: bool = True
    init: LineInit = LineInit.zeros
    std: float = 0.01  # for init=normal
    value: float = 0.0  # for init=constant: every weight (and the bias) starts here


@dataclass
class LinearModel:
    name: str = "linear"
    bias: bool = True
    init: LinearInit = LinearInit.default
    std: float = 0.01


@dataclass
class MlpModel:
    name: str = "mlp"
    hidden: Any = 100  # an int (one hidden layer) or a list of ints ([200, 200]); see hidden_sizes
    activation: Activation = Activation.relu
    bias: bool = True
    init: MlpInit = MlpInit.default
    std: float = 1.0


# ---- optim ---------------------------------------------------------------------------------
@dataclass
class OptimBase:
    name: str = MISSING
    batch_size: Optional[int] = None  # None: the full batch
    shuffle: bool = False


@dataclass
class GdOptim(OptimBase):
    name: str = "gd"


@dataclass
class SgdOptim(OptimBase):
    name: str = "sgd"
    batch_size: Optional[int] = 1
    shuffle: bool = True
    momentum: float = 0.0


@dataclass
class MinibatchOptim(SgdOptim):
    name: str = "minibatch"
    batch_size: Optional[int] = 10


@dataclass
class AdamOptim(OptimBase):
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


# The optimizer lab's options (issue 19): each has its own hyperparameters and no others, so
# only those are logged as params. torch.optim's defaults, except adamw's (the same).
@dataclass
class MomentumOptim(OptimBase):
    name: str = "momentum"  # heavy ball: v <- momentum*v + g; p <- p - lr*v (torch.optim.SGD)
    momentum: float = 0.9


@dataclass
class NesterovOptim(MomentumOptim):
    name: str = "nesterov"  # torch.optim.SGD(nesterov=True): the gradient at the look-ahead point


@dataclass
class RmspropOptim(OptimBase):
    name: str = "rmsprop"
    alpha: float = 0.99  # the decay of the running mean of g²
    eps: float = 1e-8


@dataclass
class AdagradOptim(OptimBase):
    name: str = "adagrad"
    eps: float = 1e-10


@dataclass
class AdamwOptim(AdamOptim):
    name: str = "adamw"
    eps: float = 1e-8
    weight_decay: float = 0.01  # decoupled: p <- p*(1 - lr*weight_decay) before Adam's step


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
    dataset: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    objective: Any = None  # set: the optimizer lab minimises it; dataset and model do not apply
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
    OmegaConf.register_new_resolver("root", lambda: str(ROOT), replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, nodes in {
        "dataset": [CsvDataset, SyntheticLinearDataset, RandomMlpDataset, DigitsDataset, MnistDataset],
        "model": [LineModel, LinearModel, MlpModel],
        "optim": [GdOptim, SgdOptim, MinibatchOptim, AdamOptim,
                  MomentumOptim, NesterovOptim, RmspropOptim, AdagradOptim, AdamwOptim],
        "objective": objectives.SCHEMAS,  # the optimizer lab's, beside its functions
    }.items():
        for node in nodes:
            cs.store(group=f"schema/{group}", name=node.name, node=node)
    cs.store(group="schema/device", name="device", node=DeviceConfig)


# ---- range checks --------------------------------------------------------------------------
CLASSIFICATION_DATASETS = ("digits", "mnist")  # and csv with task=classification


def _check_engine(cfg: Any, classify: bool) -> None:
    if cfg.engine == Engine.numpy:
        _require(cfg.model.name in ("line", "mlp"), "model", cfg.model.name, "engine=numpy runs line or mlp")
        _require(cfg.optim.name == "gd", "optim", cfg.optim.name, "engine=numpy runs gd only")
        _require(not cfg.optim.shuffle, "optim.shuffle", True, "engine=numpy takes batches in order")
        _require(not classify, "loss", cfg.loss.value, "engine=numpy runs regression losses only")
        _require(cfg.device.name in (Device.auto, Device.cpu), "device", cfg.device.name,
                 "engine=numpy runs on the CPU")


def hidden_sizes(hidden: Any) -> Tuple[int, ...]:
    """The widths of an mlp's hidden layers: an int is one layer, a list one per entry. The schema
    types `hidden` as Any (OmegaConf has no int-or-list), so this is its type check too."""
    sizes = list(hidden) if isinstance(hidden, (list, tuple, ListConfig)) else [hidden]
    if not sizes or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in sizes):
        raise UserError(f"model.hidden={sizes if isinstance(hidden, ListConfig) else hidden!r}: must be an "
                        "integer >= 1 (one hidden layer) or a list of them, one per layer, e.g. [200,200]")
    return tuple(sizes)


def _check_mnist(d: Any) -> None:
    import math

    _require(bool(d.root.strip()), "dataset.root", d.root, "must name the folder that holds the MNIST files")
    _require(d.limit is None or d.limit >= 1, "dataset.limit", d.limit,
             "must be an integer >= 1 (or null for every training image)")
    _require(math.isfinite(d.mean), "dataset.mean", d.mean, "must be a finite number")
    _require(d.std > 0 and math.isfinite(d.std), "dataset.std", d.std, "must be a finite number > 0")


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        value = value.value if isinstance(value, Enum) else value  # 'numpy', not <Engine.numpy: ...>
        raise UserError(f"{key}={value!r}: {allowed}")


def check(cfg: Any) -> None:
    """Range and cross-field checks that a type alone cannot express. Raises UserError."""
    import math

    _require(math.isfinite(cfg.lr) and cfg.lr > 0, "lr", cfg.lr, "must be a finite number > 0")
    _require(cfg.epochs >= 1, "epochs", cfg.epochs, "must be an integer >= 1")
    _require(cfg.log_every >= 1, "log_every", cfg.log_every, "must be an integer >= 1")
    _require(bool(cfg.experiment_name.strip()), "experiment_name", cfg.experiment_name,
             "must not be empty")
    d, m, o = cfg.dataset, cfg.model, cfg.optim
    if d.name == "csv":
        _require(bool(d.path), "dataset.path", d.path, "must name a CSV file")
        _require(d.delimiter is None or len(d.delimiter) == 1, "dataset.delimiter", d.delimiter,
                 "must be one character (or null to detect it)")
    if "test_fraction" in d:
        _require(0 <= d.test_fraction < 1, "dataset.test_fraction", d.test_fraction, "must be in [0, 1)")
    if "n_samples" in d:
        _require(d.n_samples >= 1, "dataset.n_samples", d.n_samples, "must be an integer >= 1")
    if d.name == "mnist":
        _check_mnist(d)
    classify = d.name in CLASSIFICATION_DATASETS or (d.name == "csv" and d.task == Task.classification)
    if classify != (cfg.loss == Loss.cross_entropy):
        _require(False, "loss", cfg.loss.value, "classification (dataset=digits, mnist or dataset.task="
                 "classification) takes loss=cross_entropy, regression mse, sse or half_mse")
    _check_engine(cfg, classify)
    _require(cfg.check_grad_tol > 0, "check_grad_tol", cfg.check_grad_tol, "must be > 0")
    if d.name == "synthetic_linear":
        _require(d.noise >= 0 and math.isfinite(d.noise), "dataset.noise", d.noise,
                 "must be a finite number >= 0")
        _require(len(d.weights) >= 1, "dataset.weights", list(d.weights), "needs at least one weight")
    if d.name == "random_mlp":
        _require(d.in_features >= 1, "dataset.in_features", d.in_features, "must be >= 1")
        _require(d.out_features >= 1, "dataset.out_features", d.out_features, "must be >= 1")
    if m.init == "normal":
        _require(m.std > 0 and math.isfinite(m.std), "model.std", m.std, "must be a finite number > 0")
    if m.name == "mlp":
        hidden_sizes(m.hidden)
    _require(o.batch_size is None or o.batch_size >= 1, "optim.batch_size", o.batch_size,
             "must be an integer >= 1 (or null for the full batch)")
    if "momentum" in o:
        _require(0 <= o.momentum < 1, "optim.momentum", o.momentum, "must be in [0, 1)")
    if "betas" in o:
        _require(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas",
                 list(o.betas), "must be two numbers in [0, 1)")
    if "alpha" in o:  # the lab's options (rmsprop, adagrad, adamw)
        _require(0 < o.alpha < 1, "optim.alpha", o.alpha, "must be in (0, 1)")
    if "eps" in o:
        _require(o.eps > 0, "optim.eps", o.eps, "must be > 0")
    if "weight_decay" in o:
        _require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _require(cfg.device.index is None or cfg.device.index >= 0, "device.index", cfg.device.index,
             "must be >= 0 (or null)")

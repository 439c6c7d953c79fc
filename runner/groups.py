"""The schema of the three choice groups, dataset, model and optim: one dataclass per option,
a subclass of its group's base, each with the range checks of its own keys (config.check calls
them). config.py re-exports every name here."""
import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, List, Optional, Tuple

from omegaconf import MISSING, ListConfig

from runner.errors import UserError


class Task(StrEnum):  # of a csv dataset
    regression = "regression"
    classification = "classification"  # the target holds labels 0..K-1


class Activation(StrEnum):  # between an mlp's Linear layers
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"


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


# ---- checks shared by the options ------------------------------------------------------------
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

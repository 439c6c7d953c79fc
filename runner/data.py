"""Dataset builders, in numpy so that both engines (torch and numpy) train on the same numbers.

build() returns a Dataset: X (N, features) float64 and y, either (N, targets) float64 for
regression or (N,) int64 class labels for classification, plus an optional held-out test split.
(MNIST's X comes in the run's dtype: 60k images are 376 MB in float64.) CSV and IDX parsing need
only numpy, so the CLI can check a file before torch is imported."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runner import config
from runner.config import UserError
from runner.csv_file import load_csv
from runner.mnist import load_mnist



@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    X_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    n_classes: int = 0  # 0: regression
    name: str = ""  # what MLflow's Dataset column shows
    source: str = ""  # where the numbers came from: a file, or a generator and its settings

    @property
    def out_features(self) -> int:
        return self.n_classes or self.y.shape[1]


def build(cfg: Any, seed: int) -> Dataset:
    """The dataset of `cfg.dataset`; random ones drawn from numpy's generator seeded by `seed`.
    Numpy only: train.run builds it before torch is imported or a run exists, so a bad file
    fails fast and leaves nothing behind."""
    cfg = config.typed(cfg)
    dataset = _arrays(cfg.dataset, np.random.default_rng(seed), cfg.dtype)
    dataset.name, dataset.source = _origin(cfg.dataset, seed)
    return dataset


def _origin(d: config.DatasetConfig, seed: int):
    """(name, source) of the data: the CSV's file name and path; a generator's call."""
    match d:
        case config.CsvDataset():
            return Path(d.path).name, str(Path(d.path).resolve())
        case config.DigitsDataset():
            return "digits", "sklearn.datasets.load_digits()"
        case config.MnistDataset():
            return "mnist" + (f"[:{d.limit}]" if d.limit else ""), str(Path(d.root).resolve())
    settings = ", ".join(f"{k}={v}" for k, v in asdict(d).items() if k != "name")
    return d.name, f"{d.name}({settings}, seed={seed})"


def _arrays(d: config.DatasetConfig, rng: np.random.Generator, dtype: str) -> Dataset:
    match d:
        case config.CsvDataset():
            X, y = load_csv(d.path, d.target, d.delimiter, d.header)
            if d.classification:
                labels = _labels(d.path, y)
                return _split(X, labels, d.test_fraction, rng, int(labels.max()) + 1)
            return _split(X, y, d.test_fraction, rng, 0)
        case config.SyntheticLinearDataset():
            # d2l's synthetic_data: X ~ N(0, 1), y = X·w + b + N(0, noise²)
            w = np.asarray(list(d.weights), dtype=np.float64)
            X = rng.standard_normal((d.n_samples, len(w)))
            y = X @ w + d.bias + d.noise * rng.standard_normal(d.n_samples)
            return Dataset(X, y.reshape(-1, 1))
        case config.RandomMlpDataset():
            X = rng.standard_normal((d.n_samples, d.in_features))
            return Dataset(X, rng.standard_normal((d.n_samples, d.out_features)))
        case config.DigitsDataset():
            from sklearn.datasets import load_digits  # shipped with scikit-learn: no download

            X, y = load_digits(return_X_y=True)
            return _split(X / 16.0, y.astype(np.int64), d.test_fraction, rng, 10)  # pixels 0..16 -> 0..1
        case config.MnistDataset():
            return _mnist(d, np.dtype(dtype))
    raise TypeError(f"no data for {type(d).__name__}")  # a schema class without a case here


def _mnist(d: config.MnistDataset, dtype: np.dtype) -> Dataset:
    images, labels, test_images, test_labels = load_mnist(d.root)
    if d.limit is not None and d.limit > len(images):
        raise UserError(f"dataset.limit={d.limit}: the training file holds only {len(images)} images")
    n = d.limit or len(images)
    return Dataset(_pixels(images[:n], d.mean, d.std, dtype), labels[:n].astype(np.int64),
                   _pixels(test_images, d.mean, d.std, dtype), test_labels.astype(np.int64), 10)


def _split(X, y, test_fraction: float, rng, n_classes: int) -> Dataset:
    """A seeded random train/test split; no split when test_fraction is 0."""
    n_test = round(len(X) * test_fraction)
    if test_fraction and n_test in (0, len(X)):
        raise UserError(f"dataset.test_fraction={test_fraction}: leaves no rows for "
                        f"{'test' if n_test == 0 else 'training'} ({len(X)} rows)")
    if n_test == 0:
        return Dataset(X, y, n_classes=n_classes)
    order = rng.permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return Dataset(X[train], y[train], X[test], y[test], n_classes)


def _labels(path: str, y: np.ndarray) -> np.ndarray:
    """Class labels from a target column: whole numbers 0..K-1."""
    labels = y[:, 0]
    bad = labels[(labels != np.round(labels)) | (labels < 0)]
    if len(bad):
        raise UserError(f"dataset.path={path!r}: the target column holds {bad[0]!r}; class labels "
                        "must be whole numbers 0, 1, 2, ... (dataset.task=classification)")
    return labels.astype(np.int64)


def _pixels(images: np.ndarray, mean: float, std: float, dtype: np.dtype) -> np.ndarray:
    """(pixel/255 − mean)/std, as torchvision's ToTensor then Normalize(mean, std), in `dtype`."""
    X = images.astype(dtype)  # (N, 784), one pass
    X *= dtype.type(1.0 / (255.0 * std))
    X -= dtype.type(mean / std)
    return X

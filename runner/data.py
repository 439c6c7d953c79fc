"""Dataset builders, in numpy so that both engines (torch and numpy) train on the same numbers.

build() returns a Dataset: X (N, features) float64 and y, either (N, targets) float64 for
regression or (N,) int64 class labels for classification, plus an optional held-out test split.
(MNIST's X comes in the run's dtype: 60k images are 376 MB in float64.) CSV and IDX parsing need
only numpy, so the CLI can check a file before torch is imported."""
import csv
import gzip
import io
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from runner import config
from runner.config import UserError

MAX_CSV_BYTES = 1 << 30  # refuse absurd files before reading them into memory


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


def load_csv(path: str, target: Any = None, delimiter: Any = None, header: Any = None):
    """Parse a numeric CSV (numbers only: nothing is evaluated) into X (N, k) and y (N, 1)."""
    text = _read_text(path)
    sample = text[:65536]
    if delimiter is None:
        delimiter = _sniff_delimiter(sample)
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if header is None:
        header = _looks_like_header(first, delimiter)
    names = [c.strip() for c in first.split(delimiter)] if header else None
    data = _parse_numbers(path, text, delimiter, skip=1 if header else 0)
    if data.shape[1] < 2:
        raise UserError(f"dataset.path={path!r}: needs at least two columns (features and a target), "
                        f"found {data.shape[1]} (delimiter {delimiter!r})")
    col = _target_index(path, target, names, data.shape[1])
    y = data[:, col:col + 1]
    X = np.delete(data, col, axis=1)
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def _read_text(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise UserError(f"dataset.path={path!r}: no such file")
    if not p.is_file():
        raise UserError(f"dataset.path={path!r}: not a file")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise UserError(f"dataset.path={path!r}: larger than {MAX_CSV_BYTES >> 20} MiB")
    raw = p.read_bytes()
    if b"\0" in raw:
        raise UserError(f"dataset.path={path!r}: binary file (NUL bytes), not a CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"dataset.path={path!r}: line {line}: not UTF-8 text ({e.reason}); "
                        "save the file as UTF-8") from None
    if not text.strip():
        raise UserError(f"dataset.path={path!r}: empty file")
    return text


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t |").delimiter
    except csv.Error:
        return ","  # one column, or nothing the sniffer can tell: the column check reports it


def _looks_like_header(first: str, delimiter: str) -> bool:
    cells = [c.strip() for c in first.split(delimiter)]
    return not all(_is_number(c) for c in cells if c)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parse_numbers(path: str, text: str, delimiter: str, skip: int) -> np.ndarray:
    """numpy parses; on failure we find the offending line and column ourselves, for the message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": we say it better below
            data = np.loadtxt(io.StringIO(text), delimiter=None if delimiter == " " else delimiter,
                              skiprows=skip, ndmin=2, dtype=np.float64, encoding=None)
    except ValueError:
        raise UserError(_locate_bad_cell(path, text, delimiter, skip)) from None
    if data.size == 0:
        raise UserError(f"dataset.path={path!r}: no data rows" + (" (header only)" if skip else ""))
    bad = np.argwhere(~np.isfinite(data))
    if len(bad):
        r, c = bad[0]
        raise UserError(f"dataset.path={path!r}: line {_line_of_row(text, r, skip)}, column {c + 1}: "
                        f"{data[r, c]} is not a finite number")
    return data


def _line_of_row(text: str, row: int, skip: int) -> int:
    """1-based line number of data row `row`, counting the header and skipping blank lines."""
    seen = -skip
    for i, ln in enumerate(text.splitlines(), 1):
        if ln.strip():
            if seen == row:
                return i
            seen += 1
    return row + skip + 1


def _locate_bad_cell(path: str, text: str, delimiter: str, skip: int) -> str:
    width, seen = None, 0
    for i, ln in enumerate(text.splitlines(), 1):
        if not ln.strip():
            continue
        seen += 1
        if seen <= skip:
            continue
        cells = ln.split() if delimiter == " " else ln.split(delimiter)
        for j, c in enumerate(cells, 1):
            if not _is_number(c.strip()):
                shown = c.strip() if len(c) <= 40 else c.strip()[:40] + "..."
                return f"dataset.path={path!r}: line {i}, column {j}: {shown!r} is not a number"
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            return (f"dataset.path={path!r}: line {i}: {len(cells)} columns where earlier rows have "
                    f"{width} (ragged rows)")
    return f"dataset.path={path!r}: not a numeric CSV"


def _target_index(path: str, target: Any, names: Any, ncols: int) -> int:
    if target is None:
        return ncols - 1
    if names and target in names:
        return names.index(target)
    try:
        col = int(target)
    except ValueError:
        known = f"; columns: {', '.join(names)}" if names else " (the file has no header)"
        raise UserError(f"dataset.target={target!r}: no such column in {path!r}{known}") from None
    if not -ncols <= col < ncols:
        raise UserError(f"dataset.target={target!r}: column index out of range for {path!r} "
                        f"({ncols} columns: 0..{ncols - 1} or -{ncols}..-1)")
    return col % ncols


# ---- MNIST: the four IDX files torchvision keeps ---------------------------------------------
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _how_to_get_mnist(root: str) -> str:
    return (f"expected {', '.join(MNIST_FILES)} (plain or .gz) in {root}/MNIST/raw/ or {root}/; nothing is "
            f"downloaded here: on a machine with internet run torchvision's MNIST({root!r}, download=True) "
            f"and copy the {root}/MNIST folder it writes to this machine")


def _mnist_paths(root: str) -> List[Path]:
    """Each file in torchvision's layout (ROOT/MNIST/raw/) or as downloaded by hand (ROOT/);
    plain before .gz (torchvision keeps both, and plain reads faster)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"dataset.root={root!r}: {'not a folder' if base.exists() else 'no such folder'}; "
                        + _how_to_get_mnist(root))
    found, missing = [], []
    for name in MNIST_FILES:
        hits = [p for folder in (base / "MNIST" / "raw", base) for p in (folder / name, folder / f"{name}.gz")
                if p.is_file()]
        if hits:
            found.append(hits[0])
        else:
            missing.append(name)
    if missing:
        raise UserError(f"dataset.root={root!r}: no {', '.join(missing)} in {base / 'MNIST' / 'raw'}/ or "
                        f"{base}/; " + _how_to_get_mnist(root))
    return found


def load_mnist(root: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 train images (N, rows·cols), train labels (N,), test images, test labels; checked."""
    return _load_mnist(root, tuple(_mnist_paths(root)))


def _load_mnist(root: str, paths: Tuple[Path, ...]):
    arrays = [_read_idx(root, p, dims) for p, dims in zip(paths, (3, 1, 3, 1))]
    for images, labels, pi, pl in ((arrays[0], arrays[1], paths[0], paths[1]),
                                   (arrays[2], arrays[3], paths[2], paths[3])):
        if len(images) == 0:
            raise UserError(f"dataset.root={root!r}: {pi} holds no images")
        if len(images) != len(labels):
            raise UserError(f"dataset.root={root!r}: {pi.name} holds {len(images)} images but {pl.name} "
                            f"{len(labels)} labels")
        if labels.max() > 9:
            where = int(np.argmax(labels > 9))
            raise UserError(f"dataset.root={root!r}: {pl}: label {labels[where]} at position {where}; "
                            "MNIST labels are 0..9")
    if arrays[0].shape[1] != arrays[2].shape[1]:
        raise UserError(f"dataset.root={root!r}: {paths[0].name} has {arrays[0].shape[1]} pixels an image "
                        f"but {paths[2].name} {arrays[2].shape[1]}")
    return tuple(arrays)


def _read_idx(root: str, path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0000080<dims>, then dims big-endian sizes, then the
    bytes) as a (n,) or (n, rows·cols) uint8 view of the file's bytes: no per-image loop."""
    where = f"dataset.root={root!r}: {path}"
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{where}: not a readable gzip file ({e})") from None
    what, header = ("images" if dims == 3 else "labels"), 4 + 4 * dims
    if len(raw) < header:
        raise UserError(f"{where}: truncated: {len(raw)} bytes, less than the {header}-byte IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x800 + dims:
        raise UserError(f"{where}: magic number 0x{magic:08x}, expected 0x{0x800 + dims:08x} (IDX unsigned "
                        f"bytes in {dims} dimension{'s' if dims > 1 else ''}: MNIST {what}); not an MNIST "
                        f"{what} file")
    shape = [int(v) for v in np.frombuffer(raw, ">u4", count=dims, offset=4)]
    size = int(np.prod(shape))
    if len(raw) != header + size:
        problem = "truncated" if len(raw) < header + size else "longer than its header says"
        raise UserError(f"{where}: {problem}: the header announces {shape[0]} {what}"
                        f"{' of ' + 'x'.join(map(str, shape[1:])) if dims > 1 else ''} ({header + size} "
                        f"bytes), the file has {len(raw)} bytes")
    flat = np.frombuffer(raw, np.uint8, count=size, offset=header)  # a view of the bytes, read-only
    return flat.reshape(shape[0], int(np.prod(shape[1:]))) if dims > 1 else flat


def _pixels(images: np.ndarray, mean: float, std: float, dtype: np.dtype) -> np.ndarray:
    """(pixel/255 − mean)/std, as torchvision's ToTensor then Normalize(mean, std), in `dtype`."""
    X = images.astype(dtype)  # (N, 784), one pass
    X *= dtype.type(1.0 / (255.0 * std))
    X -= dtype.type(mean / std)
    return X

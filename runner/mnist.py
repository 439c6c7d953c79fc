"""The four MNIST files (IDX format, plain or .gz) read with numpy only; never downloaded."""
import gzip
import zlib
from pathlib import Path
from typing import List, Tuple

import numpy as np

from runner.errors import UserError

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

"""A numeric CSV file read into arrays with numpy only (nothing is evaluated): the delimiter and
a header detected, the target column chosen, and a bad cell named by its line and column."""
import csv
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import UserError

MAX_CSV_BYTES = 1 << 30  # refuse absurd files before reading them into memory


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

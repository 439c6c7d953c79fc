"""Property-based: random malformed CSV text and random override values never crash the runner;
each is either accepted or refused with one line that names the key (exit code 2)."""
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_cfg
from runner import config, csv_file
from runner.__main__ import exit_code, one_line

CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                  st.sampled_from(["", " ", "nan", "inf", "-", "1e", "0x1", "abc", "'1'", "1,5", "é", "\t"]),
                  st.text(max_size=5))
ROWS = st.lists(st.lists(CELLS, min_size=0, max_size=4), min_size=0, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, sep=st.sampled_from([",", ";", "\t", " "]), header=st.booleans(),
       junk=st.binary(max_size=8))
def test_random_csv_text_is_parsed_or_refused_with_one_line(rows, sep, header, junk):
    text = ("x" + sep + "y\n" if header else "") + "\n".join(sep.join(r) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        path.write_bytes(text.encode("utf-8", "surrogatepass") + (junk if rows and junk[:1] == b"\0" else b""))
        try:
            X, y = csv_file.load_csv(str(path))
        except config.UserError as e:
            msg = str(e)
            assert msg.startswith(f"dataset.path={str(path)!r}: ") and "\n" not in msg
            return
    # accepted: numbers only, finite, at least one feature column and one row
    assert X.ndim == 2 and y.shape == (X.shape[0], 1) and X.shape[0] >= 1 and X.shape[1] >= 1
    assert all(math.isfinite(v) for v in list(X.ravel()) + list(y.ravel()))


KEYS = ["lr", "epochs", "log_every", "seed", "loss", "dtype", "optim.batch_size", "dataset.noise",
        "dataset.n_samples", "model.std", "device.index", "experiment_name", "engine", "device.name",
        "model.init", "optim.name", "model.name", "dataset.name"]
VALUES = st.one_of(st.integers(-10**6, 10**6).map(str), st.integers(-2**70, 2**70).map(str), st.floats().map(repr),
                   st.sampled_from(["abc", "null", "true", "[]", "[1,2]", "{}", "1e-3", "-0.0", "'x'",
                                    "nan", "-inf", "1_000", " ", "mse", "float64", "numpy", "cuda",
                                    "normal", "gd", "sgd", "linear", "mlp", "synthetic_linear"]),
                   st.text(alphabet=st.characters(codec="ascii", exclude_characters="\n\r\0"),
                           max_size=8))


# 60: each example composes the whole config (~0.2 s); 120 doubled make test's longest test
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_random_override_values_are_accepted_or_refused_with_one_line(key, value):
    try:
        cfg = make_cfg(f"{key}={value}")
        config.check(cfg)
    except Exception as e:
        assert exit_code(e) == 2, (key, value, repr(e))
        line = one_line(e)
        assert "\n" not in line and line.strip()
        assert key in line or key.split(".")[-1] in line, (key, value, line)
        return
    # accepted: then the typed value really is in range
    assert cfg.lr > 0 and cfg.epochs >= 1 and cfg.log_every >= 1
    assert cfg.optim.batch_size is None or cfg.optim.batch_size >= 1
    assert 0 <= cfg.seed < 2**63
    assert [cfg[g].name for g in ("optim", "model", "dataset")] == ["gd", "linear", "synthetic_linear"]


def test_the_seed_range_is_what_numpy_and_torch_take():
    """Both ends of the range pass the check and really seed numpy, torch and the shuffle's
    generator (seed + 1); one past either end is refused before anything runs."""
    import numpy as np
    import pytest
    import torch

    for seed in (0, 2**63 - 1):
        config.check(make_cfg(f"seed={seed}"))
        np.random.default_rng(seed)
        torch.manual_seed(seed)
        torch.Generator().manual_seed(seed + 1)
    for seed in (-1, 2**63, 10**20):
        with pytest.raises(config.UserError, match=r"^seed=.*\[0, 2\*\*63\)"):
            config.check(make_cfg(f"seed={seed}"))
    with pytest.raises(ValueError):  # what the check stands in front of
        np.random.default_rng(-1)
    with pytest.raises((ValueError, RuntimeError)):
        torch.manual_seed(2**64)

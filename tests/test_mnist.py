"""dataset=mnist on small IDX files written here (scikit-learn's 8x8 digits drawn at 28x28): both
layouts, plain and .gz, every bad file refused in one line before any run, and the preset's network
learning them from the CLI. Most cases run in-process (data.build is what the CLI calls first)."""
import gzip
import struct
from functools import partial

import numpy as np
import pytest
import torch

from conftest import cli, cli_in_process, client_for, make_cfg
from runner import data
from runner.config import UserError
from test_errors import assert_one_line

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx(a: np.ndarray, magic: int = None) -> bytes:
    """The IDX format written out: magic 0x0000080<dims>, one big-endian uint32 per dimension, the bytes."""
    magic = 0x800 + a.ndim if magic is None else magic
    return struct.pack(f">I{a.ndim}I", magic, *a.shape) + a.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def digits28():
    """1000 training and 300 test images, 28x28 uint8: each 8x8 pixel (0..16) a 3x3 block of
    pixel*16, in a 2-pixel border; shuffled (scikit-learn's order groups the writers)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    img = (X[order].reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8).repeat(3, 1).repeat(3, 2)
    img = np.pad(img, ((0, 0), (2, 2), (2, 2)))  # (N, 28, 28)
    y = y[order].astype(np.uint8)
    return img[:1000], y[:1000], img[1000:1300], y[1000:1300]


def write(root, arrays, gz=False, torchvision=True, **replace):
    """The four files under root/MNIST/raw/ (torchvision's layout) or root/ itself; `replace`
    puts other bytes in a file (keyed by its name with - as _)."""
    folder = root / "MNIST" / "raw" if torchvision else root
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in zip(NAMES, arrays):
        raw = replace.get(name.replace("-", "_"), idx(a) if a is not None else None)
        if raw is not None:
            (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return root


def cfg(root, *extra):
    return make_cfg("experiment=mnist_mlp", f"dataset.root={root}", *extra)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("torchvision", [True, False], ids=["MNIST-raw", "root"])
def test_both_layouts_plain_and_gz_give_the_pixels_normalised(digits28, tmp_path, gz, torchvision):
    root = write(tmp_path, digits28, gz=gz, torchvision=torchvision)
    c = cfg(root)
    d = data.build(c, 0)
    train, labels, test, test_labels = digits28
    # torchvision's ToTensor then Normalize((0.1307,), (0.3081,)), computed here in float64
    expected = (train.reshape(1000, 784) / 255.0 - 0.1307) / 0.3081
    assert d.X.shape == (1000, 784) and d.X.dtype == np.float32
    np.testing.assert_allclose(d.X, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.X_test, (test.reshape(300, 784) / 255.0 - 0.1307) / 0.3081, rtol=1e-6, atol=1e-6)
    assert (d.y == labels).all() and (d.y_test == test_labels).all() and d.n_classes == 10
    assert d.y.dtype == np.int64


def test_limit_mean_std_and_float64(digits28, tmp_path):
    root = write(tmp_path, digits28)
    d = data.build(cfg(root, "dataset.limit=100", "dataset.mean=0", "dataset.std=1", "dtype=float64"), 0)
    assert d.X.dtype == np.float64 and len(d.X) == len(d.y) == 100 and len(d.X_test) == 300
    np.testing.assert_allclose(d.X, digits28[0][:100].reshape(100, 784) / 255.0, rtol=1e-15, atol=1e-15)
    assert (d.y == digits28[1][:100]).all()


def cut(b: bytes, n: int) -> bytes:
    return b[:len(b) - n]


def bad_cases(arrays):
    """(files to write, replacements, extra overrides, expected parts of the one line)."""
    img, lab, timg, tlab = arrays
    return {
        "missing_file": ([img, lab, timg, None], {}, [], ["no t10k-labels-idx1-ubyte in", "MNIST/raw/ or",
                                                        "train-images-idx3-ubyte, train-labels-idx1-ubyte",
                                                        "download=True"]),
        "truncated_images": (arrays, {"train_images_idx3_ubyte": cut(idx(img), 100)}, [],
                             ["train-images-idx3-ubyte:", "truncated", "1000 images of 28x28 (784016 bytes)",
                              "783916 bytes"]),
        "truncated_header": (arrays, {"t10k_labels_idx1_ubyte": idx(tlab)[:5]}, [], ["t10k-labels", "truncated"]),
        "longer": (arrays, {"train_labels_idx1_ubyte": idx(lab) + b"\0"}, [], ["longer than its header says"]),
        "wrong_magic": (arrays, {"train_images_idx3_ubyte": idx(img, magic=0x801)}, [],
                        ["train-images-idx3-ubyte:", "magic number 0x00000801, expected 0x00000803"]),
        "labels_as_images": (arrays, {"t10k_images_idx3_ubyte": idx(tlab)}, [],
                             ["t10k-images-idx3-ubyte:", "expected 0x00000803"]),
        "count_mismatch": (arrays, {"train_labels_idx1_ubyte": idx(lab[:999])}, [],
                           ["train-images-idx3-ubyte holds 1000 images but train-labels-idx1-ubyte 999 labels"]),
        "test_count_mismatch": (arrays, {"t10k_images_idx3_ubyte": idx(timg[:299])}, [],
                                ["t10k-images-idx3-ubyte holds 299 images", "300 labels"]),
        "label_out_of_range": (arrays, {"train_labels_idx1_ubyte": idx(np.r_[lab[:7], 12, lab[8:]])}, [],
                               ["label 12 at position 7", "0..9"]),
        "other_image_size": (arrays, {"t10k_images_idx3_ubyte": idx(timg[:, :20, :20])}, [],
                             ["784 pixels an image", "400"]),
        "no_images": (arrays, {"train_images_idx3_ubyte": idx(img[:0]), "train_labels_idx1_ubyte": idx(lab[:0])},
                      [], ["holds no images"]),
        "limit_too_large": (arrays, {}, ["dataset.limit=1001"], ["dataset.limit=1001", "only 1000 images"]),
    }


BAD = ["missing_file", "truncated_images", "truncated_header", "longer", "wrong_magic", "labels_as_images",
       "count_mismatch", "test_count_mismatch", "label_out_of_range", "other_image_size", "no_images",
       "limit_too_large"]


@pytest.mark.parametrize("case", BAD)
def test_bad_files_are_one_line_naming_the_file(case, digits28, tmp_path):
    assert list(bad_cases(digits28)) == BAD
    files, replace, extra, needles = bad_cases(digits28)[case]
    root = write(tmp_path, files, **replace)
    with pytest.raises(UserError) as e:
        data.build(cfg(root, *extra), 0)
    msg = str(e.value)
    assert "\n" not in msg and (msg.startswith(f"dataset.root='{root}'") or msg.startswith("dataset.limit"))
    for n in needles:
        assert n in msg, (n, msg)


def test_bad_gzip_and_no_folder_are_one_line(digits28, tmp_path):
    gz = write(tmp_path / "gz", digits28, gz=True)
    raw = gz / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    raw.write_bytes(raw.read_bytes()[:5000])  # a download cut short
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz: not a readable gzip file"):
        data.build(cfg(gz), 0)
    for root, what in ((tmp_path / "nothing", "no such folder"), (raw, "not a folder")):
        with pytest.raises(UserError) as e:
            data.build(cfg(root), 0)
        assert what in str(e.value) and "MNIST('" in str(e.value) and ", download=True)" in str(e.value)
        assert all(n in str(e.value) for n in NAMES)


@pytest.mark.parametrize("case", ["no_folder", "truncated_images", "wrong_magic", "count_mismatch"])
def test_bad_files_from_the_cli_exit_2_and_leave_no_run(case, digits28, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    if case != "no_folder":
        files, replace, _, _ = bad_cases(digits28)[case]
        write(root, files, **replace)
    # dataset.root defaults to ./data; the first case through a real process, the rest in this one
    run = cli if case == "no_folder" else partial(cli_in_process, monkeypatch=monkeypatch, capsys=capsys)
    out = run("experiment=mnist_mlp", cwd=tmp_path)
    assert_one_line(out, 2, "error: dataset.root='data'",
                    *({"no_folder": ["no such folder", "download=True"], "truncated_images": ["truncated"],
                       "wrong_magic": ["magic number"], "count_mismatch": ["999 labels"]}[case]))
    assert not (tmp_path / "mlflow.db").exists()  # refused before torch, mlflow or any run


@pytest.mark.slow
def test_the_preset_learns_the_digits_from_the_cli(digits28, tmp_path):
    root = write(tmp_path / "mnist", digits28, gz=True)
    # batches of 50 for 20 epochs (400 steps): 1000 images at 200 a batch are only 50 steps in the
    # preset's 10 epochs; seeds 0-3 then reach 0.967-0.973. One torch thread:
    # with -n 2 on 2 cores, two threads per process made each step ~10x slower at random.
    out = cli("experiment=mnist_mlp", f"dataset.root={root}", "optim.batch_size=50", "epochs=20", cwd=tmp_path,
              env={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client_for(uri)
    [run] = c.search_runs([c.get_experiment_by_name("mnist_mlp").experiment_id])
    acc = sorted((m.step, m.value) for m in c.get_metric_history(run.info.run_id, "test_accuracy"))
    assert [s for s, _ in acc] == list(range(21))
    assert acc[0][1] < 0.3 and acc[-1][1] >= 0.9, acc  # from chance to learned
    print(f"test_accuracy after 20 epochs: {acc[-1][1]:.4f}")
    assert f"test_accuracy={acc[-1][1]:.6g}" in out.stdout
    assert len(c.get_metric_history(run.info.run_id, "test_loss")) == 21
    params = run.data.params
    assert params["model.hidden"] == "[200, 200]" and params["model.activation"] == "relu"
    assert params["dataset.root"] == str(root) and params["optim.momentum"] == "0.9"
    names = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"confusion.png", "model.pt", "loss_curve.png"} <= names
    state = torch.load(c.download_artifacts(run.info.run_id, "model.pt", str(tmp_path)), weights_only=True)
    assert [tuple(v.shape) for k, v in state.items() if k.endswith("weight")] == [(200, 784), (200, 200), (10, 200)]

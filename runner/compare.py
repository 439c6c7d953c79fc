"""python -m runner.compare: a sweep's child runs as a table (only the params that differ, the
status and the final metrics) and one PNG overlaying their loss curves. Default: the latest sweep."""
import argparse
import math
import os
import sys
import types
from pathlib import Path
from typing import List, Optional

from runner.tracking import read, store
from runner.naming import SWEPT_PREFIX
from runner.config import UserError

METRICS = ("final_loss", "train_seconds")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runner.compare", description=__doc__)
    p.add_argument("--experiment", help="look for the latest sweep in this experiment only")
    p.add_argument("--parent", metavar="RUN_ID", help="the sweep's parent run (default: the latest sweep)")
    p.add_argument("--sort", default="final_loss", metavar="KEY",
                   help="column to sort by: final_loss (default), train_seconds, status, or a param")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/mlflow.db")
    p.add_argument("--out", metavar="PNG", help="where to write the overlaid loss curves (default: "
                   "loss_curves_PARENT.png, PARENT the first 8 characters of the sweep's run id)")
    return p.parse_args(argv)


def find_parent(client, args: argparse.Namespace):
    if args.parent:
        return read.get_run(client, args.parent)
    parent = read.latest_sweep(client, args.experiment)
    if parent is None:
        where = f"experiment {args.experiment!r}" if args.experiment else "this store"
        raise UserError(f"no sweep found in {where}; run one first: python -m runner -m lr=1e-3,1e-2")
    return parent


def table(runs: list, sort: str):
    """One row per run: the params that differ across runs (and the one sorted by), status,
    final metrics, run id."""
    import pandas as pd

    # `Swept: KEY` repeats KEY for MLflow's Compare page (runner.tracking.sweep): not twice here
    params = pd.DataFrame([{k: v for k, v in r.data.params.items() if not k.startswith(SWEPT_PREFIX)}
                           for r in runs])
    differing = [c for c in params.columns if params[c].fillna("<unset>").nunique() > 1 or c == sort]
    df = params[differing].apply(_numeric_if_possible)
    df["status"] = [r.info.status for r in runs]
    for key in METRICS:
        df[key] = [r.data.metrics.get(key, math.nan) for r in runs]
    failures = [r.data.tags.get("runner.failure", "") for r in runs]
    if any(failures):
        df["failure"] = failures
    df["run_id"] = [r.info.run_id for r in runs]
    if sort not in df.columns:
        raise UserError(f"--sort={sort!r}: not a column; choose a param ({', '.join(params.columns)}) "
                        f"or one of {', '.join(c for c in df.columns if c not in params.columns)}")
    return df.sort_values(sort, na_position="last", kind="stable").reset_index(drop=True)


def _numeric_if_possible(column):
    import pandas as pd

    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        client = store.open_store(store.resolve_uri(args.tracking_uri, os.getcwd()))
        parent = find_parent(client, args)
        runs = read.children(client, parent)
        if not runs:
            raise UserError(f"run {parent.info.run_id} ({parent.info.run_name}) has no child runs")
        df = table(runs, args.sort)
        out = Path(args.out or f"loss_curves_{parent.info.run_id[:8]}.png")
        if not out.resolve().parent.is_dir():
            raise UserError(f"--out={str(out)!r}: folder {str(out.parent)!r} does not exist")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import pandas as pd

    from runner import plots

    experiment = client.get_experiment(parent.info.experiment_id).name
    print(f"{parent.info.run_name!r}: parent run {parent.info.run_id}, experiment {experiment!r}, "
          f"{len(runs)} runs")
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(df.to_string(index=False))
    names = {r.info.run_id: r.info.run_name or r.info.run_id for r in runs}
    curves = {}
    for run_id in df["run_id"]:  # in table order; two runs of one config keep two lines
        label = names[run_id] if names[run_id] not in curves else f"{names[run_id]} ({run_id[:8]})"
        curves[label] = read.curve(client, run_id)
    plots.overlay({k: v for k, v in curves.items() if v}, out, parent.info.run_name or "sweep")
    print(f"wrote {out}")
    return 0


class _Callable(types.ModuleType):
    """`runner.compare` is this module (python -m runner.compare) and, called, the DataFrame it
    prints: runner.compare(experiment="gd_vs_sgd") is runner.api.compare."""

    def __call__(self, *args, **kwargs):
        from runner import api

        return api.compare(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable

if __name__ == "__main__":
    sys.exit(main())

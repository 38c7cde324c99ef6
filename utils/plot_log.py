"""Plot a training log: every loss term and the learning rate against the iteration.

    python -m utils.plot_log weights/train_log.csv [-o curves.png]

One panel per column of ``train_log.csv`` (besides epoch, iteration and timing), the raw
values and a running mean; the lr on a log scale. With a ``val_log.csv`` beside it (train.py
--val_dataset), a last panel shows the easy / medium / hard AP per epoch. Default output:
``train_log.png`` beside the log.
"""
import argparse
import os

import matplotlib
import numpy as np

from .cli import HelpFormatter
from .errors import TDKDError, exit_on_error, located
from .logger import read_log

NOT_PLOTTED = ("epoch", "iteration", "seconds")
AP_COLUMNS = ("easy", "medium", "hard")


def _read(path):
    if not os.path.isfile(path):
        raise TDKDError(located(path, "log not found"))
    try:
        rows = read_log(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise TDKDError(located(path, f"not a train.py CSV log ({exc})")) from None
    if not rows:
        raise TDKDError(located(path, "log has no rows yet"))
    return rows


def running_mean(values, window):
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    sums = np.cumsum(np.insert(np.asarray(values, float), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_log(log_path, out_path=None):
    """Save the curves of ``log_path`` as a PNG; returns its path."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read(log_path)
    columns = [c for c in rows[0] if c not in NOT_PLOTTED]
    val_path = os.path.join(os.path.dirname(os.path.abspath(log_path)), "val_log.csv")
    val_rows = _read(val_path) if os.path.isfile(val_path) else []
    panels = len(columns) + bool(val_rows)
    cols = min(3, panels)
    rows_of_panels = -(-panels // cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(4.5 * cols, 3.2 * rows_of_panels), squeeze=False)
    iterations = [r["iteration"] for r in rows]
    window = max(1, len(rows) // 50)
    for ax, column in zip(axes.flat, columns):
        values = [r[column] for r in rows]
        if column == "lr":
            ax.plot(iterations, values)
            ax.set_yscale("log")
        else:
            ax.plot(iterations, values, alpha=0.35, linewidth=0.8)
            ax.plot(iterations, running_mean(values, window), linewidth=1.5)
        ax.set_title(column)
        ax.set_xlabel("iteration")
    if val_rows:
        ax = axes.flat[len(columns)]
        for setting in AP_COLUMNS:
            ax.plot([r["epoch"] + 1 for r in val_rows], [r[setting] for r in val_rows], marker="o", label=setting)
        ax.set_title("validation AP")
        ax.set_xlabel("epoch")
        ax.legend()
    for ax in list(axes.flat)[panels:]:
        ax.set_visible(False)
    fig.suptitle(os.path.abspath(log_path), fontsize=8)
    fig.tight_layout()
    out_path = out_path or os.path.splitext(log_path)[0] + ".png"
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("log", help="train_log.csv of a train.py run")
    p.add_argument("-o", "--output", help="PNG to write (default: the log's name with .png)")
    return p.parse_args(argv)


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    print(plot_log(args.log, args.output))


if __name__ == "__main__":
    main()

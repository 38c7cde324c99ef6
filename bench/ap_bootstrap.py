"""How much of an AP difference is luck: a paired bootstrap over val images and training seeds.

    python bench/ap_bootstrap.py --gt outputs/quickstart/data/val/ground_truth \\
        --base outputs/quickstart/seed0/student_more/predictions outputs/quickstart/seed1/student_more/predictions \\
        --other outputs/quickstart/seed0/tdkd/predictions outputs/quickstart/seed1/tdkd/predictions

``--base`` and ``--other`` are prediction folders (``test_widerface.py``'s output) paired by
position, e.g. the control and a distilled student of the same training seed. Every resample
draws the val images with replacement, the same draw for every pair, and recomputes each AP
(``evaluation.counts_per_image``: the exact curves of the whole set when every image is drawn
once). Printed per pair and for the mean over the pairs: the observed difference (other minus
base, AP in %), the 5th and 95th percentiles of the resampled differences and the share of
resamples in which ``other`` is ahead. A pair's band holds the spread due to which images are in
the val set. The mean's band holds both: every resample also draws the pairs (training seeds)
with replacement, so a gain that only some seeds show gets a wide band.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402
from widerface_evaluate.evaluation import SETTINGS, ap_from_counts, counts_per_image, load_ground_truth, read_predictions  # noqa: E402,E501


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gt", required=True, help="folder of the wider_*_val.mat files")
    p.add_argument("--base", nargs="+", required=True, help="prediction folders of the reference runs")
    p.add_argument("--other", nargs="+", required=True, help="prediction folders compared with them, same order")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    args = p.parse_args(argv)
    if len(args.base) != len(args.other):
        p.error(f"--base has {len(args.base)} folders, --other {len(args.other)}: they are paired")
    return args


def resample_counts(rng, images):
    """How many times each of ``images`` items one bootstrap draw (with replacement) takes."""
    return np.bincount(rng.integers(0, images, images), minlength=images)


def bootstrap_differences(base_counts, other_counts, resamples, seed):
    """(observed, resampled, pair_draws) AP differences other minus base in %:
    ``observed[setting]`` (pairs,) and ``resampled[setting]`` (resamples, pairs), one image draw
    per resample for every pair; ``pair_draws`` (resamples, pairs): the pairs each resample draws
    with replacement for the mean (``mean_of_drawn_pairs``)."""
    images = len(next(iter(base_counts[0].values()))[2])
    pairs = len(base_counts)
    rng = np.random.default_rng(seed)

    def differences(weights):
        pairs = [(ap_from_counts(b, weights), ap_from_counts(o, weights)) for b, o in zip(base_counts, other_counts)]
        return {s: np.array([100 * (other[s] - base[s]) for base, other in pairs]) for s in SETTINGS}

    observed = differences(None)
    draws = [differences(resample_counts(rng, images)) for _ in range(resamples)]
    pair_draws = rng.integers(0, pairs, (resamples, pairs))
    return observed, {s: np.stack([d[s] for d in draws]) for s in SETTINGS}, pair_draws


def mean_of_drawn_pairs(resampled, pair_draws):
    """Per resample, the mean difference over the pairs it drew (images and seeds resampled)."""
    return np.take_along_axis(resampled, pair_draws, axis=1).mean(axis=1)


def report(observed, resampled, pair_draws, names):
    lines = ["| pair | subset | other minus base | 5th - 95th percentile | other ahead |", "|---|---|---|---|---|"]
    columns = [(name, i) for i, name in enumerate(names)]
    columns += [("mean (seeds and images resampled)", None)] if len(names) > 1 else []
    for name, i in columns:
        for s in SETTINGS:
            obs = observed[s].mean() if i is None else observed[s][i]
            draws = mean_of_drawn_pairs(resampled[s], pair_draws) if i is None else resampled[s][:, i]
            low, high = np.percentile(draws, [5, 95])
            lines.append(f"| {name} | {s} | {obs:+.2f} | {low:+.2f} to {high:+.2f} | {100 * np.mean(draws > 0):.0f} % |")
    return "\n".join(lines)


def pair_names(base, other):
    """``(common folder, ["BASE vs OTHER"])``: each pair named by its folders as given, less the
    leading folders that every folder shares (runs differ by seed and arm, not by their root)."""
    parts = [Path(folder).parts for folder in [*base, *other]]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    short = ["/".join(p[common:]) for p in parts]
    return "/".join(parts[0][:common]), [f"{b} vs {o}" for b, o in zip(short[:len(base)], short[len(base):])]


@exit_on_error
def main(argv=None):
    args = parse_args(argv)
    ground_truth = load_ground_truth(args.gt)
    base = [counts_per_image(read_predictions(folder), ground_truth) for folder in args.base]
    other = [counts_per_image(read_predictions(folder), ground_truth) for folder in args.other]
    observed, resampled, pair_draws = bootstrap_differences(base, other, args.resamples, args.seed)
    prefix, names = pair_names(args.base, args.other)
    below = f", prediction folders below {prefix}/" if prefix else ""
    print(f"{args.resamples} paired resamples of the {len(ground_truth.names)} val images"
          f"{' and of the pairs' if len(names) > 1 else ''}, AP in %{below}:\n")
    print(report(observed, resampled, pair_draws, names))


if __name__ == "__main__":
    main()

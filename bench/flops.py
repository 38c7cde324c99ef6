"""Parameters and FLOPs of every network in ``config.NETWORKS``, as a markdown table.

    python bench/flops.py [--sizes 640x480 640x640]

Counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image (on the meta device:
nothing is computed), for the deployed detector and for the teacher layout with task heads
(``task_heads=True``, which only teachers train with). FlopCounterMode counts convolutions
and matrix products, a multiply-add as 2 FLOPs, and nothing for batch norm (folded at
deployment), activations, additions or upsampling. GMACs (half the FLOPs) is the unit that
mmcv-based tools such as SCRFD's ``get_flops.py`` print as "GFlops".
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import config  # noqa: E402
from models import build_model  # noqa: E402
from utils.cli import HelpFormatter  # noqa: E402
from utils.errors import exit_on_error  # noqa: E402

SIZES = ("640x480", "640x640")  # width x height: VGA, as SCRFD reports, and the training size


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got '{text}'") from None
    return width, height


def count(network, task_heads, sizes):
    """``(parameters, [FLOPs per size])`` of ``network`` for ``(width, height)`` sizes."""
    with torch.device("meta"):
        model = build_model(config.network_config(network), task_heads=task_heads).eval()
    params = sum(p.numel() for p in model.parameters())
    flops = []
    for width, height in sizes:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, height, width, device="meta"))
        flops.append(counter.get_total_flops())
    return params, flops


def table(sizes):
    """The markdown table: one row per network and head layout."""
    names = [f"{w}x{h}" for w, h in sizes]
    lines = ["| network | heads | parameters | " + " | ".join(f"GFLOPs {n}" for n in names)
             + f" | GMACs {names[0]} |",
             "|---|---|---:|" + "---:|" * (len(sizes) + 1)]
    for network in config.NETWORKS:
        for task_heads in (False, True):
            params, flops = count(network, task_heads, sizes)
            heads = "task heads (teacher training)" if task_heads else "deployed"
            lines.append(f"| {network} | {heads} | {params / 1e6:.3f} M | "
                         + " | ".join(f"{f / 1e9:.3f}" for f in flops) + f" | {flops[0] / 2e9:.3f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in SIZES],
                   help="input sizes WIDTHxHEIGHT (default: " + " ".join(SIZES) + ")")
    return p.parse_args(argv)


@exit_on_error
def main(argv=None):
    print(table(parse_args(argv).sizes))


if __name__ == "__main__":
    main()

"""How many threads PyTorch and ONNX Runtime use: the one policy of every script
(docs/SPEED.md, "Threads").

PyTorch's default is one thread per core of the machine. On a machine that other jobs keep
busy those threads wait for each other at every operator: a 2-core machine running two other
jobs made ``test_widerface.py``'s forward over 10x slower with two threads than with one. The
automatic count is therefore the cores this process may use less the load already on them.
ONNX Runtime sessions take PyTorch's count (``backends.OnnxPredictor``).
"""
import argparse
import os

THREADS_HELP = ("threads of PyTorch and ONNX Runtime; default: automatic, $OMP_NUM_THREADS where set, else the "
                "cores this process may use less the 1-minute load average, at least 1 (docs/SPEED.md#threads)")


def usable_cores():
    """The cores this process may run on (its CPU affinity; all of them where it is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def automatic_threads(cores=None, load=None, environ=None):
    """``$OMP_NUM_THREADS`` where it is a positive integer, else ``max(1, cores - round(load))``:
    the cores nobody else is using, by the 1-minute load average of the machine."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("OMP_NUM_THREADS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cores = usable_cores() if cores is None else cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, cores - round(load))


TRAINING_THREADS_HELP = ("threads of PyTorch; default: $OMP_NUM_THREADS where set, else PyTorch's own (one per "
                         "core), whatever the load: another count sums floats in another order and changes the "
                         "trained weights (docs/SPEED.md#threads)")


def add_threads_argument(parser, training=False):
    """``--threads N``; default: ``automatic_threads`` (its value now is shown in ``--help``), or
    for training PyTorch's own count, which does not follow the load (``set_threads``)."""
    help_text = TRAINING_THREADS_HELP if training else f"{THREADS_HELP}; here now: {automatic_threads()}"
    parser.add_argument("--threads", type=positive_int, metavar="N", help=help_text)


def positive_int(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def set_threads(threads=None, training=False):
    """Give PyTorch (and with it every ONNX Runtime session made afterwards) ``threads``, or
    the automatic count; in training without ``threads``, leave PyTorch's own count (it reads
    $OMP_NUM_THREADS), so that a run's weights never depend on the machine's load. Returns
    the count in use."""
    import torch

    if threads or not training:
        torch.set_num_threads(threads or automatic_threads())
    return torch.get_num_threads()

"""Command-line conventions shared by every script.

Imports nothing heavy at module level: the evaluator uses ``HelpFormatter`` and must not pay
for importing PyTorch (about a second) that it never uses.
"""
import argparse

DEVICE_HELP = "cpu or cuda[:N]; default: cuda where a GPU is available, else cpu"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the module docstring's layout and shows every option's default in ``--help``
    (unless its help text already says how the default is chosen)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def default_device():
    """The one ``--device`` rule of every tool: the GPU where one is available, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_argument(parser):
    """``--device`` with the rule of ``default_device`` (the resolved value is shown in ``--help``)."""
    parser.add_argument("--device", default=default_device(), help=f"{DEVICE_HELP} (here: {default_device()})")

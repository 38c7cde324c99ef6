"""Run by tests/test_train.py under torchrun: train, then save this rank's weights."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import train  # noqa: E402


def main():
    out = sys.argv[1]
    model = train.run(train.parse_args(sys.argv[2:]))
    torch.save({k: v for k, v in model.named_parameters()}, os.path.join(out, f"rank{os.environ['RANK']}.pth"))


if __name__ == "__main__":
    main()

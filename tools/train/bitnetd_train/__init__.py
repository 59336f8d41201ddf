"""bitnetd-train: train a tiny ternary decide model for a bitnetd route (tools/train/README.md).
Also the shared training code of tools/train-demo and tools/train-extract."""

"""Command-line options of the tiny training runs the tests launch (the demo recipe at 32 px, on CPU)."""

TINY_TRAIN_ARGS = [
    "--config",
    "demo",
    "--split",
    "random",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--workers",
    "0",
]

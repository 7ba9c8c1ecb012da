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

#: The datasets of the tiny merged runs: SYNTHETIC sets in the NIH, CheXpert and PadChest layouts.
MERGED_LAYOUTS = ("nih", "chexpert", "padchest")


def write_tiny_layouts(root, layouts=MERGED_LAYOUTS, *, images: int = 150, size: int = 64) -> dict:
    """Write a small SYNTHETIC dataset per layout under ``root``; return layout → folder."""
    from cxreader.synthetic.layouts import write_layout

    return {
        layout: write_layout(layout, root / layout, images=images, size=size, seed=index)
        for index, layout in enumerate(layouts)
    }


def data_arguments(folders: dict) -> list[str]:
    """``--data NAME=DIR`` for each folder."""
    return [argument for name, folder in folders.items() for argument in ("--data", f"{name}={folder}")]

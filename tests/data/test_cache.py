"""The preprocessing cache: identical pixels to decoding the files, bad files listed, interrupted builds resume."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxreader.data import cache as cache_module
from cxreader.data.cache import (
    CacheImageSource,
    build_cache,
    decode_for_cache,
    list_image_files,
    read_cache_index,
)
from cxreader.data.dataset import ChestXrayDataset, FileImageSource
from cxreader.data.io import read_image_uint8
from cxreader.data.transforms import EvalPreset
from cxreader.errors import DataError, ImageReadError

SIZE = 32


def _radiograph(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth image with edges (Lanczos ringing and rounding both get exercised)."""
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 80 * np.sin(x / 7.0) * np.cos(y / 11.0)
    base[height // 3 : height // 2, width // 4 : width // 2] = 250
    return np.clip(base + rng.normal(0, 12, (height, width)), 0, 255).astype(np.uint8)


def _write_images(folder: Path, count: int = 6, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:08d}_000.png"
        Image.fromarray(_radiograph(rng, 96 + 8 * i, 80)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def mixed_images(tmp_path) -> list[Path]:
    """One file per decoding path: plain grey, grey+RGBA as in NIH, RGB, 16-bit, palette, JPEG, eXIf."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey = _radiograph(rng, 120, 100)
    Image.fromarray(grey).save(folder / "a_grey.png")
    Image.fromarray(np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1), mode="RGBA").save(
        folder / "b_rgba.png"
    )
    colour = np.stack([grey, np.roll(grey, 5, axis=1), 255 - grey], axis=-1)
    Image.fromarray(colour, mode="RGB").save(folder / "c_rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "d_16bit.png")
    Image.fromarray(grey).convert("P").save(folder / "e_palette.png")
    Image.fromarray(grey).save(folder / "f_photo.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: read_image_uint8 turns it upright, so the fast path must step aside
    Image.fromarray(grey).save(folder / "g_exif.png", exif=exif)
    Image.fromarray(grey[:SIZE, :SIZE]).save(folder / "h_exact.png")  # already at the cache size
    return sorted(folder.iterdir())


@pytest.mark.parametrize("fast_png", [True, False])
def test_cache_rows_equal_read_image_uint8(tmp_path, mixed_images, fast_png):
    summary = build_cache(mixed_images[0].parent, tmp_path / "cache", size=SIZE, workers=1, fast_png=fast_png)
    assert summary.missing == [] and summary.decoded == len(mixed_images)
    names = [path.name for path in mixed_images]
    source = CacheImageSource(tmp_path / "cache", names, expected_size=SIZE)
    for index, path in enumerate(mixed_images):
        np.testing.assert_array_equal(
            source.load(index), read_image_uint8(path, size=SIZE), err_msg=path.name
        )


def test_fast_png_path_is_taken_only_for_plain_pngs(mixed_images):
    pytest.importorskip("pyspng")
    by_name = {path.name: path for path in mixed_images}
    for name in ("a_grey.png", "b_rgba.png", "c_rgb.png"):
        fast = cache_module._fast_png_uint8(by_name[name].read_bytes(), SIZE)
        assert fast is not None, name
        np.testing.assert_array_equal(fast, read_image_uint8(by_name[name], size=SIZE))
    for name in ("d_16bit.png", "e_palette.png", "f_photo.jpg", "g_exif.png"):
        assert cache_module._fast_png_uint8(by_name[name].read_bytes(), SIZE) is None, name


def test_real_nih_pngs_cache_identically(tmp_path, shared_data):
    folder = shared_data / "nih" / "images_1024"
    paths = sorted(folder.glob("*.png"))[:4]  # includes the RGBA file 00002578_000.png
    summary = build_cache(paths, tmp_path / "cache", size=64, workers=2)
    assert summary.missing == [] and summary.total == len(paths)
    source = CacheImageSource(tmp_path / "cache", [p.name for p in paths], expected_size=64)
    for index, path in enumerate(paths):
        np.testing.assert_array_equal(source.load(index), read_image_uint8(path, size=64), err_msg=path.name)


def test_corrupt_images_are_listed_as_missing_with_their_reason(tmp_path):
    paths = _write_images(tmp_path / "images", count=3)
    (tmp_path / "images" / "00000100_000.png").write_bytes(paths[0].read_bytes()[:200])  # truncated
    (tmp_path / "images" / "00000101_000.png").write_text("<html>not an image</html>")
    (tmp_path / "images" / "notes.txt").write_text("not listed: not an image suffix")
    summary = build_cache(tmp_path, tmp_path / "cache", size=SIZE, workers=2)
    assert summary.total == 5
    missing = dict(summary.missing)
    assert set(missing) == {"00000100_000.png", "00000101_000.png"}
    assert "truncated" in missing["00000100_000.png"]
    assert "not an image" in missing["00000101_000.png"]
    entries = {entry["name"]: entry for entry in read_cache_index(tmp_path / "cache").entries}
    assert entries["00000100_000.png"]["status"] == "missing"
    assert entries["00000100_000.png"]["reason"] == missing["00000100_000.png"]
    assert entries["00000000_000.png"]["status"] == "ok"
    # Reading keeps the dataset's per-sample error: the bad file is named and skipped, the others load.
    source = CacheImageSource(
        tmp_path / "cache", ["00000000_000.png", "00000101_000.png"], expected_size=SIZE
    )
    assert source.load(0).shape == (SIZE, SIZE)
    with pytest.raises(ImageReadError, match="00000101_000.png: not an image"):
        source.load(1)


def test_interrupted_build_resumes_where_it_stopped(tmp_path):
    paths = _write_images(tmp_path / "images", count=7)
    out = tmp_path / "cache"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C right after the first commit

    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path, out, size=SIZE, workers=1, chunk_size=3, progress=interrupt)
    assert not read_cache_index(out).complete
    with pytest.raises(DataError, match="unfinished"):
        CacheImageSource(out, [paths[0].name], expected_size=SIZE)
    # A kill while the journal line was being written leaves half a line: it must be ignored.
    with open(out / "progress.jsonl", "a") as journal:
        journal.write('{"rows": [[3, "ok", null')

    calls: list[tuple[int, int]] = []
    summary = build_cache(
        tmp_path, out, size=SIZE, workers=1, chunk_size=3, progress=lambda *a: calls.append(a)
    )
    assert (summary.reused, summary.decoded) == (3, 4)
    assert calls[-1] == (4, 4)
    assert not (out / "progress.jsonl").exists()
    source = CacheImageSource(out, [p.name for p in paths], expected_size=SIZE)
    for index, path in enumerate(paths):
        np.testing.assert_array_equal(source.load(index), read_image_uint8(path, size=SIZE))

    again = build_cache(tmp_path, out, size=SIZE, workers=1)
    assert (again.reused, again.decoded) == (7, 0)


def test_changed_source_is_decoded_again(tmp_path):
    paths = _write_images(tmp_path / "images", count=3)
    out = tmp_path / "cache"
    build_cache(tmp_path, out, size=SIZE, workers=1)
    Image.fromarray(np.full((50, 60), 17, dtype=np.uint8)).save(paths[1])
    summary = build_cache(tmp_path, out, size=SIZE, workers=1)
    assert (summary.decoded, summary.reused) == (1, 2)
    source = CacheImageSource(out, [paths[1].name], expected_size=SIZE)
    np.testing.assert_array_equal(source.load(0), np.full((SIZE, SIZE), 17, dtype=np.uint8))


def test_other_images_or_size_need_overwrite(tmp_path):
    _write_images(tmp_path / "images", count=2)
    out = tmp_path / "cache"
    build_cache(tmp_path, out, size=SIZE, workers=1)
    with pytest.raises(DataError, match="--overwrite"):
        build_cache(tmp_path, out, size=SIZE * 2, workers=1)
    _write_images(tmp_path / "images", count=3)
    with pytest.raises(DataError, match="other images.*new: 00000002_000.png"):
        build_cache(tmp_path, out, size=SIZE, workers=1)
    summary = build_cache(tmp_path, out, size=SIZE, workers=1, overwrite=True)
    assert (summary.total, summary.decoded) == (3, 3)


def test_cache_source_refuses_other_size_and_unknown_names(tmp_path):
    paths = _write_images(tmp_path / "images", count=2)
    build_cache(tmp_path, tmp_path / "cache", size=SIZE, workers=1)
    with pytest.raises(DataError, match=f"holds {SIZE}x{SIZE} images but 256x256"):
        CacheImageSource(tmp_path / "cache", [paths[0].name], expected_size=256)
    with pytest.raises(DataError, match="1 image\\(s\\) are not in the cache \\(first: 99999999_000.png\\)"):
        CacheImageSource(tmp_path / "cache", [paths[0].name, "99999999_000.png"], expected_size=SIZE)
    with pytest.raises(DataError, match="not a cxreader cache"):
        CacheImageSource(tmp_path / "images", [paths[0].name])


def test_cache_source_pickles_without_the_array_and_feeds_the_dataset(tmp_path):
    paths = _write_images(tmp_path / "images", count=4)
    build_cache(tmp_path, tmp_path / "cache", size=SIZE, workers=1)
    names = [f"images/{p.name}" for p in reversed(paths)]  # a directory prefix is ignored, order is kept
    source = CacheImageSource(tmp_path / "cache", names, expected_size=SIZE)
    source.load(0)  # maps the array
    clone = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 4 * SIZE * SIZE
    np.testing.assert_array_equal(clone.load(1), source.load(1))
    assert source.name(0) == paths[-1].name

    labels = np.zeros((len(paths), 14), dtype=np.float32)
    preset = EvalPreset(image_size=24)
    from_cache = ChestXrayDataset(source, labels, preset)
    from_files = ChestXrayDataset(FileImageSource(list(reversed(paths)), SIZE), labels, preset)
    for index in range(len(paths)):
        assert torch.equal(from_cache[index]["image"], from_files[index]["image"])
        assert from_cache[index]["id"] == from_files[index]["id"]


def test_list_image_files_reads_release_layouts_and_refuses_duplicates(tmp_path):
    _write_images(tmp_path / "rel" / "images_001" / "images", count=2, seed=0)
    (tmp_path / "rel" / "images_002" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "rel" / "images_002" / "images" / "z.png")
    assert [p.name for p in list_image_files(tmp_path / "rel")] == [
        "00000000_000.png",
        "00000001_000.png",
        "z.png",
    ]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no image files"):
        list_image_files(tmp_path / "empty")
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b" / "z.png")
    with pytest.raises(DataError, match="two images share the name 'z.png'"):
        list_image_files([tmp_path / "rel" / "images_002" / "images" / "z.png", tmp_path / "b" / "z.png"])


def test_decode_for_cache_reports_unreadable_files(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        decode_for_cache(tmp_path / "absent.png", SIZE)


def test_cli_builds_and_reports(tmp_path, capsys):
    from cxreader.cli import cache_cmd

    _write_images(tmp_path / "images", count=3)
    (tmp_path / "images" / "00000009_000.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    parser = argparse.ArgumentParser()
    cache_cmd.register_data(parser.add_subparsers())
    args = parser.parse_args(["cache", "--data", str(tmp_path), "--size", str(SIZE), "--workers", "1"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"3 of 4 images at {SIZE}x{SIZE}" in printed
    assert "00000009_000.png:" in printed
    index = json.loads((tmp_path / f"cache_{SIZE}" / "index.json").read_text())
    assert index["complete"] and index["shape"] == [4, SIZE, SIZE]

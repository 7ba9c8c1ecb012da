"""Tests of cxreader.data.io: every supported encoding, the DICOM display pipeline, and every failure path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

import cxreader.data.io as cxio
from cxreader.data.io import LoadedImage, load_image, read_image_uint8, sniff_format
from cxreader.errors import ImageReadError

# ---------------------------------------------------------------------------------------------------------
# Helpers: tiny generated inputs


def read_image(source: str | Path, *, data: bytes | None = None) -> np.ndarray:
    """The display pixels of a file, float32 in [0, 1]."""
    return load_image(source, data=data).pixels


def _gradient(height: int = 24, width: int = 32, high: int = 255) -> np.ndarray:
    """A deterministic non-constant image spanning 0..high."""
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    return np.rint((0.6 * rows + 0.4 * cols) * high).astype(np.int64)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def _dicom_dataset(stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int = 12) -> Dataset:
    """A minimal CR dataset holding ``stored`` (uint16 rows x columns) as uncompressed pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST-0001"
    ds.StudyDate = "20240301"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "AP"
    ds.Rows, ds.Columns = stored.shape[-2], stored.shape[-1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _write(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window onto [0, 1], written out independently of pydicom."""
    out = (values - (center - 0.5)) / (width - 1) + 0.5
    out = np.where(values <= center - 0.5 - (width - 1) / 2, 0.0, out)
    out = np.where(values > center - 0.5 + (width - 1) / 2, 1.0, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# PNG, JPEG and other Pillow formats


def test_png_8bit_grayscale_keeps_exact_levels(tmp_path: Path) -> None:
    levels = _gradient()
    path = _write(tmp_path, "gray.png", _png_bytes(Image.fromarray(levels.astype(np.uint8), mode="L")))
    image = load_image(path)
    assert isinstance(image, LoadedImage)
    assert image.format == "png" and image.bits_stored == 8 and image.path == str(path)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == levels.shape
    np.testing.assert_allclose(image.pixels, levels / 255.0, atol=1e-7)
    assert image.metadata == {} and image.pixel_spacing_mm is None and image.view_position is None


def test_png_16bit_is_scaled_by_its_bit_depth(tmp_path: Path) -> None:
    levels = _gradient(high=65535)
    source = Image.fromarray(levels.astype(np.uint16))
    assert source.mode == "I;16"
    path = _write(tmp_path, "deep.png", _png_bytes(source))
    image = load_image(path)
    assert image.bits_stored == 16
    np.testing.assert_allclose(image.pixels, levels / 65535.0, atol=1e-7)


def test_tiff_16bit_reads_like_png(tmp_path: Path) -> None:
    levels = _gradient(high=4095)
    buffer = io.BytesIO()
    Image.fromarray(levels.astype(np.uint16)).save(buffer, format="TIFF")
    image = load_image(_write(tmp_path, "scan.tif", buffer.getvalue()))
    assert image.format == "tiff" and image.bits_stored == 16
    np.testing.assert_allclose(image.pixels, levels / 65535.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_png_with_equal_channels_is_its_grey_level(tmp_path: Path, mode: str) -> None:
    levels = _gradient().astype(np.uint8)
    channels = [levels, levels, levels]
    if mode == "RGBA":
        # NIH ships RGBA files with R=G=B; the alpha (here not opaque everywhere) must be ignored.
        channels.append(np.full_like(levels, 128))
    path = _write(tmp_path, f"{mode}.png", _png_bytes(Image.fromarray(np.dstack(channels), mode=mode)))
    np.testing.assert_allclose(read_image(path), levels / 255.0, atol=1e-7)


def test_colour_png_becomes_bt601_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    path = _write(tmp_path, "colour.png", _png_bytes(Image.fromarray(rgb, mode="RGB")))
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(read_image(path), expected, atol=0.6 / 255.0)


def test_palette_and_la_png(tmp_path: Path) -> None:
    levels = _gradient().astype(np.uint8)
    palette = Image.fromarray(levels, mode="L").convert("P")
    assert palette.mode == "P"
    np.testing.assert_allclose(
        read_image(_write(tmp_path, "p.png", _png_bytes(palette))), levels / 255.0, atol=1e-7
    )
    la = Image.fromarray(np.dstack([levels, np.zeros_like(levels)]), mode="LA")
    np.testing.assert_allclose(
        read_image(_write(tmp_path, "la.png", _png_bytes(la))), levels / 255.0, atol=1e-7
    )


@pytest.mark.parametrize(
    ("pil_format", "options"), [("BMP", {}), ("WEBP", {"lossless": True}), ("JPEG2000", {})]
)
def test_other_pillow_formats(tmp_path: Path, pil_format: str, options: dict[str, object]) -> None:
    levels = _gradient().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(levels, mode="L").save(buffer, format=pil_format, **options)
    image = load_image(_write(tmp_path, "scan.img", buffer.getvalue()))
    assert image.format == pil_format.lower()
    np.testing.assert_allclose(image.pixels, levels / 255.0, atol=1e-7)


def test_jpeg_grayscale_and_rgb(tmp_path: Path) -> None:
    levels = _gradient(64, 64)
    gray = load_image(
        _write(tmp_path, "g.jpg", _jpeg_bytes(Image.fromarray(levels.astype(np.uint8), mode="L")))
    )
    assert gray.format == "jpeg" and gray.bits_stored == 8
    assert np.abs(gray.pixels - levels / 255.0).mean() < 1.5 / 255.0

    # Flat colour blocks: JPEG keeps them nearly exact away from edges, so the luma can be checked.
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[:, :32] = (200, 40, 40)
    rgb[:, 32:] = (30, 160, 220)
    pixels = read_image(_write(tmp_path, "c.jpg", _jpeg_bytes(Image.fromarray(rgb, mode="RGB"))))
    for col, colour in ((8, (200, 40, 40)), (56, (30, 160, 220))):
        expected = (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]) / 255.0
        assert abs(float(pixels[32, col]) - expected) < 4.0 / 255.0


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((40, 80), dtype=np.uint8)
    stored[:16, :16] = 255  # bright marker top-left of the stored raster
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _write(tmp_path, "rot.jpg", _jpeg_bytes(Image.fromarray(stored, mode="L"), exif=exif.tobytes()))
    pixels = read_image(path)
    assert pixels.shape == (80, 40)
    assert pixels[:16, -16:].mean() > 0.9 and pixels[-16:, :16].mean() < 0.1
    assert read_image_uint8(path, size=20).shape == (20, 20)


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    png = _png_bytes(Image.fromarray(_gradient().astype(np.uint8), mode="L"))
    assert load_image(_write(tmp_path, "looks_like.dcm", png)).format == "png"
    dicom = _dicom_bytes(_dicom_dataset(_gradient(high=4095)))
    assert load_image(_write(tmp_path, "looks_like.png", dicom)).format == "dicom"
    assert sniff_format(png) == "png" and sniff_format(dicom) == "dicom"
    assert sniff_format(b"<html><body>404</body></html>") is None


def test_reading_from_bytes_matches_the_file(tmp_path: Path) -> None:
    payload = _png_bytes(Image.fromarray(_gradient().astype(np.uint8), mode="L"))
    path = _write(tmp_path, "a.png", payload)
    from_bytes = load_image("upload.png", data=payload)
    assert from_bytes.path == "upload.png"
    np.testing.assert_array_equal(from_bytes.pixels, read_image(path))
    np.testing.assert_array_equal(read_image_uint8("upload.png", data=payload), read_image_uint8(path))
    with pytest.raises(ImageReadError, match=r"^upload\.png: truncated"):
        load_image("upload.png", data=payload[: len(payload) // 2])


# ---------------------------------------------------------------------------------------------------------
# DICOM


def test_dicom_monochrome2_rescale_and_window(tmp_path: Path) -> None:
    stored = np.array([[0, 800, 1000], [1200, 1500, 900]], dtype=np.uint16)
    ds = _dicom_dataset(stored)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.WindowCenter, ds.WindowWidth = 1000, 1001
    image = load_image(_write(tmp_path, "mono2.dcm", _dicom_bytes(ds)))
    modality = stored * 2.0 - 1000.0
    expected = _linear_window(modality, 1000, 1001)
    assert expected.min() == 0.0 and expected.max() == 1.0  # the window clips both ends
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.pixels[0, 2] == pytest.approx(0.5005, abs=1e-6)


def test_dicom_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    stored = np.array([[0, 800, 1000], [1200, 1500, 900]], dtype=np.uint16)
    ds = _dicom_dataset(stored, photometric="MONOCHROME1")
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.WindowCenter, ds.WindowWidth = 1000, 1001
    pixels = read_image(_write(tmp_path, "mono1.dcm", _dicom_bytes(ds)))
    expected = 1.0 - _linear_window(stored * 2.0 - 1000.0, 1000, 1001)
    np.testing.assert_allclose(pixels, expected, atol=1e-6)
    # The lowest stored value (most attenuation in MONOCHROME1) is displayed white.
    assert pixels[0, 0] == pytest.approx(1.0) and pixels[1, 1] == pytest.approx(0.0)


def test_dicom_without_window_uses_actual_range_and_reads_metadata(tmp_path: Path) -> None:
    stored = np.array([[100, 200], [300, 200]], dtype=np.uint16)
    ds = _dicom_dataset(stored, bits_stored=15)
    ds.ImagerPixelSpacing = [0.2, 0.25]
    image = load_image(_write(tmp_path, "plain.dcm", _dicom_bytes(ds)))
    np.testing.assert_allclose(image.pixels, [[0.0, 0.5], [1.0, 0.5]], atol=1e-7)
    assert image.format == "dicom" and image.bits_stored == 15
    assert image.pixel_spacing_mm == (0.2, 0.25)
    assert image.view_position == "AP"
    assert image.metadata == {
        "PatientID": "TEST-0001",
        "StudyInstanceUID": str(ds.StudyInstanceUID),
        "SeriesInstanceUID": str(ds.SeriesInstanceUID),
        "SOPInstanceUID": str(ds.SOPInstanceUID),
        "StudyDate": "20240301",
        "Modality": "CR",
        "BodyPartExamined": "CHEST",
        "ViewPosition": "AP",
        "PhotometricInterpretation": "MONOCHROME2",
    }
    ds.PixelSpacing = [0.1, 0.1]  # PixelSpacing wins over ImagerPixelSpacing
    assert load_image("b.dcm", data=_dicom_bytes(ds)).pixel_spacing_mm == (0.1, 0.1)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_constant_dicom_gives_zeros(tmp_path: Path, photometric: str) -> None:
    ds = _dicom_dataset(np.full((4, 5), 700, dtype=np.uint16), photometric=photometric)
    pixels = read_image(_write(tmp_path, "flat.dcm", _dicom_bytes(ds)))
    assert pixels.shape == (4, 5) and not pixels.any()


@pytest.mark.parametrize("layout", ["meta-without-preamble", "bare-implicit", "bare-explicit"])
def test_dicom_without_preamble_is_sniffed(tmp_path: Path, layout: str) -> None:
    stored = _gradient(high=4095)
    ds = _dicom_dataset(stored)
    buffer = io.BytesIO()
    if layout == "meta-without-preamble":
        pydicom.dcmwrite(buffer, ds)  # file meta group, but no 128-byte preamble and no "DICM"
    else:
        ds.file_meta = FileMetaDataset()  # a bare dataset: nothing but data elements
        pydicom.dcmwrite(buffer, ds, implicit_vr=layout == "bare-implicit", little_endian=True)
    payload = buffer.getvalue()
    assert payload[128:132] != b"DICM"
    image = load_image(_write(tmp_path, "IM0001", payload))
    assert image.format == "dicom"
    np.testing.assert_allclose(image.pixels, stored / stored.max(), atol=1e-6)


def test_rgb_dicom_becomes_luma(tmp_path: Path) -> None:
    levels = _gradient().astype(np.uint8)
    ds = _dicom_dataset(levels.astype(np.uint16))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.dstack([levels, levels, levels]).tobytes()
    np.testing.assert_allclose(
        read_image(_write(tmp_path, "rgb.dcm", _dicom_bytes(ds))), levels / 255.0, atol=1e-6
    )


def test_multiframe_dicom_is_refused(tmp_path: Path) -> None:
    volume = np.stack([_gradient(high=4095)] * 3)
    ds = _dicom_dataset(volume)
    ds.NumberOfFrames = 3
    path = _write(tmp_path, "ct.dcm", _dicom_bytes(ds))
    with pytest.raises(ImageReadError, match=r"3-D volume \(3 frames\) is not a radiograph") as info:
        load_image(path)
    assert info.value.path == str(path)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID = BasicTextSRStorage
    report.SOPInstanceUID = generate_uid()
    report.Modality = "SR"
    with pytest.raises(ImageReadError, match="DICOM without pixel data.*Basic Text SR"):
        load_image(_write(tmp_path, "sr.dcm", _dicom_bytes(report)))

    header_only = _dicom_dataset(_gradient(high=4095))
    del header_only.PixelData
    with pytest.raises(ImageReadError, match="DICOM without pixel data: the header describes a 32x24 image"):
        load_image(_write(tmp_path, "header.dcm", _dicom_bytes(header_only)))


def test_zero_size_images(tmp_path: Path) -> None:
    ds = _dicom_dataset(np.zeros((0, 5), dtype=np.uint16))
    with pytest.raises(ImageReadError, match=r"zero-size image \(5x0\)"):
        load_image(_write(tmp_path, "empty_raster.dcm", _dicom_bytes(ds)))
    # A PNG whose header declares width 0 (Pillow itself refuses to open it).
    png = bytearray(_png_bytes(Image.fromarray(np.zeros((5, 4), dtype=np.uint8), mode="L")))
    png[16:20] = (0).to_bytes(4, "big")
    with pytest.raises(ImageReadError, match=r"zero-size image \(0x5\)"):
        load_image(_write(tmp_path, "zero.png", bytes(png)))


def _encapsulated(syntax: str) -> bytes:
    ds = _dicom_dataset(_gradient(high=4095))
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _dicom_bytes(ds)


def test_transfer_syntax_without_decoder_is_named(tmp_path: Path) -> None:
    mpeg2 = _encapsulated("1.2.840.10008.1.2.4.100")
    with pytest.raises(ImageReadError, match=r"unsupported DICOM transfer syntax MPEG2 Main Profile") as info:
        load_image(_write(tmp_path, "video.dcm", mpeg2))
    assert "(1.2.840.10008.1.2.4.100)" in info.value.reason
    # JPEG XL is newer than pydicom 3.0's writer; its UID has the same length, so swap it in the bytes.
    jpeg_xl = mpeg2.replace(b"1.2.840.10008.1.2.4.100", b"1.2.840.10008.1.2.4.110")
    with pytest.raises(
        ImageReadError, match=r"transfer syntax JPEG XL Lossless \(1\.2\.840\.10008\.1\.2\.4\.110\)"
    ):
        load_image(_write(tmp_path, "jxl.dcm", jpeg_xl))


def test_transfer_syntax_with_missing_plugin_names_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class MissingDecoder:
        is_available = False
        missing_dependencies = ["pyjpegls - requires numpy and pyjpegls>=1.2"]

    # Simulate a machine without JPEG-LS support (here pylibjpeg-libjpeg provides it).
    monkeypatch.setattr(cxio, "get_decoder", lambda uid: MissingDecoder())
    path = _write(tmp_path, "jls.dcm", _encapsulated("1.2.840.10008.1.2.4.80"))
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    reason = info.value.reason
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in reason
    assert "install pyjpegls" in reason


# ---------------------------------------------------------------------------------------------------------
# Failures


def test_truncated_png_names_the_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, size=(96, 96), dtype=np.uint8)
    payload = _png_bytes(Image.fromarray(noise, mode="L"))
    path = _write(tmp_path, "cut.png", payload[: len(payload) // 2])
    with pytest.raises(ImageReadError, match="truncated file") as info:
        load_image(path)
    assert str(info.value).startswith(f"{path}: ")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_jpeg(tmp_path: Path) -> None:
    payload = _jpeg_bytes(Image.fromarray(_gradient(64, 64).astype(np.uint8), mode="L"))
    with pytest.raises(ImageReadError, match="truncated file"):
        read_image_uint8(_write(tmp_path, "cut.jpg", payload[: len(payload) // 2]), size=16)


def test_load_truncated_images_switch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "ok.png", _png_bytes(Image.fromarray(_gradient().astype(np.uint8), mode="L")))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(path)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"this is a text file, not a radiograph\n" * 20, "not an image: unrecognised file signature"),
        (bytes(range(256)) * 4, "not an image: unrecognised file signature"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "Git LFS pointer"),
        (b"", r"empty file \(0 bytes\)"),
    ],
)
def test_bytes_that_are_not_an_image(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = _write(tmp_path, "scan.png", payload)
    with pytest.raises(ImageReadError, match=reason) as info:
        load_image(path)
    assert info.value.path == str(path)


def test_raw_dicom_lookalike_that_is_not_dicom(tmp_path: Path) -> None:
    # Starts like a group-0008 element but carries nothing a DICOM image has.
    payload = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\x00" * 64
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(_write(tmp_path, "IM0002", payload))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found") as info:
        load_image(tmp_path / "absent.png")
    assert info.value.path == str(tmp_path / "absent.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [40, 64])  # above the limit (our check) and above twice it (Pillow's error)
def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    png = _png_bytes(Image.fromarray(np.zeros((side, side), dtype=np.uint8), mode="L"))
    with pytest.raises(ImageReadError, match="decompression bomb"):
        load_image(_write(tmp_path, "bomb.png", png))
    dicom = _dicom_bytes(_dicom_dataset(np.zeros((side, side), dtype=np.uint16)))
    with pytest.raises(ImageReadError, match="decompression bomb"):
        load_image(_write(tmp_path, "bomb.dcm", dicom))


def test_a_decoders_multi_line_message_becomes_one_short_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_open(*args: object, **kwargs: object) -> None:
        raise ValueError("bad block\n  at offset 12\r\n\tdetails: " + "x" * 5000)

    monkeypatch.setattr(Image, "open", failing_open)
    path = _write(tmp_path, "odd.png", _png_bytes(Image.fromarray(np.zeros((4, 4), dtype=np.uint8))))
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    reason = info.value.reason
    assert reason.startswith("corrupt PNG data: bad block at offset 12 details: xxx")
    assert len(reason) == ImageReadError.MAX_REASON_CHARS and reason.endswith("…")
    assert "\n" not in str(info.value) and "\r" not in str(info.value) and "\t" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# uint8 and resized reading


def _samples(tmp_path: Path) -> list[Path]:
    levels = _gradient(48, 40)
    rgb = np.dstack([levels, np.roll(levels, 5, axis=1), levels[::-1]]).astype(np.uint8)
    mono1 = _dicom_dataset(_gradient(48, 40, high=4095).astype(np.uint16), photometric="MONOCHROME1")
    mono1.WindowCenter, mono1.WindowWidth = 2000, 3000
    return [
        _write(tmp_path, "l.png", _png_bytes(Image.fromarray(levels.astype(np.uint8), mode="L"))),
        _write(tmp_path, "i16.png", _png_bytes(Image.fromarray((levels * 257).astype(np.uint16)))),
        _write(tmp_path, "rgb.jpg", _jpeg_bytes(Image.fromarray(rgb, mode="RGB"))),
        _write(tmp_path, "mono1.dcm", _dicom_bytes(mono1)),
    ]


def test_uint8_is_rounded_float_image(tmp_path: Path) -> None:
    for path in _samples(tmp_path):
        as_uint8 = read_image_uint8(path)
        assert as_uint8.dtype == np.uint8
        np.testing.assert_array_equal(
            as_uint8, np.rint(read_image(path) * 255.0).astype(np.uint8), err_msg=str(path)
        )
        resized = read_image_uint8(path, size=17)
        assert resized.shape == (17, 17) and resized.dtype == np.uint8


def test_fast_resize_matches_a_full_lanczos_resample(tmp_path: Path) -> None:
    # Big enough that the JPEG is decoded at 1/4 scale in the DCT domain and the PNG is box-reduced first.
    yy, xx = np.mgrid[0:1297, 0:1501]  # not multiples of 8: the last DCT block is partial
    scene = 128 + 90 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + 20 * np.sin((xx + yy) / 7.0)
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    for name, payload in (
        ("big.jpg", _jpeg_bytes(Image.fromarray(scene, mode="L"))),
        ("big.png", _png_bytes(Image.fromarray(scene, mode="L"))),
    ):
        path = _write(tmp_path, name, payload)
        fast = read_image_uint8(path, size=96).astype(np.int64)
        exact = Image.fromarray(read_image_uint8(path)).resize((96, 96), Image.Resampling.LANCZOS)
        difference = np.abs(fast - np.asarray(exact, dtype=np.int64))
        # This scene has detail near the output's Nyquist limit, the worst case for the box pre-reduction
        # (reducing_gap 2); on the real NIH radiographs the mean difference is about 0.27 (test below).
        assert difference.mean() < 1.0, name
        assert np.percentile(difference, 99) <= 3, name


def test_size_must_be_positive(tmp_path: Path) -> None:
    path = _samples(tmp_path)[0]
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size must be a positive integer"):
            read_image_uint8(path, size=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Real files (../shared/data)

_UNCOMPRESSED = "other/dicom/pydicom-data_RG1_UNCR_chest_CR_MONOCHROME1.dcm"
_JPEG2000 = "other/dicom/pydicom-data_RG1_J2KI_chest_CR_jpeg2000.dcm"
_SIIM = "other/dicom/txv-tests_siim_chest_CR_jpegbaseline.dcm"


def _lungs_and_mediastinum(pixels: np.ndarray) -> tuple[float, float]:
    """Medians of the two central lung fields and of the midline (mediastinum/spine) column, mid-height."""
    height, width = pixels.shape
    band = slice(int(0.35 * height), int(0.60 * height))
    lungs = np.concatenate(
        [
            pixels[band, int(0.20 * width) : int(0.35 * width)].ravel(),
            pixels[band, int(0.65 * width) : int(0.80 * width)].ravel(),
        ]
    )
    midline = pixels[band, int(0.46 * width) : int(0.54 * width)]
    return float(np.median(lungs)), float(np.median(midline))


def test_real_monochrome1_and_jpeg2000_agree(shared_data: Path) -> None:
    plain = load_image(shared_data / _UNCOMPRESSED)
    j2k = load_image(shared_data / _JPEG2000)
    assert plain.pixels.shape == j2k.pixels.shape == (1955, 1841)
    assert plain.format == j2k.format == "dicom" and plain.bits_stored == 15
    assert plain.view_position == "PA" and plain.metadata["PhotometricInterpretation"] == "MONOCHROME1"
    assert plain.pixel_spacing_mm is None  # the file stores PixelSpacing 0.000\0.000: unknown, not zero
    correlation = np.corrcoef(plain.pixels.ravel(), j2k.pixels.ravel())[0, 1]
    assert correlation > 0.99
    for image in (plain, j2k):
        lungs, midline = _lungs_and_mediastinum(image.pixels)
        assert lungs + 0.1 < midline, "MONOCHROME1 not inverted: lungs should be darker than the mediastinum"


def test_real_siim_jpeg_baseline_dicom(shared_data: Path) -> None:
    image = load_image(shared_data / _SIIM)
    assert image.pixels.shape == (1024, 1024) and image.bits_stored == 8
    assert image.metadata["PhotometricInterpretation"] == "MONOCHROME2" and image.view_position == "PA"
    assert image.pixel_spacing_mm == pytest.approx((0.168, 0.168))
    lungs, midline = _lungs_and_mediastinum(image.pixels)
    assert lungs + 0.1 < midline
    assert read_image_uint8(shared_data / _SIIM, size=224).shape == (224, 224)


def test_real_nih_rgba_files_read_as_their_grey_level(shared_data: Path) -> None:
    folder = shared_data / "nih" / "images_1024"
    rgba = []
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as opened:
            if opened.mode == "RGBA":
                rgba.append(path)
    assert rgba, "expected RGBA files among nih/images_1024"
    for path in rgba:
        with Image.open(path) as opened:
            channels = np.asarray(opened)
        assert (channels[..., 0] == channels[..., 1]).all() and (channels[..., 1] == channels[..., 2]).all()
        pixels = read_image(path)
        assert pixels.shape == (1024, 1024)
        np.testing.assert_array_equal(np.rint(pixels * 255.0).astype(np.uint8), channels[..., 0])


def test_every_real_image_reads(shared_data: Path) -> None:
    files = sorted((shared_data / "other" / "images").iterdir())
    assert files
    for path in files:
        image = load_image(path)
        assert image.format in {"png", "jpeg"}, path
        pixels = image.pixels
        assert pixels.ndim == 2 and pixels.dtype == np.float32, path
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0 and pixels.std() > 0.05, path
        np.testing.assert_array_equal(read_image(path.name, data=path.read_bytes()), pixels)
        assert read_image_uint8(path, size=64).shape == (64, 64)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
@pytest.mark.parametrize("relative", [_UNCOMPRESSED, _JPEG2000, _SIIM])
def test_truncated_real_dicom(shared_data: Path, tmp_path: Path, relative: str) -> None:
    payload = (shared_data / relative).read_bytes()
    path = _write(tmp_path, "half.dcm", payload[: len(payload) // 2])
    with pytest.raises(ImageReadError, match="truncated file") as info:
        load_image(path)
    assert info.value.path == str(path)


def test_real_nih_resize_is_within_a_gray_level_of_a_full_lanczos(shared_data: Path) -> None:
    for path in sorted((shared_data / "nih" / "images_1024").glob("*.png"))[:4]:
        fast = read_image_uint8(path, size=256).astype(np.int64)
        exact = Image.fromarray(read_image_uint8(path)).resize((256, 256), Image.Resampling.LANCZOS)
        difference = np.abs(fast - np.asarray(exact, dtype=np.int64))
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 2, path.name

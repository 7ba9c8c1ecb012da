"""DICOM fidelity on the way in: the same picture stored as an 8-bit PNG and as DICOM reads the same.

Each DICOM variant below stores one 8-bit picture ``v`` so that the grayscale pipeline of DICOM PS3.3 C.11
(:mod:`cxreader.data.io`) gives back exactly ``v / 255``: as stored 8-bit levels, inverted (MONOCHROME1),
through a rescale and a window (C.11.1, C.11.2.1.2), through a VOI LUT Sequence (C.11.2.1.1), and in the
RLE Lossless and JPEG 2000 Lossless transfer syntaxes. A test asserts the decoded pixels equal the PNG's and
the probabilities of a model (the tiny test checkpoint) are within 0.01, on generated pictures and, where
``../shared/data`` is present, on real NIH radiographs and a real DICOM pair. Further tests pin what the
pipeline does with a window (saturation, no stretch) and with an 8-bit file without one (no stretch).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)
from tests.screening.factories import write_checkpoint

from cxreader.data.io import load_image, read_image_uint8
from cxreader.inference.predict import Predictor
from cxreader.synthetic.findings import draw_chest

#: Largest difference between two probabilities of the same picture.
PROBABILITY_TOLERANCE = 0.01

# ---------------------------------------------------------------------------------------------------------
# Building DICOM files around an 8-bit picture


def _dataset(stored: np.ndarray, *, bits_stored: int, photometric: str = "MONOCHROME2") -> Dataset:
    """A minimal PA chest CR dataset holding ``stored`` uncompressed (8 or 16 bits allocated)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "FIDELITY", "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    allocated = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.uint8 if allocated == 8 else "<u2").tobytes()
    return ds


def _mono2_8bit(picture: np.ndarray) -> Dataset:
    return _dataset(picture, bits_stored=8)


def _mono1_8bit(picture: np.ndarray) -> Dataset:
    # MONOCHROME1 stores the negative: the minimum value is displayed white (PS3.3 C.7.6.3.1.2).
    return _dataset(255 - picture, bits_stored=8, photometric="MONOCHROME1")


def _rescaled_12bit(picture: np.ndarray, *, photometric: str = "MONOCHROME2") -> Dataset:
    """Stored ``16 v + 8`` (12 bits) with slope 0.5 and intercept -100: modality values ``8 v - 96``."""
    levels = picture if photometric == "MONOCHROME2" else 255 - picture
    ds = _dataset(levels.astype(np.uint16) * 16 + 8, bits_stored=12, photometric=photometric)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 0.5, -100, "US"
    return ds


def _window_linear(picture: np.ndarray) -> Dataset:
    # LINEAR (C.11.2.1.2.1): y = (x - (c - 0.5)) / (w - 1) + 0.5 on the ramp, 0 at or below
    # c - 0.5 - (w - 1) / 2, 1 above c - 0.5 + (w - 1) / 2. With w - 1 = 8 * 255 = 2040 and c - 0.5 = -96 +
    # 1020, y = (8 v - 96 + 96) / 2040 = v / 255; v = 0 sits on the lower edge (y = 0) and v = 255 on the
    # upper edge (x = 1944, not above it, so the ramp gives 1).
    ds = _rescaled_12bit(picture)
    ds.WindowCenter, ds.WindowWidth = 924.5, 2041
    return ds


def _window_linear_exact(picture: np.ndarray) -> Dataset:
    # LINEAR_EXACT (C.11.2.1.3.2): y = (x - (c - w / 2)) / w; with w = 2040 and c - w / 2 = -96,
    # y = (8 v - 96 + 96) / 2040 = v / 255.
    ds = _rescaled_12bit(picture)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 924, 2040, "LINEAR_EXACT"
    return ds


def _mono1_window(picture: np.ndarray) -> Dataset:
    # The window gives (255 - v) / 255 and MONOCHROME1 inverts it to v / 255.
    ds = _rescaled_12bit(picture, photometric="MONOCHROME1")
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 924, 2040, "LINEAR_EXACT"
    return ds


def _voi_lut(picture: np.ndarray, *, lut_bits: int) -> Dataset:
    """Stored ``16 v + 8`` (12 bits, no rescale) and a 4096-entry VOI LUT sending it to ``v`` in the LUT's
    output range (C.11.2.1.1): ``257 v`` for 16-bit entries (65535 = 257 x 255), ``v`` for 8-bit ones."""
    ds = _dataset(picture.astype(np.uint16) * 16 + 8, bits_stored=12)
    levels = np.clip((np.arange(4096) - 8) // 16, 0, 255)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, lut_bits])  # LUT Descriptor: entries, first mapped, bits
    if lut_bits == 16:
        item.add_new(0x00283006, "OW", (levels * 257).astype("<u2").tobytes())  # LUT Data as OW words
    else:
        # US values. An 8-bit LUT longer than 256 entries is where pydicom 3.0's apply_voi wraps around.
        item.add_new(0x00283006, "US", [int(level) for level in levels])
    item.LUTExplanation = "fidelity"
    ds.VOILUTSequence = [item]
    # A window the LUT overrides (cxreader prefers the LUT, as pydicom's apply_voi_lut does by default).
    ds.WindowCenter, ds.WindowWidth = 100, 10
    return ds


VARIANTS: dict[str, Callable[[np.ndarray], Dataset]] = {
    "mono2-8bit": _mono2_8bit,
    "mono1-8bit": _mono1_8bit,
    "12bit-rescale-linear": _window_linear,
    "12bit-rescale-linear-exact": _window_linear_exact,
    "mono1-12bit-rescale-window": _mono1_window,
    "voi-lut-16bit": lambda picture: _voi_lut(picture, lut_bits=16),
    "voi-lut-8bit": lambda picture: _voi_lut(picture, lut_bits=8),
}
ENCODINGS = ("native", "rle-lossless", "jpeg2000-lossless")
_SYNTAXES = {"rle-lossless": RLELossless, "jpeg2000-lossless": JPEG2000Lossless}


def _encode(ds: Dataset, encoding: str) -> bytes:
    """The dataset as a DICOM file in ``encoding``; the test is skipped where no encoder is installed."""
    if encoding != "native":
        syntax = _SYNTAXES[encoding]
        encoder = get_encoder(syntax)
        if not encoder.is_available:
            pytest.skip(f"no {syntax.name} encoder: {'; '.join(encoder.missing_dependencies)}")
        ds.compress(syntax)  # RLE: pydicom itself; JPEG 2000: pylibjpeg-openjpeg
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Pictures and the model


def _generated_picture() -> np.ndarray:
    """A 256 x 256 synthetic chest radiograph with an effusion; its levels span 12..240, not 0..255, so a
    min-max stretch would change them."""
    picture = draw_chest(3, size=256, findings=["Effusion"]).pixels
    assert picture.dtype == np.uint8 and picture.min() > 0 and picture.max() < 255
    return picture


def _nih_pictures(shared_data: Path) -> list[tuple[str, np.ndarray]]:
    paths = sorted((shared_data / "nih" / "images_256").glob("*.png"))[:3]
    assert len(paths) == 3, "expected NIH images in nih/images_256"
    pictures = []
    for path in paths:
        with Image.open(path) as opened:
            pictures.append((path.name, np.asarray(opened.convert("L"), dtype=np.uint8).copy()))
    return pictures


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """The tiny test model (random weights, 64 px) run on the CPU through the file-prediction path."""
    return Predictor(write_checkpoint(tmp_path_factory.mktemp("fidelity") / "tiny.pt"), device="cpu")


def _probabilities(predictor: Predictor, paths: list[Path]) -> np.ndarray:
    """``(N, 14)`` probabilities of files, read as ``cxreader predict`` reads them (decode, gate, model)."""
    results = predictor.predict_files(paths)
    for result in results:
        assert result.read, (result.path, result.error, result.gate)
    return np.array([list(result.probabilities.values()) for result in results])


def _assert_same_as_png(
    predictor: Predictor, directory: Path, name: str, picture: np.ndarray, dicom: bytes
) -> float:
    """Assert the DICOM reads as the PNG of ``picture`` does; return the largest probability difference."""
    png_path, dicom_path = directory / f"{name}.png", directory / f"{name}.dcm"
    png_path.write_bytes(_png(picture))
    dicom_path.write_bytes(dicom)
    png, decoded = load_image(png_path), load_image(dicom_path)
    assert decoded.format == "dicom" and decoded.pixels.dtype == np.float32
    # The constructions are exact: only float32 rounding separates v / 255 computed two ways.
    np.testing.assert_allclose(decoded.pixels, png.pixels, rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(read_image_uint8(dicom_path), picture, err_msg=name)
    np.testing.assert_array_equal(
        read_image_uint8(dicom_path, size=224), read_image_uint8(png_path, size=224)
    )
    probabilities = _probabilities(predictor, [png_path, dicom_path])
    difference = float(np.abs(probabilities[0] - probabilities[1]).max())
    assert difference <= PROBABILITY_TOLERANCE, (name, difference)
    return difference


# ---------------------------------------------------------------------------------------------------------
# Fidelity: generated and real pictures


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generated_picture_reads_as_its_png(
    predictor: Predictor, tmp_path: Path, variant: str, encoding: str
) -> None:
    picture = _generated_picture()
    dicom = _encode(VARIANTS[variant](picture), encoding)
    _assert_same_as_png(predictor, tmp_path, f"{variant}-{encoding}", picture, dicom)


@pytest.mark.shared_data
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_real_nih_pictures_read_as_their_png(
    shared_data: Path, predictor: Predictor, tmp_path: Path, variant: str, encoding: str
) -> None:
    for name, picture in _nih_pictures(shared_data):
        dicom = _encode(VARIANTS[variant](picture), encoding)
        _assert_same_as_png(predictor, tmp_path, f"{Path(name).stem}-{variant}-{encoding}", picture, dicom)


def test_the_tolerance_tells_a_stretched_picture_apart(predictor: Predictor, tmp_path: Path) -> None:
    # What the old pipeline did to a windowed or 8-bit file: a min-max stretch of the result. The model must
    # see that as a different picture, or the 0.01 tolerance above would prove nothing.
    picture = _generated_picture().astype(np.float64)
    stretched = np.rint((picture - picture.min()) / (picture.max() - picture.min()) * 255).astype(np.uint8)
    paths = [tmp_path / "picture.png", tmp_path / "stretched.png"]
    paths[0].write_bytes(_png(picture.astype(np.uint8)))
    paths[1].write_bytes(_png(stretched))
    probabilities = _probabilities(predictor, paths)
    assert np.abs(probabilities[0] - probabilities[1]).max() > PROBABILITY_TOLERANCE


_UNCOMPRESSED = "other/dicom/pydicom-data_RG1_UNCR_chest_CR_MONOCHROME1.dcm"
_JPEG2000 = "other/dicom/pydicom-data_RG1_J2KI_chest_CR_jpeg2000.dcm"


@pytest.mark.shared_data
def test_real_monochrome1_cr_and_its_jpeg2000_twin(shared_data: Path, predictor: Predictor) -> None:
    paths = [shared_data / _UNCOMPRESSED, shared_data / _JPEG2000]
    headers = [pydicom.dcmread(path) for path in paths]
    for ds in headers:
        # Both carry one LINEAR window (no VOI LUT Function, no rescale) wider than their data (about
        # 800..26500 of 15 bits): it is applied as written, so the image is not stretched to 0..1.
        assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (15000.0, 30000.0)
        assert "VOILUTFunction" not in ds and "VOILUTSequence" not in ds and "RescaleSlope" not in ds
    plain, j2k = (load_image(path) for path in paths)
    for ds, image in zip(headers, (plain, j2k), strict=True):
        stored = ds.pixel_array.astype(np.float64)
        expected = 1.0 - np.clip((stored - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)  # C.11.2.1.2.1, then invert
        np.testing.assert_allclose(image.pixels, expected, rtol=0, atol=1e-6)
        assert image.pixels.min() > 0.1 and image.pixels.max() < 0.98  # the window's levels, not 0..1
    # The JPEG 2000 twin is the irreversible kind (1.2.840.10008.1.2.4.91: stored values differ by up to
    # about 400 of 32767), so its pixels agree on average, and to a grey level at the size the model sees.
    difference = np.abs(plain.pixels.astype(np.float64) - j2k.pixels)
    assert difference.mean() <= 1 / 255
    small = [read_image_uint8(path, size=256).astype(np.int64) for path in paths]
    assert np.abs(small[0] - small[1]).max() <= 1
    probabilities = _probabilities(predictor, paths)
    assert np.abs(probabilities[0] - probabilities[1]).max() <= PROBABILITY_TOLERANCE


# ---------------------------------------------------------------------------------------------------------
# What the pipeline does: a window is applied as written; an 8-bit file keeps its levels


def _read(ds: Dataset) -> np.ndarray:
    return load_image("pinned.dcm", data=_encode(ds, "native")).pixels


def _ramp_12bit(photometric: str = "MONOCHROME2") -> tuple[np.ndarray, Dataset]:
    """Every 12-bit value 0..4095 once, as a 64 x 64 image."""
    stored = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    return stored, _dataset(stored, bits_stored=12, photometric=photometric)


def test_narrow_window_saturates_without_stretch() -> None:
    stored, ds = _ramp_12bit()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, 512, "LINEAR_EXACT"
    pixels = _read(ds)
    values = stored.astype(np.float64)
    np.testing.assert_array_equal(pixels[values <= 1792], 0.0)  # at or below c - w / 2
    np.testing.assert_array_equal(pixels[values >= 2304], 1.0)  # at or above c + w / 2
    ramp = (values > 1792) & (values < 2304)
    np.testing.assert_allclose(pixels[ramp], (values[ramp] - 1792) / 512, rtol=0, atol=1e-6)
    assert pixels[stored == 2048] == pytest.approx(0.5)

    # MONOCHROME1: the same window, inverted after it.
    _, mono1 = _ramp_12bit("MONOCHROME1")
    mono1.WindowCenter, mono1.WindowWidth, mono1.VOILUTFunction = 2048, 512, "LINEAR_EXACT"
    np.testing.assert_allclose(_read(mono1), 1.0 - pixels, rtol=0, atol=1e-6)


def test_linear_window_follows_the_standard() -> None:
    stored, ds = _ramp_12bit()
    ds.WindowCenter, ds.WindowWidth = 2048, 257  # LINEAR is the default VOI LUT Function
    pixels = _read(ds).astype(np.float64)
    values = stored.astype(np.float64)
    # C.11.2.1.2.1: 0 at or below c - 0.5 - (w - 1) / 2 = 1919.5, 1 above c - 0.5 + (w - 1) / 2 = 2175.5.
    np.testing.assert_array_equal(pixels[values <= 1919], 0.0)
    np.testing.assert_array_equal(pixels[values >= 2176], 1.0)
    ramp = (values >= 1920) & (values <= 2175)
    np.testing.assert_allclose(pixels[ramp], (values[ramp] - 2047.5) / 256 + 0.5, rtol=0, atol=1e-6)

    ds.WindowWidth = 1  # the narrowest valid LINEAR window is a threshold at c - 0.5
    np.testing.assert_array_equal(_read(ds), (stored > 2047).astype(np.float32))


def test_sigmoid_window_is_not_stretched() -> None:
    stored, ds = _ramp_12bit()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, 4096, "SIGMOID"
    pixels = _read(ds).astype(np.float64)
    expected = 1.0 / (1.0 + np.exp(-4.0 * (stored - 2048.0) / 4096.0))  # C.11.2.1.3.1 with y in [0, 1]
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-6)
    assert pixels.min() == pytest.approx(0.1192, abs=1e-4) and pixels.max() == pytest.approx(0.8807, abs=1e-4)


def test_first_of_several_windows_is_used() -> None:
    stored, ds = _ramp_12bit()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = [2048, 100], [512, 50], "LINEAR_EXACT"
    pixels = _read(ds)
    assert pixels[stored == 2048] == pytest.approx(0.5) and pixels[stored == 1792] == 0.0


@pytest.mark.parametrize(
    ("width", "function"), [(0.5, "LINEAR"), (0, "LINEAR_EXACT"), (-3, "SIGMOID"), (512, "GAMMA")]
)
def test_invalid_window_is_skipped(width: float, function: str) -> None:
    stored, ds = _ramp_12bit()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, width, function
    # No usable VOI: 12 bits stored fall back to the actual range (min-max).
    np.testing.assert_allclose(_read(ds), stored / 4095.0, rtol=0, atol=1e-6)


def test_voi_lut_sequence_maps_its_output_range_and_wins_over_the_window() -> None:
    stored, ds = _ramp_12bit()
    item = Dataset()
    item.add_new(0x00283002, "US", [1024, 1000, 10])  # 1024 entries from 1000, 10 bits each
    item.add_new(0x00283006, "US", list(range(1024)))  # the identity over its 10 bits
    ds.VOILUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 100, 10
    pixels = _read(ds).astype(np.float64)
    # Inputs before the first mapped value take the first entry, those past the last entry the last one.
    expected = np.clip(stored.astype(np.float64) - 1000, 0, 1023) / 1023.0
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-6)


def test_8bit_voi_lut_packed_in_ow_bytes() -> None:
    # Some writers store 8-bit LUT entries one byte each in the OW LUT Data, not one per 16-bit word.
    stored, ds = _ramp_12bit()
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 8])
    item.add_new(0x00283006, "OW", (np.arange(4096) // 16).astype(np.uint8).tobytes())
    ds.VOILUTSequence = [item]
    np.testing.assert_allclose(_read(ds), (stored // 16) / 255.0, rtol=0, atol=1e-6)


def test_8bit_without_window_keeps_its_stored_levels() -> None:
    levels = np.linspace(10, 200, 48 * 40).round().astype(np.uint8).reshape(48, 40)
    assert levels.min() == 10 and levels.max() == 200
    pixels = _read(_dataset(levels, bits_stored=8))
    np.testing.assert_allclose(pixels, levels / 255.0, rtol=0, atol=1e-7)  # not stretched to 0..1
    assert pixels.min() == pytest.approx(10 / 255) and pixels.max() == pytest.approx(200 / 255)

    mono1 = _read(_dataset(levels, bits_stored=8, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1, 1.0 - levels / 255.0, rtol=0, atol=1e-7)

    identity = _dataset(levels, bits_stored=8)
    identity.RescaleSlope, identity.RescaleIntercept = 1, 0  # the identity rescale many 8-bit files carry
    np.testing.assert_allclose(_read(identity), levels / 255.0, rtol=0, atol=1e-7)

    flat = _read(_dataset(np.full((4, 5), 100, dtype=np.uint8), bits_stored=8))
    np.testing.assert_allclose(flat, 100 / 255.0, rtol=0, atol=1e-7)  # a grey PNG stays grey, too


def test_rescaled_8bit_without_window_uses_the_actual_range() -> None:
    # A rescale leaves no nominal range to divide by: the min-max rule for files without a window applies.
    levels = np.linspace(10, 200, 48 * 40).round().astype(np.uint8).reshape(48, 40)
    ds = _dataset(levels, bits_stored=8)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -50
    np.testing.assert_allclose(_read(ds), (levels - 10.0) / 190.0, rtol=0, atol=1e-6)


def test_more_than_8_bits_without_window_uses_the_actual_range() -> None:
    stored = np.linspace(100, 3000, 48 * 40).round().astype(np.uint16).reshape(48, 40)
    np.testing.assert_allclose(
        _read(_dataset(stored, bits_stored=12)), (stored - 100.0) / 2900.0, rtol=0, atol=1e-6
    )

"""The overlay Secondary Capture: pixels (grey film, colour only where maps are salient, text in bands) and the
DICOM object around them."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import SecondaryCaptureImageStorage
from tests.dicom.test_report import ALGORITHM, POSITIVES, read_result, refused_result, source_header

from cxreader.dicom.capture import BOX_COLOUR, overlay_capture, overlay_pixels
from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
from cxreader.dicom.report import Algorithm
from cxreader.localization.overlay import heatmap_rgba
from cxreader.storage.records import ImageResult

#: The display rendition: half the source's 320 x 400 pixels.
DISPLAY_SIZE = (160, 200)
MAP_SIZE = 64


def display_image() -> np.ndarray:
    width, height = DISPLAY_SIZE
    return np.tile(np.linspace(40, 220, width, dtype=np.float32), (height, 1)).astype(np.uint8)


def corner_map() -> np.ndarray:
    """A map salient only in its top left corner."""
    heatmap = np.zeros((MAP_SIZE, MAP_SIZE), dtype=np.float32)
    heatmap[:16, :16] = 1.0
    return heatmap


def without_boxes(source: Dataset, **kwargs) -> ImageResult:
    positives = {
        name: (probability, None, description) for name, (probability, _, description) in POSITIVES.items()
    }
    return read_result(source, positives=positives, **kwargs)


def image_rows(pixels: np.ndarray) -> np.ndarray:
    """The rows of an overlay without banner that hold the radiograph."""
    return pixels[: DISPLAY_SIZE[1]]


def _first_row_not_red(pixels: np.ndarray) -> int:
    for row in range(pixels.shape[0]):
        if not (pixels[row, :, 0] > 150).all() or not (pixels[row, :, 1] < 60).all():
            return row
    raise AssertionError("no row below the banner")


def test_pixels_are_rgb_with_a_text_band_below_the_film() -> None:
    source = source_header()
    pixels = overlay_pixels(display_image(), read_result(source), maps={"Effusion": corner_map()})

    width, height = DISPLAY_SIZE
    assert pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[1:] == (width, 3)
    assert pixels.shape[0] > height
    band = pixels[height:]
    assert (band == 0).all(axis=2).mean() > 0.5, "the band is dark"
    assert (band > 200).all(axis=2).any(), "the band holds white text"


def test_film_changes_only_where_a_positive_finding_map_is_salient() -> None:
    source = source_header()
    grey = display_image()
    maps = {"Effusion": corner_map(), "Atelectasis": np.ones((MAP_SIZE, MAP_SIZE), dtype=np.float32)}
    pixels = overlay_pixels(grey, without_boxes(source), maps=maps)

    changed = (image_rows(pixels).astype(int) != grey[..., None]).any(axis=2)
    salient = heatmap_rgba(corner_map(), DISPLAY_SIZE)[..., 3] > 0
    assert changed.any()
    assert not (changed & ~salient).any(), (
        "a below-threshold map (Atelectasis) or a non-salient pixel was drawn"
    )


def test_boxes_are_outlined_at_display_scale() -> None:
    source = source_header()
    pixels = image_rows(overlay_pixels(display_image(), read_result(source), maps={}))

    x, y, w, h = 30 // 2, 250 // 2, 110 // 2, 80 // 2
    cyan = (pixels == np.array(BOX_COLOUR, dtype=np.uint8)).all(axis=2)
    assert cyan[y : y + h + 1, x].any() and cyan[y, x : x + w + 1].any()
    assert not cyan[: y - 3, : x - 3].any()


def test_synthetic_result_gets_a_red_banner_above_the_film() -> None:
    source = source_header()
    grey = display_image()
    pixels = overlay_pixels(grey, read_result(source), maps={}, synthetic=True)

    top = pixels[:4]
    red = (top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)
    assert red.mean() > 0.5
    assert pixels.shape[0] > DISPLAY_SIZE[1] + _first_row_not_red(pixels)


def test_no_finding_and_refused_images_say_so_on_plain_film() -> None:
    source = source_header()
    grey = display_image()
    negative = overlay_pixels(grey, read_result(source, positives={}), maps={"Effusion": corner_map()})
    refused = overlay_pixels(grey, refused_result(source), maps={"Effusion": corner_map()})

    for pixels in (negative, refused):
        assert (image_rows(pixels) == grey[..., None]).all()
    assert not np.array_equal(negative[DISPLAY_SIZE[1] :][:40], refused[DISPLAY_SIZE[1] :][:40])


def test_display_must_be_uint8_grey() -> None:
    source = source_header()
    with pytest.raises(ValueError, match="uint8 grey"):
        overlay_pixels(display_image().astype(np.float32), read_result(source), maps={})


def capture_of(source: Dataset, result: ImageResult, algorithm: Algorithm = ALGORITHM) -> Dataset:
    capture = overlay_capture(
        source,
        result,
        display=display_image(),
        maps={"Effusion": corner_map()},
        algorithm=algorithm,
        series_instance_uid=result_series_uid(
            source.StudyInstanceUID, algorithm.checkpoint_sha256, "overlay"
        ),
        sop_instance_uid=result_instance_uid(source.SOPInstanceUID, algorithm.checkpoint_sha256, "overlay"),
    )
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, capture, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_capture_is_a_secondary_capture_in_the_source_study() -> None:
    source = source_header()
    result = read_result(source)
    capture = capture_of(source, result)

    assert capture.SOPClassUID == SecondaryCaptureImageStorage
    assert capture.StudyInstanceUID == source.StudyInstanceUID
    assert capture.SeriesInstanceUID != source.SeriesInstanceUID
    assert capture.PatientID == source.PatientID
    assert capture.BurnedInAnnotation == "YES"
    assert capture.ConversionType == "WSD"
    assert (capture.PhotometricInterpretation, capture.SamplesPerPixel, capture.BitsAllocated) == (
        "RGB",
        3,
        8,
    )
    assert "PixelSpacing" not in capture
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    expected = overlay_pixels(display_image(), result, maps={"Effusion": corner_map()})
    assert np.array_equal(capture.pixel_array, expected)


def test_capture_of_a_synthetic_model_says_so() -> None:
    source = source_header()
    synthetic = Algorithm("densenet121", "0.9.0", "ab" * 32, synthetic=True)
    capture = capture_of(source, read_result(source), synthetic)

    assert capture.SeriesDescription.startswith("SYNTHETIC")
    assert "SYNTHETIC" in capture.ImageComments
    assert (capture.pixel_array[:4, :, 0] > 150).mean() > 0.5

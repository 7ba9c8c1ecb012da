"""One image's result as a picture every PACS viewer shows: a Secondary Capture with the overlay burned in.

The Secondary Capture Image (PS3.3 A.8.1, written with highdicom) holds an RGB rendition of the radiograph in
its own series of the source's study, so a radiologist sees the model's reading beside the original without a
viewer that understands SR. What it shows, each choice for readability:

* the radiograph in grey, as the caller rendered it for display (window and size are the caller's: the longer
  side at most 1024 pixels);
* the heatmaps of the findings at or above their thresholds, coloured and faded by
  :func:`cxreader.localization.overlay.heatmap_rgba` (transparent where the map is not salient, so anatomy the
  model did not look at stays untouched); where several overlap, the most opaque wins each pixel;
* their boxes outlined in cyan on a dark edge, scaled from original-image pixels to the rendition;
* text only in bands added above and below the image, never over anatomy: a red "SYNTHETIC" banner on top for a
  synthetic model or image; below, one line per positive finding ("Effusion 0.87 (threshold 0.42)"), or "No
  finding above its threshold", or "NOT READ: <reasons>" for an image the input gate refused, then the
  disclaimer :data:`cxreader.DISCLAIMER`.

The text is burned into the pixels (Burned In Annotation YES). The capture has no pixel spacing (it is a
rendition, with bands, not a measurement surface) and Conversion Type WSD (workstation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from cxreader import DISCLAIMER
from cxreader.dicom.report import MANUFACTURER, Algorithm, evidence_header, series_description
from cxreader.labels import display_name
from cxreader.localization.overlay import heatmap_rgba
from cxreader.storage.records import FindingResult, ImageResult

SERIES_DESCRIPTION = "cxreader overlay (decision support)"
SYNTHETIC_BANNER = "SYNTHETIC - not for patients"
NO_FINDING_TEXT = "No finding above its threshold"
BANNER_RED = (200, 0, 0)
BOX_COLOUR = (0, 229, 255)
BOX_EDGE = (0, 0, 0)
TEXT_COLOUR = (255, 255, 255)
DISCLAIMER_COLOUR = (190, 190, 190)
BAND_COLOUR = (0, 0, 0)
_FONT_FRACTION = 1 / 40
_MIN_FONT = 10
_PATIENT_ORIENTATIONS = frozenset("AFHLPR")
#: highdicom requires an orientation for a PATIENT capture; the source's own (or an empty one, PS3.3 C.7.6.1
#: type 2C) replaces it.
_REQUIRED_BY_HIGHDICOM_ORIENTATION = ("L", "F")


def overlay_capture(
    source: Dataset,
    result: ImageResult,
    *,
    display: np.ndarray,
    maps: Mapping[str, np.ndarray],
    algorithm: Algorithm,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 9902,
    instance_number: int = 1,
) -> hd.sc.SCImage:
    """The overlay of one image's result as a Secondary Capture Image in the source's study.

    Args:
        source: The screened image's header (Patient, Study and Series modules, SOP Class and Instance UIDs).
        result: The image's result.
        display: The radiograph as displayed: uint8 grey ``(H, W)``, longer side at most 1024.
        maps: Heatmaps in [0, 1] by finding name, at the model's input size; only the findings at or above their
            thresholds are drawn.
        algorithm: The model that produced the result.
        series_instance_uid: The capture's series (:func:`cxreader.dicom.identifiers.result_series_uid`).
        sop_instance_uid: The capture's SOP Instance UID.
    """
    synthetic = algorithm.synthetic or result.synthetic
    pixels = overlay_pixels(display, result, maps=maps, synthetic=synthetic)
    header = evidence_header(source)
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=_REQUIRED_BY_HIGHDICOM_ORIENTATION,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=series_description(SERIES_DESCRIPTION, synthetic),
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
    )
    capture.PatientOrientation = _patient_orientation(source)
    _copy_laterality(source, capture)
    capture.ConversionType = "WSD"
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = f"{SYNTHETIC_BANNER}. {DISCLAIMER}" if synthetic else DISCLAIMER
    capture.DerivationDescription = f"cxreader overlay of model {algorithm.name} {algorithm.version}"
    capture.SourceImageSequence = [_source_reference(source)]
    return capture


def overlay_pixels(
    display: np.ndarray,
    result: ImageResult,
    *,
    maps: Mapping[str, np.ndarray],
    synthetic: bool = False,
) -> np.ndarray:
    """The overlay as an RGB uint8 array ``(band + H + band, W, 3)`` (module docstring).

    Args:
        display: The radiograph as displayed: uint8 grey ``(H, W)``.
        result: The image's result (findings with boxes in original pixels, or refusal reasons).
        maps: Heatmaps in [0, 1] by finding name, any size (resized to the display).
        synthetic: Add the red SYNTHETIC banner.
    """
    grey = np.asarray(display)
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"display must be a uint8 grey (H, W) image, got {grey.dtype} {grey.shape}")
    height, width = grey.shape
    positives = [] if result.refused else [item for item in result.findings if item.above_threshold]
    picture = Image.fromarray(
        _blend_heatmaps(grey, [maps[item.finding] for item in positives if item.finding in maps])
    )
    _outline_boxes(picture, positives, _box_scale(result, (width, height)))
    font = ImageFont.load_default(size=max(_MIN_FONT, round(width * _FONT_FRACTION)))
    lines = [(line, TEXT_COLOUR) for line in _result_lines(result, positives)]
    lines.append((DISCLAIMER, DISCLAIMER_COLOUR))
    parts = [picture, _band(lines, font, width, BAND_COLOUR)]
    if synthetic:
        parts.insert(0, _band([(SYNTHETIC_BANNER, TEXT_COLOUR)], font, width, BANNER_RED))
    return np.concatenate([np.asarray(part.convert("RGB")) for part in parts], axis=0)


def _result_lines(result: ImageResult, positives: Sequence[FindingResult]) -> list[str]:
    if result.refused:
        return [f"NOT READ: {'; '.join(result.refused)}"]
    if not positives:
        return [NO_FINDING_TEXT]
    return [
        f"{display_name(item.finding)} {item.probability:.2f} (threshold {item.threshold:.2f})"
        for item in positives
    ]


def _blend_heatmaps(grey: np.ndarray, heatmaps: Sequence[np.ndarray]) -> np.ndarray:
    """The grey image as RGB with the heatmaps blended in, the most opaque layer per pixel."""
    height, width = grey.shape
    base = np.repeat(grey[..., None].astype(np.float32) / 255.0, 3, axis=2)
    if heatmaps:
        layers = np.stack([heatmap_rgba(heatmap, (width, height)) for heatmap in heatmaps]).astype(np.float32)
        strongest = np.take_along_axis(layers, layers[..., 3:4].argmax(axis=0)[None], axis=0)[0]
        alpha = strongest[..., 3:4]
        base = base * (1.0 - alpha) + strongest[..., :3] * alpha
    return np.rint(np.clip(base, 0.0, 1.0) * 255.0).astype(np.uint8)


def _box_scale(result: ImageResult, size: tuple[int, int]) -> tuple[float, float]:
    width, height = size
    original_width = result.width or width
    original_height = result.height or height
    return width / original_width, height / original_height


def _outline_boxes(
    picture: Image.Image, findings: Sequence[FindingResult], scale: tuple[float, float]
) -> None:
    draw = ImageDraw.Draw(picture)
    line = max(1, round(min(picture.size) / 300))
    for item in findings:
        if item.box is None:
            continue
        x, y, w, h = item.box
        corners = (x * scale[0], y * scale[1], (x + w) * scale[0], (y + h) * scale[1])
        draw.rectangle(corners, outline=BOX_EDGE, width=3 * line)
        draw.rectangle(corners, outline=BOX_COLOUR, width=line)


def _band(
    lines: Sequence[tuple[str, tuple[int, int, int]]],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
    background: tuple[int, int, int],
) -> Image.Image:
    """A band of the image's width holding the lines, wrapped to fit."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = max(2, width // 100)
    wrapped = [
        (part, colour) for text, colour in lines for part in _wrap(text, font, width - 2 * margin, measure)
    ]
    line_height = _line_height(font, measure)
    band = Image.new("RGB", (width, line_height * len(wrapped) + 2 * margin), background)
    draw = ImageDraw.Draw(band)
    for index, (text, colour) in enumerate(wrapped):
        draw.text((margin, margin + index * line_height), text, fill=colour, font=font)
    return band


def _wrap(
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    room: int,
    measure: ImageDraw.ImageDraw,
) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and measure.textlength(candidate, font=font) > room:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines or [""]


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, measure: ImageDraw.ImageDraw) -> int:
    left, top, right, bottom = measure.textbbox((0, 0), "Hg", font=font)
    return int(bottom - min(top, 0)) + 2


def _patient_orientation(source: Dataset) -> list[str] | None:
    """The source's Patient Orientation (the rendition keeps it) where it is a valid biped one, else none."""
    values = [str(value).upper() for value in (source.get("PatientOrientation") or [])]
    if len(values) == 2 and all(value and set(value) <= _PATIENT_ORIENTATIONS for value in values):
        return values
    return None


def _copy_laterality(source: Dataset, capture: Dataset) -> None:
    """The source's body part and laterality (General Series, PS3.3 C.7.3.1): Laterality is type 2C, absent for
    an unpaired body part such as the chest, empty where the body part is unknown."""
    if "BodyPartExamined" in source:
        capture.BodyPartExamined = source.BodyPartExamined
    if "Laterality" in source or "BodyPartExamined" not in source:
        capture.Laterality = source.get("Laterality")


def _source_reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item

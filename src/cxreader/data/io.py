"""Read any chest radiograph file (PNG, JPEG, DICOM, TIFF, BMP, JPEG 2000, WebP) into one grayscale array.

The format is chosen by content sniffing (magic bytes), never by the file name, so uploads with a wrong or
missing extension read correctly and a renamed HTML page is refused. Every failure raises
:class:`cxreader.errors.ImageReadError` naming the file and the reason; no PIL, pydicom or numpy traceback
reaches the caller.

Display rule (what ``LoadedImage.pixels`` means): float32 ``(H, W)`` in ``[0, 1]``, 0 = black and 1 = white as a
radiologist views the image (bone and opacities bright).

* PNG/JPEG/TIFF/BMP/JPEG 2000/WebP are display renditions already: values are divided by the largest code of
  their bit depth (255 or 65535), so an 8-bit file keeps its exact grey levels. Colour files become
  ITU-R BT.601 luma (Pillow's ``convert("L")``; for JPEG the decoder's own Y channel), which is the grey value
  itself when R = G = B, as in the RGBA files of NIH ChestX-ray14. Alpha is ignored.
* DICOM grayscale (MONOCHROME1 and MONOCHROME2) follows the grayscale pipeline of DICOM PS3.3 C.11 and
  PS3.4 N.2.1.1 up to the output of the VOI LUT, whose range is mapped onto ``[0, 1]``:

  1. Modality LUT (C.11.1): the Modality LUT Sequence, else Rescale Slope and Intercept (both present), else
     the identity.
  2. VOI LUT (C.11.2), when the file has one. The first item of the VOI LUT Sequence, when usable: input
     values below the first mapped value take the first entry and those past the end the last entry
     (C.11.2.1.1; a fractional input, from a fractional rescale, is rounded down, as pydicom does), and the
     entries are divided by the LUT's output range ``2**n - 1``, ``n`` the third value of the LUT Descriptor
     (8 to 16 bits). Otherwise (the LUT is preferred, as in pydicom's ``apply_voi_lut``) the first Window
     Center ``c`` and Width ``w`` with the VOI LUT Function, by the standard's formulas with ``y_min = 0``
     and ``y_max = 1``: LINEAR (the default, C.11.2.1.2.1) ``clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)``
     (for ``w = 1`` a step at ``c - 0.5``), LINEAR_EXACT (C.11.2.1.3.2) ``clip((x - c) / w + 0.5, 0, 1)``,
     SIGMOID (C.11.2.1.3.1) ``1 / (1 + exp(-4 (x - c) / w))``. The result is not stretched any further:
     values outside the window saturate at 0 and 1, and a window wider than the data keeps the data's grey
     levels where the window puts them, as a viewer displays them. A VOI LUT that cannot be used (no data, a
     bit depth outside 8 to 16, fewer entries than declared) gives way to the window; an invalid window
     (LINEAR with ``w < 1``, LINEAR_EXACT or SIGMOID with ``w <= 0``, another function, a value that is not
     a number) is skipped.
  3. Without a VOI LUT: a file of at most 8 bits stored whose Modality LUT is the identity keeps its stored
     grey levels, like an 8-bit PNG: ``(stored - lowest) / (2**BitsStored - 1)``, ``lowest`` being 0, or
     ``-2**(BitsStored - 1)`` for signed pixels. Any other file is scaled by the actual range of its
     modality values (min-max): the stored bit depth usually overstates the range in use (15 bits stored
     for a 12-bit detector), and a rescaled 8-bit file has no nominal range to divide by; min-max is what
     DICOM viewers fall back to, and what the 8-bit NIH PNG exports look like. A constant image carries no
     information and comes back as zeros (only here: a window or the stored levels say how it looks).
  4. MONOCHROME1 (C.7.6.3.1.2: the minimum value is displayed white) becomes ``1 - y``.

  Colour DICOM (RGB, YBR) becomes luma as a colour PNG does, divided by ``2**BitsStored - 1`` for at most 8
  bits stored and by its actual range otherwise; PALETTE COLOR is the luma of the palette's output, by its
  actual range. The C.11 lookup tables are defined for grayscale only.
* EXIF orientation is applied (a phone photo of a film displays upright). Multi-frame files are refused, and
  Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) applies to every format, DICOM included, as an
  error rather than a warning. Truncated files are errors: reading is refused while
  ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is True, because Pillow would then pad them with grey silently.

``read_image_uint8`` rule: the uint8 image is exactly ``round(255 * pixels)`` (for 8-bit files, the stored grey
level). With ``size`` it is resampled to ``size x size`` (aspect ratio not kept, as in CheXNet's 224 x 224
resize) with Lanczos through Pillow's two-step ``reducing_gap`` path (an integer box ``reduce`` followed by a
Lanczos step of at least ``REDUCING_GAP`` times). For the NIH 1024 → 256 resize a gap of 2 is a box
``reduce(2)`` and a Lanczos halving, within a grey level of a full Lanczos at less than half its cost (a gap of
3 reduces nothing at a factor of 4; timings in benchmarks/BENCHMARKS.md, preprocessing cache). A JPEG is first
decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (``Image.draft``) when at least ``REDUCING_GAP x size``
pixels per side remain, as ``Image.thumbnail`` does.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageFile, ImageOps
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxreader.errors import ImageReadError

__all__ = [
    "DICOM_METADATA_KEYS",
    "REDUCING_GAP",
    "LoadedImage",
    "declared_pixel_count",
    "gray_uint8",
    "load_image",
    "read_image_uint8",
    "sniff_format",
]

#: DICOM attributes copied into ``LoadedImage.metadata`` (as strings, only when present and not empty).
DICOM_METADATA_KEYS: tuple[str, ...] = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "StudyDate",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "PhotometricInterpretation",
)

# pydicom warns about invalid values by quoting them (a birth date, a patient's name) through warnings and its
# logger: patient data must never reach a log, and an invalid header value is no reason to refuse an image.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: Inflated bytes of a Deflated DICOM dataset that :func:`declared_pixel_count` reads to find the image size
#: (the header precedes the pixel data; the whole dataset may inflate to a thousand times the file's size).
DEFLATED_HEADER_BYTES = 8 * 1024 * 1024

#: The last resampling step shrinks by at least this factor (Pillow's ``reducing_gap``); see the module rule.
REDUCING_GAP = 2.0

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # ISO/IEC 15948, section 5.2
_JPEG_SOI = b"\xff\xd8\xff"  # ITU-T T.81: SOI marker followed by the first marker segment
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # ISO/IEC 15444-1 annex I signature box
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"  # ISO/IEC 15444-1: SOC then SIZ marker
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}  # the DIB header variants
_GIT_LFS_POINTER = b"version https://git-lfs"
_EXIF_ORIENTATION = 0x0112
_BYTESIO_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")

# Pillow modes with more than 8 bits per sample; every other mode becomes 8-bit luma through convert("L").
_PIL_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_PIL_WIDE_MODES = _PIL_16BIT_MODES | {"I", "F"}
# Bits per sample of the Pillow modes that do not have 8.
_PIL_BITS = {"1": 1, "I": 32, "F": 32} | dict.fromkeys(_PIL_16BIT_MODES, 16)

# Transfer syntaxes newer than pydicom 3.0's UID dictionary (DICOM PS3.6 table A-1), named for messages.
_NEWER_SYNTAXES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded radiograph and what the file says about it.

    ``eq=False`` because dataclass equality on an ``np.ndarray`` field is ambiguous; compare ``pixels`` with
    numpy instead.

    Attributes:
        pixels: float32 ``(H, W)`` in ``[0, 1]``; 0 = black, 1 = white as displayed (bone bright).
        path: the file path, or the upload name when read from bytes.
        format: sniffed format: ``"png"``, ``"jpeg"``, ``"dicom"``, ``"tiff"``, ``"bmp"``, ``"jpeg2000"``
            or ``"webp"``.
        bits_stored: bits per sample in the file (DICOM BitsStored; 8 or 16 for PNG; 1 for bilevel).
        pixel_spacing_mm: ``(row, column)`` spacing in mm from DICOM PixelSpacing, else ImagerPixelSpacing;
            ``None`` when absent or not positive (anonymised files often store ``0.000``).
        view_position: DICOM ViewPosition (``"PA"``, ``"AP"``, ``"LL"``, ...), ``None`` when absent.
        metadata: the :data:`DICOM_METADATA_KEYS` present in a DICOM file, as strings; empty otherwise.
            Holds patient identifiers: store it in the records database, never in logs.
        colour_spread: how coloured the file's pixels are: the mean over pixels (a subsample of at most
            :data:`_COLOUR_SAMPLE` of them) of the largest difference between two colour channels, in
            ``[0, 1]``; 0 for a grayscale file and for colour files with R = G = B (NIH's RGBA PNGs).
    """

    pixels: np.ndarray
    path: str
    format: str
    bits_stored: int
    pixel_spacing_mm: tuple[float, float] | None = None
    view_position: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    colour_spread: float = 0.0


def load_image(source: str | Path, *, data: bytes | None = None) -> LoadedImage:
    """Decode a radiograph into display-ready grayscale (see the module docstring for the display rule).

    Args:
        source: path of the file; when ``data`` is given, only the name used in error messages.
        data: the file's bytes (an upload); when given, nothing is read from disk.

    Raises:
        ImageReadError: file not found or unreadable, empty, truncated, not an image, unsupported DICOM
            transfer syntax, DICOM without pixel data, multi-frame volume, zero-size or oversized image.
    """
    name, raw, fmt = _read_source(source, data)
    if fmt == "dicom":
        return _load_dicom(name, raw)
    image, bits, _ = _open_pil(name, raw, fmt, draft_size=None)
    return LoadedImage(
        pixels=_pil_to_float(name, image),
        path=name,
        format=fmt,
        bits_stored=bits,
        colour_spread=_jpeg_colour_spread(raw) if fmt == "jpeg" else _pil_colour_spread(image),
    )


#: Most pixels looked at to measure how coloured an image is (:attr:`LoadedImage.colour_spread`).
_COLOUR_SAMPLE = 1 << 18
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "YCbCr", "CMYK", "P", "PA", "LAB", "HSV"})


def _pil_colour_spread(image: Image.Image) -> float:
    """:attr:`LoadedImage.colour_spread` of a decoded Pillow image."""
    if image.mode not in _COLOUR_MODES:
        return 0.0
    samples = np.asarray(image) if image.mode in ("RGB", "RGBA", "RGBX") else np.asarray(image.convert("RGB"))
    return _channel_spread(samples, 255.0)


def _jpeg_colour_spread(raw: bytes) -> float:
    """:attr:`LoadedImage.colour_spread` of a JPEG, probed at 1/8 scale (the decoder's DCT scaling): its grey
    values come from the luma channel, so the colour is looked at separately. A failure reads as grayscale;
    decoding the file proper reports what is wrong with it."""
    try:
        probe = Image.open(io.BytesIO(raw), formats=["JPEG"])
        if probe.mode == "L":
            return 0.0
        probe.draft("RGB", (max(1, probe.width // 8), max(1, probe.height // 8)))
        return _channel_spread(np.asarray(probe.convert("RGB")), 255.0)
    except Exception:
        return 0.0


def _channel_spread(rgb: np.ndarray, full_scale: float) -> float:
    """Mean largest difference between the channels of ``(H, W, C)`` samples, on a regular subsample."""
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / _COLOUR_SAMPLE))))
    sample = rgb[::step, ::step, :3].astype(np.float32)  # alpha is not a colour
    if sample.size == 0:
        return 0.0
    return float((sample.max(axis=2) - sample.min(axis=2)).mean() / full_scale)


def read_image_uint8(source: str | Path, *, size: int | None = None, data: bytes | None = None) -> np.ndarray:
    """Decode a radiograph to uint8 grayscale, optionally resampled to ``size x size`` (module docstring rule).

    Args:
        source, data: as in :func:`load_image`.
        size: output side length in pixels, or ``None`` for the native size.

    Raises:
        ValueError: ``size`` is not a positive integer.
        ImageReadError: as :func:`load_image`.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    name, raw, fmt = _read_source(source, data)
    if fmt == "dicom":
        image = Image.fromarray(_float_to_uint8(_load_dicom(name, raw).pixels), mode="L")
        return gray_uint8(name, image, size)
    draft_size = None if size is None else (math.ceil(REDUCING_GAP * size),) * 2
    image, _, box = _open_pil(name, raw, fmt, draft_size=draft_size)
    if image.mode in _PIL_WIDE_MODES:
        image = Image.fromarray(_float_to_uint8(_pil_to_float(name, image)), mode="L")
    # 8-bit files stay in Pillow: the same luma image the float path divides by 255.
    return gray_uint8(name, image, size, box=box)


def gray_uint8(
    name: str, image: Image.Image, size: int | None, *, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """The uint8 luma of an 8-bit Pillow image, resized to ``size x size`` by the ``read_image_uint8`` rule."""
    gray = _to_gray8(name, image)
    if size is not None and (gray.size != (size, size) or box is not None):
        # ``box`` maps the whole original onto the DCT-reduced image, whose last block may be partial.
        gray = gray.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    return np.asarray(gray, dtype=np.uint8).copy()


def sniff_format(data: bytes) -> str | None:
    """Name the image format of ``data`` from its magic bytes, or ``None`` when it is none of ours.

    DICOM is recognised by the ``DICM`` prefix after the 128-byte preamble (DICOM PS3.10, 7.1), or, for
    files written without preamble and file meta header, by a first data element in group 0002 or 0008
    (the check is completed when the dataset is parsed).
    """
    head = bytes(data[:32])
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(_JPEG_SOI):
        return "jpeg"
    if len(data) >= 132 and bytes(data[128:132]) == b"DICM":
        return "dicom"
    if head.startswith(_TIFF_SIGNATURES):
        return "tiff"
    if head.startswith((_JP2_SIGNATURE, _J2K_CODESTREAM)):
        return "jpeg2000"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if _looks_like_raw_dicom(head):
        return "dicom"
    return None


def declared_pixel_count(data: bytes) -> int | None:
    """The number of pixels an image file declares in its header, read without decoding the image.

    For a memory budget checked before decoding (decoding costs memory in proportion to this number):

    * Pillow formats (PNG, JPEG, TIFF, BMP, JPEG 2000, WebP): the header is parsed by the format's plugin
      class, as ``Image.open`` does lazily, and the count is width x height. (``Image.open`` itself would
      refuse a very large size before reporting it: its decompression-bomb check.)
    * DICOM: the header up to the pixel data (``stop_before_pixels``): Rows x Columns x NumberOfFrames x
      SamplesPerPixel, every sample being decoded. A Deflated Explicit VR dataset, which pydicom inflates
      whole even to read its header, is inflated here only up to :data:`DEFLATED_HEADER_BYTES`.

    Returns:
        The declared count, or ``None`` when ``data`` is not one of our formats or its header cannot be read
        (the decoder then reports why).
    """
    fmt = sniff_format(data)
    if fmt is None:
        return None
    if fmt == "dicom":
        return _dicom_declared_pixels(bytes(data))
    return _pillow_declared_pixels(bytes(data), fmt)


def _pillow_declared_pixels(raw: bytes, fmt: str) -> int | None:
    """width x height from the header of a Pillow-readable file (no pixel is decoded)."""
    Image.init()
    registered = Image.OPEN.get(fmt.upper())
    if registered is None:
        return None
    try:
        with registered[0](io.BytesIO(raw)) as image:
            width, height = image.size
    except Exception:  # any header the plugin cannot parse: the decoder names the problem
        return None
    return width * height


def _dicom_declared_pixels(raw: bytes) -> int | None:
    """Rows x Columns x NumberOfFrames x SamplesPerPixel from a DICOM header, or ``None``."""
    try:
        header = _dicom_header(raw)
    except Exception:  # any unreadable header: the decoder names the problem
        return None
    rows, columns = _int_attr(header, "Rows", 0), _int_attr(header, "Columns", 0)
    if rows <= 0 or columns <= 0:
        return None
    frames = max(1, _int_attr(header, "NumberOfFrames", 1))
    return rows * columns * frames * max(1, _int_attr(header, "SamplesPerPixel", 1))


def _dicom_header(raw: bytes) -> Dataset:
    """The DICOM dataset before its pixel data; a deflated dataset inflated only as far as needed."""
    has_preamble = len(raw) >= 132 and raw[128:132] == b"DICM"
    stream = DicomBytesIO(raw)
    stream.seek(132 if has_preamble else 0)
    if _meta_syntax(stream) != DeflatedExplicitVRLittleEndian:
        return pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, force=not has_preamble)
    # PS3.5 A.5: everything after the file meta group is one raw deflate stream of an explicit VR dataset.
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw[stream.tell() :], DEFLATED_HEADER_BYTES)
    return read_dataset(
        DicomBytesIO(inflated), is_implicit_VR=False, is_little_endian=True, stop_when=_at_pixel_data
    )


def _meta_syntax(stream: DicomBytesIO) -> str | None:
    """The TransferSyntaxUID of the file meta group at the stream's position (left at the dataset's start);
    ``None`` without one (a bare dataset: pydicom then works the encoding out)."""
    try:
        # The file meta group (0002) is always explicit VR little endian (PS3.10 7.1).
        meta = read_dataset(
            stream,
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=lambda tag, _vr, _len: tag.group != 2,
        )
    except Exception:  # a bare implicit VR dataset does not parse as explicit VR
        return None
    syntax = meta.get("TransferSyntaxUID")
    return str(syntax) if syntax else None


def _at_pixel_data(tag: BaseTag, _vr: str | None, _length: int) -> bool:
    """Whether a data element is the pixel data (integer, float or double float): the header ends there."""
    return tag in (0x7FE00010, 0x7FE00008, 0x7FE00009)


# --------------------------------------------------------------------------------------------------------
# Bytes and sniffing


def _read_source(source: str | Path, data: bytes | None) -> tuple[str, bytes, str]:
    """The name for messages, the bytes and the sniffed format of a file (or of ``data``, an upload)."""
    name = str(source)
    if data is not None:
        raw = bytes(data)
    else:
        try:
            raw = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageReadError(source, "file not found") from None
        except IsADirectoryError:
            raise ImageReadError(source, "is a directory, not an image file") from None
        except PermissionError:
            raise ImageReadError(source, "permission denied") from None
        except OSError as exc:
            raise ImageReadError(source, f"cannot read file ({exc.strerror or exc})") from None
    if not raw:
        raise ImageReadError(source, "empty file (0 bytes)")
    fmt = sniff_format(raw)
    if fmt is not None:
        return name, raw, fmt
    if raw.startswith(_GIT_LFS_POINTER):
        raise ImageReadError(
            name, "not an image: a Git LFS pointer file (fetch the real file with git lfs pull)"
        )
    first = raw[:8].hex(" ")
    raise ImageReadError(
        name,
        f"not an image: unrecognised file signature (first bytes {first}); "
        "expected PNG, JPEG, DICOM, TIFF, BMP, JPEG 2000 or WebP",
    )


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A dataset without preamble starts with a group 0002 (file meta) or 0008 (identification) element."""
    if len(head) < 8:
        return False
    for order in ("little", "big"):
        group = int.from_bytes(head[0:2], order)
        element = int.from_bytes(head[2:4], order)
        vr = head[4:6]
        explicit = vr.isalpha() and vr.isupper()
        # File meta elements (group 0002, up to 0102) are always explicit VR little endian (PS3.10 7.1).
        if group == 0x0002 and element <= 0x0102:
            return explicit and order == "little"
        # A bare dataset starts in group 0008, at the latest with (0008,0018) SOP Instance UID in practice.
        if group == 0x0008 and element <= 0x0018:
            # Implicit VR little endian: bytes 4-8 are a 32-bit length, far below the file size limit.
            implicit = order == "little" and int.from_bytes(head[4:8], "little") < 1 << 16
            return explicit or implicit
    return False


# --------------------------------------------------------------------------------------------------------
# Pillow formats


def _open_pil(
    name: str, raw: bytes, fmt: str, *, draft_size: tuple[int, int] | None
) -> tuple[Image.Image, int, tuple[float, float, float, float] | None]:
    """Open and fully decode a Pillow-readable file.

    Returns:
        The loaded image, its bits per sample, and for a JPEG decoded at reduced scale the box of the
        reduced image that covers the whole original (``None`` otherwise).
    """
    # Truncation must raise, not be padded with grey: never rely on a caller having flipped this switch.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageReadError(
            name, "refusing to read: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process"
        )
    label = fmt.upper() if fmt != "jpeg2000" else "JPEG 2000"
    try:
        # Only the plugin of the sniffed format (its name upper-cased) may open it: the content decides.
        image = Image.open(io.BytesIO(raw), formats=[fmt.upper()])
    except Image.DecompressionBombError as exc:
        raise ImageReadError(name, f"decompression bomb refused ({exc})") from None
    except Exception as exc:  # any decoder failure on untrusted bytes becomes one clear error
        raise _pil_error(name, raw, label, exc) from None

    width, height = image.size
    if width == 0 or height == 0:
        raise ImageReadError(name, f"zero-size image ({width}x{height})")
    _check_pixel_count(name, width, height)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ImageReadError(name, f"multi-frame image ({frames} frames) is not a radiograph")
    bits = _PIL_BITS.get(image.mode, 8)

    box = None
    try:
        if fmt == "jpeg":
            if draft_size is not None and image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                # A rotation would move the partial edge block of a reduced decode: keep full scale.
                draft_size = None
            # Decode straight to the luma channel (and, for thumbnails, at a DCT-domain reduced scale).
            drafted = image.draft("L", draft_size)
            if drafted is not None and draft_size is not None:
                box = drafted[1]
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as exc:
        raise _pil_error(name, raw, label, exc) from None
    return image, bits, box


def _pil_error(name: str, raw: bytes, label: str, exc: Exception) -> ImageReadError:
    # Pillow names the in-memory stream ("<_io.BytesIO object at 0x...>"), which tells the user nothing.
    message = _BYTESIO_REPR.sub("", str(exc)).strip() or type(exc).__name__
    lowered = message.lower()
    if label == "PNG" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        if width == 0 or height == 0:
            return ImageReadError(name, f"zero-size image ({width}x{height})")
    if isinstance(exc, EOFError) or "truncated" in lowered or "end of file" in lowered:
        return ImageReadError(name, f"truncated file ({len(raw)} bytes): {message}")
    if isinstance(exc, MemoryError):
        return ImageReadError(name, "image too large to decode in memory")
    if "decoder" in lowered and "not available" in lowered:
        return ImageReadError(name, f"unsupported {label} file: Pillow has no decoder for it ({message})")
    return ImageReadError(name, f"corrupt {label} data: {message}")


def _pil_to_float(name: str, image: Image.Image) -> np.ndarray:
    """Apply the display rule to a loaded Pillow image (see the module docstring)."""
    mode = image.mode
    if mode not in _PIL_WIDE_MODES:
        return np.asarray(_to_gray8(name, image), dtype=np.float32) / np.float32(255.0)
    if mode in _PIL_16BIT_MODES:
        return (np.asarray(image).astype(np.float32)) / np.float32(65535.0)
    if mode == "I":
        values = np.asarray(image, dtype=np.int64)
        # Older decoders hand 16-bit grayscale over as 32-bit "I": keep the 16-bit scale when it fits.
        if values.size and values.min() >= 0 and values.max() <= 65535:
            return values.astype(np.float32) / np.float32(65535.0)
        return _min_max(name, values.astype(np.float64))
    return _min_max(name, np.asarray(image, dtype=np.float64))  # "F": 32-bit float samples


def _to_gray8(name: str, image: Image.Image) -> Image.Image:
    """8-bit grayscale of an 8-bit Pillow image: ITU-R BT.601 luma for colour, alpha ignored."""
    if image.mode == "L":
        return image
    try:
        return image.convert("L")
    except ValueError:
        raise ImageReadError(name, f"unsupported colour mode {image.mode}") from None


# --------------------------------------------------------------------------------------------------------
# DICOM


class _TrackingReader(io.BytesIO):
    """A byte stream that records whether a read stopped short inside the data: evidence of truncation.

    pydicom stops quietly at the end of a cut file (and drops an unterminated encapsulated Pixel Data
    element), so the reader itself has to notice that a read was cut off.
    """

    def __init__(self, data: bytes):
        super().__init__(data)
        self.cut_short = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if size is not None and size > 0 and 0 < len(chunk) < size:
            self.cut_short = True
        return chunk


def _load_dicom(name: str, raw: bytes) -> LoadedImage:
    has_preamble = len(raw) >= 132 and raw[128:132] == b"DICM"
    reader = _TrackingReader(raw)
    try:
        ds = pydicom.dcmread(reader, force=not has_preamble)
    except Exception as exc:
        if reader.cut_short or isinstance(exc, EOFError):
            raise ImageReadError(
                name, f"truncated file ({len(raw)} bytes): DICOM header ends early"
            ) from None
        raise ImageReadError(name, f"unreadable DICOM header: {exc}") from None

    has_elements = any(tag.group != 0x0002 for tag in ds.keys())  # noqa: SIM118 - keys avoid decoding values
    if not has_preamble and not any(key in ds for key in ("PixelData", "SOPClassUID", "Rows", "Modality")):
        raise ImageReadError(name, "not an image: unrecognised file signature (does not parse as DICOM)")
    if not has_elements:
        reason = "truncated file" if reader.cut_short else "truncated or corrupt DICOM file"
        raise ImageReadError(name, f"{reason}: no complete DICOM data elements after the file meta header")

    frames = _int_attr(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageReadError(name, f"3-D volume ({frames} frames) is not a radiograph")
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(name, _missing_pixels_reason(ds, reader.cut_short))

    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(name, "DICOM pixel data without Rows/Columns: the image size is unknown")
    rows, columns = _int_attr(ds, "Rows", 0), _int_attr(ds, "Columns", 0)
    if rows <= 0 or columns <= 0:
        raise ImageReadError(name, f"zero-size image ({columns}x{rows})")
    _check_pixel_count(name, columns, rows)

    syntax = _transfer_syntax(ds)
    _require_decoder(name, syntax)
    if not syntax.is_compressed and "PixelData" in ds:
        expected = _native_pixel_bytes(ds, rows, columns)
        actual = len(ds.PixelData)
        if actual < expected:
            raise ImageReadError(
                name, f"truncated file: pixel data has {actual} of {expected} expected bytes"
            )

    try:
        stored = ds.pixel_array
    except Exception as exc:
        if reader.cut_short:
            raise ImageReadError(name, f"truncated file: cannot decode the pixel data ({exc})") from None
        raise ImageReadError(name, f"cannot decode DICOM pixel data ({syntax.name}): {exc}") from None

    samples = _int_attr(ds, "SamplesPerPixel", 1)
    is_colour = stored.ndim == 3 and samples > 1 and stored.shape[-1] == samples
    if stored.ndim == 4 or (stored.ndim == 3 and not is_colour):
        raise ImageReadError(name, f"3-D volume ({stored.shape[0]} frames) is not a radiograph")
    if stored.size == 0:
        raise ImageReadError(name, f"zero-size image ({stored.shape})")

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    try:
        if is_colour:
            # pydicom hands YBR data over as RGB; the LUT pipeline (C.11) is defined for grayscale only.
            pixels = _colour_display(name, _luma(stored), ds)
        elif photometric == "PALETTE COLOR":
            pixels = _min_max(name, _luma(apply_color_lut(stored, ds)))
        else:
            pixels = _grayscale_display(name, stored, ds, inverted=photometric == "MONOCHROME1")
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(name, f"cannot apply the DICOM lookup tables: {exc}") from None

    return LoadedImage(
        pixels=pixels,
        path=name,
        format="dicom",
        bits_stored=_int_attr(ds, "BitsStored", 0) or _int_attr(ds, "BitsAllocated", 0),
        pixel_spacing_mm=_pixel_spacing(ds),
        view_position=_string_attr(ds, "ViewPosition"),
        metadata=_dicom_metadata(ds),
        colour_spread=_channel_spread(stored, float(2 ** _int_attr(ds, "BitsStored", 8) - 1))
        if is_colour
        else 0.0,
    )


def _grayscale_display(name: str, stored: np.ndarray, ds: Dataset, *, inverted: bool) -> np.ndarray:
    """Display pixels of a grayscale DICOM image by the module rule: Modality LUT, VOI LUT or window, the
    stored levels of an 8-bit file or min-max, then MONOCHROME1 inversion (DICOM PS3.3 C.11, PS3.4 N.2.1.1).

    Args:
        name: the file name, for errors.
        stored: the stored pixel values ``(H, W)``.
        ds: the dataset (its Modality LUT, VOI LUT and Image Pixel modules).
        inverted: MONOCHROME1, whose minimum value is displayed white (PS3.3 C.7.6.3.1.2).

    Returns:
        float32 ``(H, W)`` in ``[0, 1]``.

    Raises:
        ImageReadError: the modality values are not all finite.
    """
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if not np.isfinite(values).all():
        raise ImageReadError(name, "pixel data contains NaN or infinite values")
    display = _voi_lut(values, ds)
    if display is None:
        display = _window(values, ds)
    if display is None:
        bits = _int_attr(ds, "BitsStored", 0)
        if 0 < bits <= 8 and _modality_is_identity(ds):
            display = _stored_levels(stored, bits, signed=_int_attr(ds, "PixelRepresentation", 0) == 1)
        else:
            display = _min_max(name, values)
            if not display.any():
                return display  # a constant image: zeros, whatever the photometric interpretation
    if inverted:
        display = 1.0 - display
    return display.astype(np.float32)


def _colour_display(name: str, luma: np.ndarray, ds: Dataset) -> np.ndarray:
    """Display pixels of a colour DICOM image's luma: an 8-bit file keeps its levels, like a colour PNG."""
    bits = _int_attr(ds, "BitsStored", 0)
    if 0 < bits <= 8:
        return np.clip(luma / (2.0**bits - 1.0), 0.0, 1.0).astype(np.float32)
    return _min_max(name, luma)


def _modality_is_identity(ds: Dataset) -> bool:
    """Whether the Modality LUT (PS3.3 C.11.1) leaves the stored values as they are: no Modality LUT
    Sequence, and no rescale or the rescale ``x * 1 + 0`` that many 8-bit files carry."""
    if ds.get("ModalityLUTSequence"):
        return False
    if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return True  # pydicom, like the standard's Rescale pair, rescales only with both values present
    return float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == 0.0


def _stored_levels(stored: np.ndarray, bits: int, *, signed: bool) -> np.ndarray:
    """Stored values over the range of ``bits`` bits (signed: two's complement), as an 8-bit PNG is read."""
    lowest = -(2.0 ** (bits - 1)) if signed else 0.0
    # Clipped: bits above BitsStored (High Bit) are not masked off by every decoder.
    return np.clip((stored.astype(np.float64) - lowest) / (2.0**bits - 1.0), 0.0, 1.0)


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The first VOI LUT of the VOI LUT Sequence (PS3.3 C.11.2.1.1) onto ``[0, 1]``; ``None`` without one or
    when it cannot be used.

    Written out rather than through ``pydicom.pixels.apply_voi``, whose index array takes the LUT's entry
    type: with 8-bit entries, an input more than 255 past the first mapped value wraps around (pydicom
    3.0), and a float input (rescaled values) is truncated with a warning.
    """
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or "LUTData" not in item:
        return None
    try:
        entries, first_mapped, bits = (int(value) for value in descriptor)
    except (TypeError, ValueError):
        return None  # not three numbers
    entries = entries or 65536  # PS3.3 C.11.2.1.1: 0 stands for 2**16 entries
    if not 8 <= bits <= 16:
        return None
    table = _lut_data(item["LUTData"], entries, bits, little_endian=_is_little_endian(ds))
    if table is None:
        return None
    index = np.clip(np.floor(values) - first_mapped, 0, entries - 1).astype(np.intp)
    return np.clip(table[index] / (2.0**bits - 1.0), 0.0, 1.0)


def _lut_data(element: DataElement, entries: int, bits: int, *, little_endian: bool) -> np.ndarray | None:
    """The first ``entries`` values of a LUT Data element (VR US, or OW) of ``bits``-bit entries, as float64;
    ``None`` when it holds fewer."""
    value = element.value
    if isinstance(value, bytes | bytearray):
        # OW: 16-bit words, or 8-bit entries packed two to a word (encoded as if 8 bits were allocated, which
        # some writers do for 8-bit LUTs), told apart by the length.
        if bits == 8 and len(value) in (entries, entries + 1):  # packed, padded to an even length
            table = np.frombuffer(value, dtype=np.uint8)
        else:
            table = np.frombuffer(value, dtype="<u2" if little_endian else ">u2", count=len(value) // 2)
    elif isinstance(value, int):
        table = np.asarray([value])
    else:
        table = np.asarray(list(value or ()))
    if table.size < entries:
        return None
    return table[:entries].astype(np.float64)


def _is_little_endian(ds: Dataset) -> bool:
    """The byte order the dataset was read in (every transfer syntax but Explicit VR Big Endian is little)."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax)) != ExplicitVRBigEndian
    return getattr(ds, "original_encoding", (None, True))[1] is not False


def _window(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The first Window Center/Width with its VOI LUT Function (PS3.3 C.11.2.1.2, C.11.2.1.3) onto
    ``[0, 1]``: the standard's formulas with ``y_min = 0`` and ``y_max = 1``. ``None`` without a window, or
    when the window is invalid (the module rule)."""
    center, width = _first_number(ds, "WindowCenter"), _first_number(ds, "WindowWidth")
    if center is None or width is None:
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function == "LINEAR":
        # C.11.2.1.2.1: "Window Width shall always be greater than or equal to 1".
        if width < 1:
            return None
        if width == 1:  # no ramp: everything at or below c - 0.5 is y_min, the rest y_max
            return np.where(values <= center - 0.5, 0.0, 1.0)
        return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)
    if function == "LINEAR_EXACT":
        # C.11.2.1.3.2: "Window Width shall always be greater than 0".
        return np.clip((values - center) / width + 0.5, 0.0, 1.0) if width > 0 else None
    if function == "SIGMOID":
        # C.11.2.1.3.1, written as (1 + tanh(2 (x - c) / w)) / 2 = 1 / (1 + exp(-4 (x - c) / w)): the same
        # function without overflow in exp for values far from the centre.
        return 0.5 * (1.0 + np.tanh(2.0 * (values - center) / width)) if width > 0 else None
    return None


def _first_number(ds: Dataset, key: str) -> float | None:
    """The first value of a numeric attribute (Window Center and Width may hold several windows; the first
    is the default a viewer shows); ``None`` when absent, empty or not a finite number."""
    try:
        value = ds.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
            if len(value) == 0:
                return None
            value = value[0]
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an ``(H, W, 3+)`` array, as float64."""
    channels = rgb[..., :3].astype(np.float64)
    return channels @ np.array([0.299, 0.587, 0.114])


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    # A dataset without file meta header: its encoding, as pydicom parsed it, is the transfer syntax.
    implicit, little = getattr(ds, "original_encoding", (True, True))
    explicit_syntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    syntax = ImplicitVRLittleEndian if implicit else explicit_syntax
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def _require_decoder(name: str, syntax: UID) -> None:
    name_of_syntax = _NEWER_SYNTAXES.get(str(syntax), syntax.name)
    label = f"{name_of_syntax} ({syntax})" if name_of_syntax != str(syntax) else f"({syntax})"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        if str(syntax) in _NEWER_SYNTAXES:
            advice = (
                "no pydicom 3.0 pixel data plugin decodes JPEG XL; "
                "transcode the file to JPEG 2000 or uncompressed with a DICOM toolkit first"
            )
        elif not syntax.is_transfer_syntax:
            advice = "not a transfer syntax pydicom knows (private or invalid UID)"
        else:
            advice = (
                "pydicom 3 has no decoder for it (video and other non-image encodings are not radiographs)"
            )
        raise ImageReadError(name, f"unsupported DICOM transfer syntax {label}: {advice}") from None
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies) or "a pydicom pixel data plugin"
        raise ImageReadError(
            name,
            f"unsupported DICOM transfer syntax {label}: no installed plugin decodes it; install {options}",
        )


def _native_pixel_bytes(ds: Dataset, rows: int, columns: int) -> int:
    """Bytes an uncompressed Pixel Data element must hold (PS3.5 8.1.1); 0 when not computable."""
    bits = _int_attr(ds, "BitsAllocated", 0)
    if bits <= 0:
        return 0
    samples = _int_attr(ds, "SamplesPerPixel", 1)
    total_bits = rows * columns * samples * _int_attr(ds, "NumberOfFrames", 1) * bits
    return (total_bits + 7) // 8


def _missing_pixels_reason(ds: Dataset, cut_short: bool) -> str:
    rows, columns = _int_attr(ds, "Rows", 0), _int_attr(ds, "Columns", 0)
    if cut_short:
        return "truncated file: it ends inside the DICOM data, before the pixel data is complete"
    if rows and columns:
        return (
            f"DICOM without pixel data: the header describes a {columns}x{rows} image but there is no "
            "Pixel Data element (truncated, or saved without pixels)"
        )
    sop = ds.get("SOPClassUID")
    kind = f" ({UID(str(sop)).name})" if sop else ""
    return f"DICOM without pixel data{kind}: not an image"


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(key)
            if value is None or len(value) < 2:
                continue
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0:
            return (row, col)
    return None


def _dicom_metadata(ds: Dataset) -> dict[str, str]:
    values = {key: _string_attr(ds, key) for key in DICOM_METADATA_KEYS}
    return {key: value for key, value in values.items() if value is not None}


def _string_attr(ds: Dataset, key: str) -> str | None:
    try:
        value = ds.get(key)
    except Exception:  # a malformed optional attribute is treated as absent
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _int_attr(ds: Dataset, key: str, default: int) -> int:
    try:
        value = ds.get(key)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------------------------------------
# Shared helpers


def _check_pixel_count(name: str, width: int, height: int) -> None:
    """Apply Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) to every format, as an error."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageReadError(
            name,
            f"decompression bomb refused: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{limit} (PIL.Image.MAX_IMAGE_PIXELS)",
        )


def _min_max(name: str, values: np.ndarray) -> np.ndarray:
    """Scale to ``[0, 1]`` by the actual range; a constant image becomes zeros."""
    if not np.isfinite(values).all():
        raise ImageReadError(name, "pixel data contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _float_to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)

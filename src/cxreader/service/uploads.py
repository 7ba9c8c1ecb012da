"""Reading an upload from the request stream with a size limit, without ever holding more than the limit.

Two encodings are accepted: ``multipart/form-data`` with the image in the field ``file`` (what an HTML form
and ``curl -F file=@image.dcm`` send), parsed incrementally by python-multipart's streaming parser; or the raw
bytes as the body (``Content-Type: application/dicom``, ``image/png``, ``image/jpeg`` or
``application/octet-stream``). A declared ``Content-Length`` above the limit is refused before a byte of the
body is read; a body without one (chunked) is counted as it streams and refused the moment it passes the
limit. The client's file name is never used: the caller keeps the bytes under a name of its own.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, FormParser, parse_options_header

#: The form field that carries the image.
FILE_FIELD = "file"
#: Raw-body content types accepted besides multipart/form-data.
RAW_TYPES = frozenset({"application/dicom", "application/octet-stream", "image/png", "image/jpeg"})
#: Room for the multipart framing (boundaries, part headers, small fields) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class UploadError(Exception):
    """An upload the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {limit / (1024 * 1024):g} MB")


async def read_upload(request: Request, *, max_bytes: int) -> bytes:
    """The uploaded file's bytes, read from the request stream with the limit enforced as it streams.

    Raises:
        UploadError: 413 over the limit, 415 for a content type other than multipart/form-data or a raw image,
            400 for a malformed body or a form without the ``file`` field.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    media = content_type.decode("latin-1").lower()
    multipart = media == "multipart/form-data"
    if not multipart and media not in RAW_TYPES:
        raise UploadError(
            415,
            "send the image as multipart/form-data (field 'file') or as the request body with Content-Type "
            f"application/dicom, image/png, image/jpeg or application/octet-stream (got {media or 'none'})",
        )
    allowed = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise UploadError(400, "malformed Content-Length header") from None
        if length > allowed:
            raise _too_large(max_bytes)  # refused before reading a byte of the body

    if not multipart:
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > max_bytes:
                raise _too_large(max_bytes)
            body.extend(chunk)
        if not body:
            raise UploadError(400, "the request body is empty: no image was sent")
        return bytes(body)

    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary parameter")
    files: list[bytes] = []
    ended = False

    def on_part(part: Field | File) -> None:
        # A part with a file name arrives as a File, one without as a Field; either may carry the image.
        if part.field_name == FILE_FIELD.encode():
            files.append(part.file_object.getvalue() if isinstance(part, File) else (part.value or b""))

    def on_end() -> None:
        nonlocal ended
        ended = True

    # Files stay in memory up to the limit (never in a temporary file): the stream is refused beyond it.
    parser = FormParser(
        "multipart/form-data", on_part, on_part, on_end, boundary, config={"MAX_MEMORY_FILE_SIZE": allowed}
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > allowed:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise UploadError(400, f"malformed multipart/form-data body: {exc}") from None
    if not ended:
        raise UploadError(400, "the multipart/form-data body ends early (incomplete upload)")
    if not files:
        raise UploadError(400, f"the form has no '{FILE_FIELD}' field: attach the image as '{FILE_FIELD}'")
    if len(files[0]) > max_bytes:
        raise _too_large(max_bytes)
    if not files[0]:
        raise UploadError(400, "the uploaded file is empty (0 bytes)")
    return files[0]

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
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

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
        self.message = message


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {limit / (1024 * 1024):g} MB")


class _FilePart:
    """Callbacks for :class:`MultipartParser` that keep only the ``file`` field's bytes, up to the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.found = False
        self.finished = False
        self._in_file = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).strip().lower()] = bytes(self._header_value).strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD and not self.found:
            self._in_file = True
            self.found = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        if len(self.data) + (end - start) > self.limit:
            raise _too_large(self.limit)
        self.data.extend(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.finished = True


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
    part = _FilePart(max_bytes)
    parser = MultipartParser(boundary, part.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > allowed:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"malformed multipart/form-data body: {exc}") from None
    if not part.found:
        raise UploadError(400, f"the form has no '{FILE_FIELD}' field: attach the image as '{FILE_FIELD}'")
    if not part.finished:
        raise UploadError(400, "the multipart/form-data body ends early (incomplete upload)")
    if not part.data:
        raise UploadError(400, "the uploaded file is empty (0 bytes)")
    return bytes(part.data)

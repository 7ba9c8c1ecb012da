"""The web service: a REST API (FastAPI) and a page for clinicians over the records database and one model.

``app.create_app(settings)`` builds it; ``cxreader serve`` runs it with uvicorn. Routes are thin
(``routes/``), dependencies are ``Annotated`` aliases (``deps``), responses are pydantic models (``schemas``),
settings come from the environment (``settings``), and the work is done by the same core functions as
``cxreader screen`` (``analysis``).

Memory is bounded per upload and in number of uploads:

* an upload's header is read first, and an image declaring more than ``max_upload_pixels`` pixels
  (``CXREADER_MAX_UPLOAD_MEGAPIXELS``, default 36 MP) is refused with 413 before a pixel is decoded;
* at most ``max_concurrent_decodes`` uploads (``CXREADER_MAX_CONCURRENT_DECODES``, default: the CPU cores) are
  decoded and read by the model at once, and so are stored records whose image must be decoded again; the
  others wait for a slot, holding their bytes (at most the upload limit each) but no thread.

Decoding peaks at about 12 to 14 bytes per pixel for PNG/JPEG and 25 for DICOM (float copies of the image),
so the server stays within its idle size plus about ``max_concurrent_decodes x max_upload_pixels x 25 bytes``
(2 x 36 MP x 25 B = 1.8 GB on two cores at the defaults), plus the bytes of waiting uploads. Measured by
``benchmarks/service_upload_memory.py``: eight 88 MP PNGs at once add 2.2 GB with 2 slots, 1.2 GB with 1.
"""

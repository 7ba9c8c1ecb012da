"""The service's routes: thin handlers over :mod:`cxreader.service.analysis` and :mod:`cxreader.storage`.

``health`` (no key), ``pages`` (the web page, the API docs and the OpenAPI document), ``model`` and
``studies`` (behind the API key).
"""

from __future__ import annotations

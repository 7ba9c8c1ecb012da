"""The page, the API docs and their static files: one Content Security Policy, nothing from the network."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from tests.service.conftest import Server

STATIC_FILES = ["index.html", "app.js", "style.css", "docs.html", "docs.js"]


class _References(HTMLParser):
    """The ``src`` and ``href`` attributes of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(value for name, value in attrs if name in ("src", "href") and value)


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(
    "path", ["/docs", "/docs/assets/swagger-ui-bundle.js"] + [f"/static/{name}" for name in STATIC_FILES]
)
def test_every_page_script_and_style_has_the_page_csp(server: Server, path):
    with server.client() as client:
        page_csp = client.get("/").headers["content-security-policy"]
        response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == page_csp
    assert "script-src 'self';" in page_csp and "unsafe-inline" not in page_csp


def test_the_docs_reference_only_files_this_server_serves(server: Server):
    with server.client() as client:
        html = client.get("/docs").text
        urls = references(html)
        assert urls, "the docs page references no script or style"
        assert not [url for url in urls if "//" in url or ":" in url], urls
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200, url
            kind = "javascript" if url.endswith(".js") else "css"
            assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
            assert len(asset.content) > 1000 or url == "/static/docs.js"
    assert "/docs/assets/swagger-ui-bundle.js" in urls and "/docs/assets/swagger-ui.css" in urls

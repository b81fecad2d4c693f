"""How the edge serves the web terminal's build: which files, at which paths, with which headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockex import edge


def build(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_index_at_the_root_revalidated_and_hashed_assets_cached_for_a_year(tmp_path: Path) -> None:
    root = build(
        tmp_path,
        {
            "index.html": "<!doctype html>",
            "assets/index-AbC123.js": "1",
            "assets/index-AbC123.css": "a{}",
            "robots.txt": "",
        },
    )
    served = {
        file.paths: (file.content_type, file.cache_control) for file in edge.web_files(root, 1024)
    }
    assert served == {
        ("/", "/index.html"): ("text/html; charset=utf-8", "no-cache"),
        ("/assets/index-AbC123.css",): (
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        ("/assets/index-AbC123.js",): (
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        ("/robots.txt",): ("text/plain; charset=utf-8", "max-age=300"),
    }


def test_each_path_is_an_exact_route_out_of_the_api_filters(tmp_path: Path) -> None:
    root = build(tmp_path, {"index.html": "x", "assets/a-1.js": "y"})
    files = edge.web_files(root, 1024)
    routes = edge.web_routes(files)
    assert [route["match"] for route in routes] == [
        {"path": "/assets/a-1.js"},
        {"path": "/"},
        {"path": "/index.html"},
    ]
    js = routes[0]
    assert js["direct_response"] == {
        "status": 200,
        "body": {"filename": str(root / "assets/a-1.js")},
    }
    headers = {
        entry["header"]["key"]: entry["header"]["value"] for entry in js["response_headers_to_add"]
    }
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert set(js["typed_per_filter_config"]) == {
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.buffer",
    }
    # One local-reply mapper per content type keeps the body and sets the type.
    mappers = edge.web_mappers(files)
    types = [mapper["body_format_override"]["content_type"] for mapper in mappers]
    assert types == ["text/html; charset=utf-8", "text/javascript; charset=utf-8"]
    regex = mappers[0]["filter"]["and_filter"]["filters"][1]["header_filter"]["header"][
        "string_match"
    ]["safe_regex"]["regex"]
    assert regex == r"^(/|/index\.html)(\?.*)?$"


def test_a_missing_build_an_unknown_kind_of_file_or_a_large_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make web"):
        edge.web_files(tmp_path, 1024)
    build(tmp_path, {"index.html": "x", "assets/font.woff3": "y"})
    with pytest.raises(ValueError, match="no content type for '.woff3'"):
        edge.web_files(tmp_path, 1024)
    (tmp_path / "assets/font.woff3").unlink()
    build(tmp_path, {"assets/big.js": "z" * 2048})
    with pytest.raises(ValueError, match="over max_web_file_bytes=1024"):
        edge.web_files(tmp_path, 1024)

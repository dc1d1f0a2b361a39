"""Price data updates without a release, never by surprise: a local HTTP server plays
genai-prices' data URL (the tests never reach the internet)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tokenward.catalog._catalog as catalog_module
import tokenward.catalog._update as update_module
from tokenward.catalog import Catalog, default_catalog
from tokenward.errors import PriceDataError

# genai-prices' own JSON data format (what its updater downloads), with new prices
NEW_DATA: list[dict[str, Any]] = [
    {
        "id": "openai",
        "name": "OpenAI",
        "api_pattern": r"https://api\.openai\.com",
        "model_match": {"starts_with": "gpt-"},
        "models": [
            {
                "id": "gpt-5.4",
                "match": {"or": [{"equals": "gpt-5.4"}, {"starts_with": "gpt-5.4-20"}]},
                "context_window": 1050000,
                "prices": {"input_mtok": "3", "output_mtok": "18", "cache_read_mtok": "0.3"},
            },
            {
                "id": "gpt-5.7",
                "match": {"starts_with": "gpt-5.7"},
                "prices": {"input_mtok": "4", "output_mtok": "24"},
            },
        ],
    },
    {
        "id": "anthropic",
        "name": "Anthropic",
        "api_pattern": r"https://api\.anthropic\.com",
        "model_match": {"contains": "claude"},
        "models": [
            {
                "id": "claude-sonnet-4-6",
                "match": {"starts_with": "claude-sonnet-4-6"},
                "prices": [
                    {"prices": {"input_mtok": "3", "output_mtok": "15"}},
                    {
                        "constraint": {"start_date": "2026-12-01"},
                        "prices": {"input_mtok": "2", "output_mtok": "10"},
                    },
                ],
            }
        ],
    },
    {"id": "google", "name": "Google", "api_pattern": r"https://.*\.googleapis\.com", "models": []},
]


class _Served:
    """What the fake data URL answers: a body, a status, and optionally a lying length."""

    def __init__(self) -> None:
        self.body = json.dumps(NEW_DATA).encode()
        self.status = 200
        self.length: int | None = None


@pytest.fixture()
def server() -> Iterator[tuple[str, _Served]]:
    served = _Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(served.status)
            self.send_header("Content-Type", "application/json")
            length = served.length if served.length is not None else len(served.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(served.body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/prices/data.json", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache dir; the process-wide price data is restored afterwards."""
    monkeypatch.setenv("TOKENWARD_CACHE_DIR", str(tmp_path / "cache"))
    default = default_catalog()
    data_before, default_before = update_module.load_price_data(), default.price_data
    yield tmp_path / "cache"
    update_module._data = data_before
    assert default_before is not None
    default._set_prices(default_before)
    assert catalog_module._default is default


def _child(code: str, cache_dir: Path) -> str:
    env = {**os.environ, "TOKENWARD_CACHE_DIR": str(cache_dir)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_update_fetches_validates_caches_and_prices_with_the_new_data(
    server: tuple[str, _Served], cache: Path
) -> None:
    url, _ = server
    catalog = Catalog.default()
    assert catalog.get("gpt-5.4").prices.input == Decimal("2.5")  # type: ignore[union-attr]
    seen: list[tuple[int, int | None]] = []
    result = catalog.update(url, progress=lambda got, total: seen.append((got, total)))
    today = date.today().isoformat()
    assert result.source == f"genai-prices data of {today}"
    assert (result.providers, result.models) == (3, 3)
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the whole length
    gpt = catalog.get("gpt-5.4-2026-03-05")
    assert gpt.prices.input == Decimal("3") and gpt.price_source == result.source  # type: ignore[union-attr]
    assert catalog.get("gpt-5.7").priced  # a model the bundled data lacks
    assert default_catalog().get("gpt-5.4").prices.input == Decimal("3")  # type: ignore[union-attr]
    # the overlay still applies on top of updated data
    assert catalog.get("mistral-large-latest").price_source == "tokenward overlay"
    # cached atomically, with what was fetched
    assert result.path == str(cache / "genai-prices.json")
    doc = json.loads(Path(result.path).read_text())
    assert doc["providers"] == NEW_DATA and doc["meta"]["url"] == url
    assert [p.name for p in cache.iterdir()] == ["genai-prices.json"]  # no temporary left
    # the next start uses the newer of bundled and cached data
    out = _child(
        """
        from tokenward.catalog import default_catalog
        c = default_catalog()
        print(c.get("gpt-5.4").prices.input, "|", c.price_data.source)
        """,
        cache,
    )
    assert out == f"3 | genai-prices data of {today}"


@pytest.mark.parametrize(
    ("body", "status", "length", "message"),
    [
        (b'[{"id": "openai", "name": "Op', 200, None, "not valid genai-prices data"),  # corrupt
        (json.dumps(NEW_DATA).encode()[:200], 200, len(json.dumps(NEW_DATA)), "truncated"),
        (b'{"providers": []}', 200, None, "non-empty list of providers"),
        (json.dumps(NEW_DATA[1:]).encode(), 200, None, "openai are missing"),
        (b'[{"id": "openai"}]', 200, None, "not valid genai-prices data"),  # fails pydantic
        (b"not found", 404, None, "Could not download"),
    ],
)
def test_a_bad_download_leaves_the_previous_data_in_use_and_says_why(
    server: tuple[str, _Served],
    cache: Path,
    body: bytes,
    status: int,
    length: int | None,
    message: str,
) -> None:
    url, served = server
    served.body, served.status, served.length = body, status, length
    catalog = Catalog.default()
    before = catalog.price_data
    with pytest.raises(PriceDataError, match=message) as info:
        catalog.update(url, timeout=10)
    assert "current prices stay in use" in str(info.value)
    assert "tokenward models update" in str(info.value)
    assert info.value.code == "price-data"
    assert catalog.price_data is before and default_catalog().price_data is before
    assert catalog.get("gpt-5.4").prices.input == Decimal("2.5")  # type: ignore[union-attr]
    assert not cache.exists() or list(cache.iterdir()) == []  # the cache is untouched


def test_a_bad_download_keeps_an_earlier_cached_update(
    server: tuple[str, _Served], cache: Path
) -> None:
    url, served = server
    default_catalog().update(url)
    cached = (cache / "genai-prices.json").read_bytes()
    served.body = b"[1, 2"
    with pytest.raises(PriceDataError):
        default_catalog().update(url)
    assert (cache / "genai-prices.json").read_bytes() == cached
    assert default_catalog().get("gpt-5.4").prices.input == Decimal("3")  # type: ignore[union-attr]


def test_a_corrupt_cache_falls_back_to_the_bundled_data_and_says_so(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.mkdir(parents=True)
    (cache / "genai-prices.json").write_text('{"format": 1, "meta": {"genai_prices": "99"}, "prov')
    with caplog.at_level(logging.WARNING, logger="tokenward.catalog"):
        data = update_module._load()
    assert data.origin == "bundled"
    assert "tokenward models update" in caplog.text and "unusable" in caplog.text


def test_bundled_data_wins_after_genai_prices_is_upgraded(
    server: tuple[str, _Served], cache: Path
) -> None:
    url, _ = server
    default_catalog().update(url)
    path = cache / "genai-prices.json"
    doc = json.loads(path.read_text())
    assert update_module._load().origin == str(path)  # fetched under the installed version
    doc["meta"]["genai_prices"] = "0.0.1"  # fetched before the installed version's release
    path.write_text(json.dumps(doc))
    assert update_module._load().origin == "bundled"


def test_an_empty_cache_dir_setting_keeps_updates_in_memory(
    server: tuple[str, _Served], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = server
    monkeypatch.setenv("TOKENWARD_CACHE_DIR", "")
    result = Catalog.default().update(url)
    assert result.path is None and not cache.exists()


def test_an_unwritable_cache_dir_names_the_fix(
    server: tuple[str, _Served], tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = server
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOKENWARD_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(PriceDataError, match="TOKENWARD_CACHE_DIR"):
        Catalog.default().update(url)


# ------------------------------------------------------------------ the command
def _cli() -> Callable[..., Any]:
    from tokenward.cli import get_app

    app, runner = get_app(), CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_models_update_command(server: tuple[str, _Served], cache: Path) -> None:
    url, served = server
    run = _cli()
    result = run("models", "update", "--url", url)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "Updated price data: genai-prices data of" in flat
    assert "3 models of 3 providers" in flat and "genai-prices.json" in flat.replace(" ", "")
    listing = json.loads(run("models", "--search", "gpt-5.4", "-f", "json").stdout)
    assert listing[0]["price_source"].startswith("genai-prices data of")
    served.body = b"{broken"
    result = run("models", "update", "--url", url)
    assert result.exit_code == 1
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: The price data from") and line.endswith("[price-data]")


def test_models_listing_shows_source_and_date() -> None:
    run = _cli()
    result = run("models", "--provider", "deepseek")
    assert result.exit_code == 0, result.output
    assert "prices: genai-prices" in result.stdout and "deepseek-chat" in result.stdout
    data = json.loads(
        run("models", "-p", "deepseek", "--search", "deepseek-chat", "-f", "json").stdout
    )
    (chat,) = data
    assert chat["price_source"] == "tokenward overlay" and chat["dated_prices"] >= 4
    assert chat["source"] == "https://api-docs.deepseek.com/quick_start/pricing"
    assert chat["as_of"] == "2026-12-04"
    mini = run("models", "--provider", "openai", "--search", "gpt-5.4-mini", "-f", "json")
    assert json.loads(mini.stdout)[0]["tokenizer"] == "o200k_base"

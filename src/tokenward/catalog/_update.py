"""Price data without a release, never by surprise: bundled, or explicitly updated and cached.

Offline by default: the catalog prices with the genai-prices data installed with the package.
``tokenward models update`` / :meth:`Catalog.update` download genai-prices' current data (the
URL its own updater uses), validate it with genai-prices' own types, and write it atomically to
the cache directory (``TOKENWARD_CACHE_DIR``, else the user cache dir). A later start uses the
newer of the bundled and the cached data. Nothing here runs at import or during a call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tokenward.catalog._genai import (
    PriceData,
    bundled_data,
    genai_prices_version,
    providers_from_json,
)
from tokenward.errors import PriceDataError

__all__ = [
    "DEFAULT_UPDATE_URL",
    "PriceUpdate",
    "cache_dir",
    "cache_path",
    "load_price_data",
    "update_price_data",
]

logger = logging.getLogger("tokenward.catalog")

#: Where genai-prices' own updater (``genai_prices.UpdatePrices``) fetches its data.
DEFAULT_UPDATE_URL = "https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/prices/new_data/v2/data.json"
_FILE = "genai-prices.json"
_FORMAT = 1


def cache_dir() -> str | None:
    """The cache directory: ``TOKENWARD_CACHE_DIR`` (empty = no cache), else the user cache dir."""
    if "TOKENWARD_CACHE_DIR" in os.environ:
        return os.environ["TOKENWARD_CACHE_DIR"] or None
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "tokenward", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/tokenward")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "tokenward")


def cache_path() -> str | None:
    """Where updated price data is cached, or ``None`` when caching is disabled."""
    directory = cache_dir()
    return None if directory is None else os.path.join(directory, _FILE)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _from_cache(path: str) -> PriceData:
    """The cached update (raises ``ValueError``/``OSError`` when it is unusable)."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError("unknown cache format")
    meta = doc["meta"]
    fetched = datetime.fromisoformat(meta["fetched_at"])
    return PriceData(
        providers_from_json(doc["providers"]),
        source=f"genai-prices data of {fetched.date().isoformat()}",
        as_of=fetched.date(),
        origin=path,
    )


def _cached_is_newer(path: str) -> bool:
    """A cache fetched while genai-prices V was installed is newer than V's bundled data; after
    an upgrade of genai-prices, its bundled data is the newer until the next update."""
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh).get("meta", {})
        fetched_with = str(meta["genai_prices"])
    except (OSError, ValueError, KeyError, AttributeError):
        return True  # let loading say what is wrong with it
    return _version_tuple(fetched_with) >= _version_tuple(genai_prices_version())


_data: PriceData | None = None
_data_lock = threading.Lock()


def load_price_data() -> PriceData:
    """The price data of this process: the newer of bundled and cached (loaded once)."""
    global _data
    if _data is None:
        with _data_lock:
            if _data is None:
                _data = _load()
    return _data


def _load() -> PriceData:
    path = cache_path()
    if path is not None and os.path.exists(path) and _cached_is_newer(path):
        try:
            return _from_cache(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "tokenward: cached price data %s is unusable (%s); using the data bundled with "
                "genai-prices. Run `tokenward models update` to fetch it again.",
                path,
                exc,
            )
    return bundled_data()


@dataclass(frozen=True)
class PriceUpdate:
    """What :meth:`Catalog.update` fetched and where it cached it."""

    source: str  #: e.g. "genai-prices data of 2026-12-04"
    url: str
    path: str | None  #: the cache file, None when caching is disabled
    providers: int
    models: int
    data: PriceData


def _download(
    url: str, timeout: float, progress: Callable[[int, int | None], None] | None
) -> bytes:
    from http.client import HTTPException, IncompleteRead
    from urllib.error import URLError
    from urllib.request import Request, urlopen

    request = Request(url, headers={"User-Agent": "tokenward (price data update)"})
    try:
        with urlopen(request, timeout=timeout) as response:
            length_header = response.headers.get("Content-Length")
            expected = int(length_header) if length_header and length_header.isdigit() else None
            chunks, received = [], 0
            while True:
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, expected)
    except IncompleteRead as exc:
        raise PriceDataError(
            f"The price data download from {url} was truncated ({len(exc.partial):,} bytes "
            "received before the connection closed). The current prices stay in use; run "
            "`tokenward models update` again."
        ) from None
    except (URLError, HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PriceDataError(
            f"Could not download price data from {url}: {reason}. The current prices stay in "
            "use; check the network (or the URL) and run `tokenward models update` again."
        ) from None
    body = b"".join(chunks)
    if expected is not None and len(body) != expected:
        raise PriceDataError(
            f"The price data download from {url} was truncated ({len(body):,} of "
            f"{expected:,} bytes). The current prices stay in use; run "
            "`tokenward models update` again."
        )
    return body


def _write_atomically(path: str, payload: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def update_price_data(
    url: str | None = None,
    *,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> PriceUpdate:
    """Download, validate and cache genai-prices' current data; make it this process's data.

    Raises :class:`~tokenward.errors.PriceDataError` (and changes nothing) when the download
    fails, is truncated or corrupt, or does not validate.
    """
    global _data
    url = url or DEFAULT_UPDATE_URL
    body = _download(url, timeout, progress)
    try:
        raw: Any = json.loads(body)
        providers = providers_from_json(raw)
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
        detail = " ".join(str(exc).split())[:300]
        raise PriceDataError(
            f"The price data from {url} is not valid genai-prices data ({detail}). The current "
            "prices stay in use; run `tokenward models update` again, or report it to "
            "https://github.com/pydantic/genai-prices if it persists."
        ) from None
    fetched = datetime.now(timezone.utc)
    source = f"genai-prices data of {fetched.date().isoformat()}"
    path = cache_path()
    data = PriceData(providers, source=source, as_of=fetched.date(), origin=path or url)
    if path is not None:
        doc = {
            "format": _FORMAT,
            "meta": {
                "fetched_at": fetched.isoformat(),
                "url": url,
                "sha256": hashlib.sha256(body).hexdigest(),
                "genai_prices": genai_prices_version(),
            },
            "providers": raw,
        }
        try:
            _write_atomically(path, json.dumps(doc).encode("utf-8"))
        except OSError as exc:
            raise PriceDataError(
                f"Could not write the price cache {path}: {exc.strerror or exc}. Set "
                "TOKENWARD_CACHE_DIR to a writable directory (or to an empty string to keep "
                "updates in memory only) and run `tokenward models update` again."
            ) from None
    with _data_lock:
        _data = data
    models = sum(len(p.models) for p in providers)
    return PriceUpdate(source, url, path, len(providers), models, data)

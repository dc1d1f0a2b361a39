"""Offline-first loading of tiktoken encodings.

``get_encoding(name)`` builds a :class:`tiktoken.Encoding` from a local BPE file when one
exists, so no network is touched. Resolution order for the ``.tiktoken`` file:

1. the tiktoken cache directory: ``TIKTOKEN_CACHE_DIR`` (or ``DATA_GYM_CACHE_DIR``; when
   neither is set, tiktoken's default ``<tmp>/data-gym-cache``), file named
   ``sha1(blob URL)`` -- tiktoken's own layout;
2. the copies shipped inside ``llama-index-core`` at
   ``llama_index/core/_static/tiktoken_cache/`` (same naming), located with
   ``importlib.util.find_spec`` *without importing* LlamaIndex;
3. a normal tiktoken download (``tiktoken.get_encoding``), which fills its cache.

Every local file is checked against the sha256 that tiktoken itself expects; a corrupt or
truncated file is skipped. If all three fail, :class:`TokenizerUnavailableError` is raised
and :func:`tokenward.counting.get_counter` falls back to the calibrated estimator
(``exact=False``).

The pattern string and special tokens come from ``tiktoken_ext.openai_public``: its
constructor functions are re-bound to a loader that reads our local file instead of the URL.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
import types
from collections.abc import Callable
from typing import Any

import tiktoken

from tokenward.errors import TokenizerUnavailableError

__all__ = ["bpe_search_dirs", "encoding_source", "get_encoding"]

_lock = threading.RLock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}
_SOURCES: dict[str, str] = {}


def _default_cache_dir() -> str | None:
    """tiktoken's cache dir resolution (``""`` disables the cache -> None)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        d = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        d = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        d = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return d or None


def _llama_index_cache_dir() -> str | None:
    """The BPE copies shipped in llama-index-core, found without importing LlamaIndex."""
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):  # parent package missing / broken install
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = os.path.join(loc, "_static", "tiktoken_cache")
        if os.path.isdir(d):
            return d
    return None


def bpe_search_dirs() -> list[tuple[str, str]]:
    """``(label, directory)`` pairs searched for local BPE files, in order."""
    out: list[tuple[str, str]] = []
    cache = _default_cache_dir()
    if cache:
        out.append(("tiktoken-cache", cache))
    li = _llama_index_cache_dir()
    if li:
        out.append(("llama-index-core", li))
    return out


def _read_local(url: str, expected_hash: str | None) -> tuple[bytes, str] | None:
    key = hashlib.sha1(url.encode()).hexdigest()
    for label, directory in bpe_search_dirs():
        path = os.path.join(directory, key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
            continue  # corrupt or truncated copy: try the next location
        return data, f"{label}:{path}"
    return None


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    import base64

    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class _NotLocal(Exception):
    pass


def _constructor_offline(name: str) -> tuple[dict[str, Any], str] | None:
    """Run tiktoken's own constructor with file loading redirected to local copies."""
    try:
        from tiktoken_ext import openai_public  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - tiktoken always ships it
        return None
    ctors: dict[str, Callable[[], dict[str, Any]]] = openai_public.ENCODING_CONSTRUCTORS
    if name not in ctors:
        return None
    sources: list[str] = []

    def load_local(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        found = _read_local(url, expected_hash)
        if found is None:
            raise _NotLocal(url)
        sources.append(found[1])
        return _parse_bpe(found[0])

    # Re-bind every constructor to a copy of the module globals where
    # ``load_tiktoken_bpe`` reads local files (o200k_harmony calls o200k_base()).
    g: dict[str, Any] = dict(vars(openai_public))
    g["load_tiktoken_bpe"] = load_local
    for fn in ctors.values():
        if isinstance(fn, types.FunctionType):
            g[fn.__name__] = types.FunctionType(
                fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__
            )
    ctor = g.get(getattr(ctors[name], "__name__", ""))
    if not isinstance(ctor, types.FunctionType):
        return None
    try:
        kwargs = ctor()
    except _NotLocal:
        return None
    return kwargs, sources[0] if sources else "local"


def _build(name: str) -> tuple[tiktoken.Encoding, str]:
    local = _constructor_offline(name)
    if local is not None:
        kwargs, source = local
        return tiktoken.Encoding(**kwargs), source
    try:
        enc = tiktoken.get_encoding(name)  # may download (and cache) the file
    except ValueError as exc:
        if "Unknown encoding" in str(exc):
            raise TokenizerUnavailableError(
                f"Unknown tiktoken encoding {name!r}; use 'o200k_base' or 'cl100k_base'."
            ) from exc
        raise TokenizerUnavailableError(_unavailable_message(name, exc)) from exc
    except Exception as exc:  # network errors, read-only cache dir, ...
        raise TokenizerUnavailableError(_unavailable_message(name, exc)) from exc
    return enc, "download"


def _unavailable_message(name: str, exc: BaseException) -> str:
    dirs = ", ".join(d for _, d in bpe_search_dirs()) or "(none)"
    return (
        f"Cannot load tiktoken encoding {name!r}: no local BPE file in {dirs} and the "
        f"download failed ({type(exc).__name__}: {exc}). Copy the file into "
        f"TIKTOKEN_CACHE_DIR, install llama-index-core (it ships o200k/cl100k), or allow "
        f"network access once; counts fall back to the estimator (exact=False) meanwhile."
    )


def get_encoding(name: str) -> tiktoken.Encoding:
    """Return the tiktoken encoding ``name``, loaded offline when possible.

    Cached per process (thread-safe, double-checked). Raises
    :class:`~tokenward.errors.TokenizerUnavailableError` when no local file exists and the
    download fails.
    """
    enc = _ENCODINGS.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _ENCODINGS.get(name)
        if enc is not None:
            return enc
        enc, source = _build(name)
        _ENCODINGS[name] = enc
        _SOURCES[name] = source
        return enc


def encoding_source(name: str) -> str | None:
    """Where a loaded encoding came from (``"llama-index-core:/..."``, ``"download"``...)."""
    return _SOURCES.get(name)


def _clear_cache() -> None:
    """Forget loaded encodings (tests)."""
    with _lock:
        _ENCODINGS.clear()
        _SOURCES.clear()

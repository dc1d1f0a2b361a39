"""tiktoken encodings, loaded offline: never a network request.

``get_encoding(name)`` builds a :class:`tiktoken.Encoding` with tiktoken's own constructor
data (``tiktoken_ext.openai_public``: pattern, special tokens, vocabulary size) and tiktoken's
own file parsers; only where the BPE files are read from changes:

1. the copies shipped in this package (``tokenward/counting/_bpe/*.tiktoken.gz``):
   ``o200k_base`` (gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, o-series; ``o200k_harmony`` for gpt-oss
   reuses it) and ``cl100k_base`` (gpt-4, gpt-3.5, text-embedding-3/ada-002, davinci-002);
2. tiktoken's cache directory (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else
   ``<tmp>/data-gym-cache``; files named ``sha1(url)``, tiktoken's layout), for the legacy
   encodings we do not ship (``p50k_base``, ``p50k_edit``, ``r50k_base``, ``gpt2``: models
   retired in January 2024), should a user have them.

Every file is checked against the sha256 tiktoken itself expects; a file that does not match
is skipped. When no file is found, :class:`TokenizerUnavailableError` is raised and
:func:`tokenward.counting.get_counter` estimates instead (``exact=False``), unless the caller
asked for ``require_exact=True``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
import types
from collections.abc import Callable
from importlib import resources
from typing import Any

import tiktoken
import tiktoken.load

from tokenward.errors import TokenizerUnavailableError

__all__ = ["BUNDLED_ENCODINGS", "encoding_source", "get_encoding", "list_encodings"]

#: Encodings whose BPE file ships inside tokenward (``o200k_harmony`` reuses o200k's file).
BUNDLED_ENCODINGS = ("o200k_base", "o200k_harmony", "cl100k_base")

_lock = threading.RLock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}
_SOURCES: dict[str, str] = {}


class _NotLocal(Exception):
    """No verified local copy of a BPE file."""


def _cache_dir() -> str | None:
    """tiktoken's cache directory (``""`` disables it -> None)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        d = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        d = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        d = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return d or None


def _bundled(url: str) -> bytes | None:
    name = url.rsplit("/", 1)[-1] + ".gz"
    try:
        data = (resources.files("tokenward.counting") / "_bpe" / name).read_bytes()
    except (FileNotFoundError, OSError):
        return None
    return gzip.decompress(data)


def _cached(url: str) -> bytes | None:
    directory = _cache_dir()
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, hashlib.sha1(url.encode()).hexdigest()), "rb") as f:
            return f.read()
    except OSError:
        return None


def _reader(sources: list[str]) -> Callable[[str, str | None], bytes]:
    """A drop-in for tiktoken's ``read_file_cached`` that only reads local, verified files."""

    def read_local(url: str, expected_hash: str | None = None) -> bytes:
        for label, read in (("bundled", _bundled), ("tiktoken-cache", _cached)):
            data = read(url)
            if data is None:
                continue
            if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
                continue  # corrupt or truncated copy: try the next place
            sources.append(f"{label}:{url.rsplit('/', 1)[-1]}")
            return data
        raise _NotLocal(url)

    return read_local


def _rebind(fn: Any, g: dict[str, Any]) -> types.FunctionType:
    return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)


def _constructor_kwargs(name: str) -> tuple[dict[str, Any], str]:
    """tiktoken's constructor for ``name``, run with file reads redirected to local copies."""
    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    ctors: dict[str, Callable[[], dict[str, Any]]] = openai_public.ENCODING_CONSTRUCTORS
    if name not in ctors:
        known = ", ".join(sorted(ctors))
        raise TokenizerUnavailableError(f"Unknown tiktoken encoding {name!r}; use one of {known}.")
    sources: list[str] = []
    # tiktoken's parsers, reading through ``read_local`` instead of ``read_file_cached``
    load_globals = dict(vars(tiktoken.load))
    load_globals["read_file_cached"] = _reader(sources)
    g: dict[str, Any] = dict(vars(openai_public))
    g["load_tiktoken_bpe"] = _rebind(tiktoken.load.load_tiktoken_bpe, load_globals)
    g["data_gym_to_mergeable_bpe_ranks"] = _rebind(
        tiktoken.load.data_gym_to_mergeable_bpe_ranks, load_globals
    )
    # o200k_harmony calls o200k_base(): every constructor sees the redirected loaders
    for fn in ctors.values():
        if isinstance(fn, types.FunctionType):
            g[fn.__name__] = _rebind(fn, g)
    kwargs: dict[str, Any] = g[ctors[name].__name__]()
    return kwargs, sources[0]


def _build(name: str) -> tuple[tiktoken.Encoding, str]:
    try:
        kwargs, source = _constructor_kwargs(name)
    except _NotLocal:
        if name in BUNDLED_ENCODINGS:
            raise TokenizerUnavailableError(
                f"The copy of {name!r} shipped with tokenward is missing or corrupt (its sha256 "
                f"does not match tiktoken's); reinstall it: pip install --force-reinstall tokenward."
            ) from None
        directory = _cache_dir() or "(cache disabled)"
        raise TokenizerUnavailableError(
            f"No local BPE file for tiktoken encoding {name!r}: tokenward ships "
            f"{', '.join(BUNDLED_ENCODINGS)} and never downloads. Put the file in "
            f"TIKTOKEN_CACHE_DIR (now {directory}; e.g. run tiktoken.get_encoding({name!r}) "
            f"once on a machine with network and copy its cache), or accept an estimate "
            f"(leave require_exact unset)."
        ) from None
    return tiktoken.Encoding(**kwargs), source


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, from local files only (cached; thread-safe).

    Raises :class:`~tokenward.errors.TokenizerUnavailableError` for an unknown name or when
    no verified local file exists.
    """
    enc = _ENCODINGS.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _ENCODINGS.get(name)
        if enc is None:
            enc, source = _build(name)
            _ENCODINGS[name] = enc
            _SOURCES[name] = source
        return enc


def encoding_source(name: str) -> str | None:
    """Where a loaded encoding's file came from (``"bundled:o200k_base.tiktoken"``...)."""
    return _SOURCES.get(name)


def list_encodings() -> list[str]:
    """Every encoding name tiktoken defines (those not bundled need a local file)."""
    from tiktoken_ext import openai_public

    return sorted(openai_public.ENCODING_CONSTRUCTORS)


def _clear_cache() -> None:
    """Forget loaded encodings (tests)."""
    with _lock:
        _ENCODINGS.clear()
        _SOURCES.clear()

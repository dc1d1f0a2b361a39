"""BPE files resolve offline: TIKTOKEN_CACHE_DIR, then llama-index-core's copies; no network."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket

import pytest
import tiktoken.load

from tokenward.counting import (
    EstimatorCounter,
    TiktokenCounter,
    _api,
    _loader,
    get_counter,
    get_encoding,
)
from tokenward.errors import TokenizerUnavailableError

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Fresh loader caches, an empty TIKTOKEN_CACHE_DIR, and every network path raising."""

    def boom(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(tiktoken.load, "read_file", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)
    try:
        import requests

        monkeypatch.setattr(requests, "get", boom)
    except ImportError:  # pragma: no cover
        pass
    monkeypatch.setattr(_loader, "_ENCODINGS", {})
    monkeypatch.setattr(_loader, "_SOURCES", {})
    monkeypatch.setattr(_api, "_COUNTERS", {})
    empty = tmp_path / "tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    # tiktoken's own registry must not hand us a cached object either
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return empty


def _llama_file(name: str) -> str:
    d = _loader._llama_index_cache_dir()
    assert d is not None, "llama-index-core is a test dependency"
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    return os.path.join(d, hashlib.sha1(url.encode()).hexdigest())


def test_llama_index_copy_used_with_network_disabled_and_empty_cache(no_network):
    enc = get_encoding("o200k_base")
    assert enc.encode_ordinary("hello world") == [24912, 2375]
    assert _loader.encoding_source("o200k_base").startswith("llama-index-core:")
    enc = get_encoding("cl100k_base")
    assert enc.encode_ordinary("hello world") == [15339, 1917]
    assert "<|endoftext|>" in enc.special_tokens_set
    c = get_counter("gpt-4o")
    assert isinstance(c, TiktokenCounter) and c.exact


def test_llama_index_is_located_without_importing_it(no_network):
    import sys

    before = "llama_index.core" in sys.modules
    assert _loader._llama_index_cache_dir() is not None
    assert ("llama_index.core" in sys.modules) == before


def test_tiktoken_cache_dir_wins(no_network):
    shutil.copy(
        _llama_file("o200k_base"), no_network / hashlib.sha1(O200K_URL.encode()).hexdigest()
    )
    get_encoding("o200k_base")
    assert _loader.encoding_source("o200k_base").startswith("tiktoken-cache:")


def test_corrupt_cached_file_is_skipped(no_network):
    (no_network / hashlib.sha1(O200K_URL.encode()).hexdigest()).write_bytes(b"garbage")
    enc = get_encoding("o200k_base")
    assert enc.encode_ordinary("hello world") == [24912, 2375]
    assert _loader.encoding_source("o200k_base").startswith("llama-index-core:")


def test_nothing_local_and_no_network_falls_back_to_estimator(no_network, monkeypatch):
    monkeypatch.setattr(_loader, "_llama_index_cache_dir", lambda: None)
    with pytest.raises(TokenizerUnavailableError, match="TIKTOKEN_CACHE_DIR"):
        get_encoding("o200k_base")
    c = get_counter("gpt-4o")
    assert isinstance(c, EstimatorCounter) and c.exact is False
    assert c.count_text("hello world") > 0
    with pytest.raises(TokenizerUnavailableError):
        get_counter("gpt-4.1", require_exact=True)


def test_unknown_encoding_name(no_network):
    with pytest.raises(TokenizerUnavailableError, match="Unknown"):
        get_encoding("no_such_base")


def test_get_encoding_is_cached_and_thread_safe(no_network):
    import threading

    results = []
    barrier = threading.Barrier(4)

    def load():
        barrier.wait()
        results.append(get_encoding("o200k_base"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)

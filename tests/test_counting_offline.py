"""Encodings ship in the wheel and load with no network, no tiktoken cache, no LlamaIndex."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load

from tokenward.counting import (
    BUNDLED_ENCODINGS,
    EstimatorCounter,
    TiktokenCounter,
    _api,
    _loader,
    count_messages,
    get_counter,
    get_encoding,
)
from tokenward.errors import TokenizerUnavailableError

ROOT = Path(__file__).resolve().parents[1]
URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Zähl die Tokens: お誕生日おめでとう 🎉 https://example.com/a?b=1"},
]


def _llama_index_dir() -> Path:
    import llama_index.core

    return Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"


def _reference(name: str) -> tiktoken.Encoding:
    """tiktoken's own loading of the copy LlamaIndex ships: an independent reference."""
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_llama_index_dir())
    try:
        from tiktoken_ext import openai_public

        return tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[name]())
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Fresh loader caches, an empty TIKTOKEN_CACHE_DIR, and every network path raising."""

    def boom(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(tiktoken.load, "read_file", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)
    monkeypatch.setattr(_loader, "_ENCODINGS", {})
    monkeypatch.setattr(_loader, "_SOURCES", {})
    monkeypatch.setattr(_api, "_COUNTERS", {})
    empty = tmp_path / "tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return empty


@pytest.mark.parametrize("name", BUNDLED_ENCODINGS)
def test_bundled_encodings_equal_tiktoken(no_network, name):
    enc = get_encoding(name)
    ref = _reference(name)
    assert _loader.encoding_source(name).startswith("bundled:")
    assert enc._mergeable_ranks == ref._mergeable_ranks
    assert enc._pat_str == ref._pat_str and enc._special_tokens == ref._special_tokens
    text = MESSAGES[1]["content"] + " <|endoftext|>"
    assert enc.encode_ordinary(text) == ref.encode_ordinary(text)


def test_counts_exact_with_network_and_cache_gone(no_network):
    res = count_messages(MESSAGES, "gpt-4o")
    assert res.exact is True and res.method == "tiktoken:o200k_base"
    assert isinstance(get_counter("gpt-4.1-mini"), TiktokenCounter)
    assert get_counter("gpt-4").name == "tiktoken:cl100k_base"


def test_corrupt_bundled_copy_is_refused_then_cache_dir_used(no_network, monkeypatch):
    monkeypatch.setattr(_loader, "_bundled", lambda url: b"not the vocabulary")
    with pytest.raises(TokenizerUnavailableError, match="reinstall"):
        get_encoding("o200k_base")
    good = _llama_index_dir() / hashlib.sha1(URL.format("o200k_base").encode()).hexdigest()
    (no_network / good.name).write_bytes(good.read_bytes())
    assert get_encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]
    assert _loader.encoding_source("o200k_base") == "tiktoken-cache:o200k_base.tiktoken"


def test_legacy_encoding_not_shipped_is_estimated_or_refused(no_network):
    class Info:
        name = "text-davinci-003"
        provider = "openai"
        tokenizer = "p50k_base"

    class Catalog:
        def find(self, name):
            return Info()

    with pytest.raises(TokenizerUnavailableError, match="TIKTOKEN_CACHE_DIR") as err:
        get_counter("text-davinci-003", catalog=Catalog(), require_exact=True)
    assert err.value.code
    c = get_counter("text-davinci-003", catalog=Catalog())
    assert isinstance(c, EstimatorCounter) and c.exact is False


def test_unknown_encoding_name(no_network):
    with pytest.raises(TokenizerUnavailableError, match="Unknown tiktoken encoding"):
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


# A process with sockets that cannot connect, an empty tiktoken cache and llama_index hidden.
_GUARD = textwrap.dedent(
    """
    import socket, sys
    def _refuse(*a, **k):
        raise OSError("network disabled")
    socket.socket.connect = _refuse
    socket.create_connection = _refuse
    class _Hide:
        def find_spec(self, name, path=None, target=None):
            if name == "llama_index" or name.startswith("llama_index."):
                raise ModuleNotFoundError(name)
            return None
    sys.meta_path.insert(0, _Hide())
    """
)
_CHECK = textwrap.dedent(
    """
    import json, sys
    from tokenward.counting import count_messages, encoding_source
    msgs = json.loads(sys.argv[1])
    res = count_messages(msgs, "gpt-4o")
    print(json.dumps({"tokens": res.tokens, "exact": res.exact,
                      "source": encoding_source("o200k_base"),
                      "file": __import__("tokenward").__file__,
                      "llama": "llama_index" in sys.modules}))
    """
)


def _run_offline(python: str, tmp_path: Path, extra_path: list[str] | None = None) -> dict:
    import json

    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD)
    cache = tmp_path / "empty-cache"
    cache.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(guard), *(extra_path or [])]),
        "TIKTOKEN_CACHE_DIR": str(cache),
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        [python, "-c", _CHECK, json.dumps(MESSAGES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _expected() -> int:
    ref = _reference("o200k_base")
    per = [
        3 + len(ref.encode_ordinary(m["role"])) + len(ref.encode_ordinary(m["content"]))
        for m in MESSAGES
    ]
    return sum(per) + 3


def test_offline_process_counts_exactly(tmp_path):
    got = _run_offline(sys.executable, tmp_path)
    assert got["exact"] is True and got["tokens"] == _expected()
    assert got["source"] == "bundled:o200k_base.tiktoken" and got["llama"] is False


@pytest.mark.slow
def test_built_wheel_in_a_fresh_venv_counts_exactly_offline(tmp_path):
    """``pip install tokenward`` (our wheel, nothing else of ours) in a new venv, offline."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("tokenward-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tokenward/counting/_bpe/o200k_base.tiktoken.gz" in names
    assert "tokenward/counting/_bpe/cl100k_base.tiktoken.gz" in names
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # tokenward's dependencies (tiktoken, pydantic...) come from this environment's
    # site-packages, appended after the fresh venv's own (whose tokenward wins); that
    # directory's editable-install hooks are not run, and llama_index is hidden.
    got = _run_offline(py, tmp_path, [sysconfig.get_paths()["purelib"]])
    assert got["file"].startswith(str(env_dir))
    assert got["exact"] is True and got["tokens"] == _expected()
    assert got["source"] == "bundled:o200k_base.tiktoken"

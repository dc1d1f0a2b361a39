"""Deterministic mixed corpus for fitting and checking the token estimator.

Four kinds, all taken from files already on the machine or generated from a seed:

* ``prose``: English paragraphs from stdlib docstrings (modules, classes, functions),
  pydoc's language-reference topics and installed packages' README/METADATA descriptions,
  code examples filtered out;
* ``code``: windows of 20-80 lines from stdlib ``.py`` files;
* ``json``: ``json.dumps`` of generated records (users, orders, events, configs) in compact
  and indented styles, plus windows of installed ``.json`` files;
* ``cjk``: real translated UI strings (Chinese, Japanese, Korean) from the system's gettext
  catalogs (``/usr/share/locale/*/LC_MESSAGES/*.mo``; the ``iso_*`` catalogs are skipped:
  they are lists of country/currency names, not running text), plus one third natural
  prose paragraphs built from sentences written for this corpus (``_cjk_sentences.py``,
  sentences split between fit and eval), falling back to sentences written
  here when no catalog is installed.

``corpus(split)`` returns ``[(kind, text), ...]``; ``split`` is ``"fit"`` or ``"eval"``.
The splits share no text: prose paragraphs are deduplicated and split by their text, code
by source file (a file's windows overlap), CJK and other UI strings by catalog family (a
string shared by several families goes with one of them), natural CJK sentences by index,
generated JSON by record batch.
"""

from __future__ import annotations

import gettext
import glob
import hashlib
import inspect
import json
import os
import random
import re
import sys
import sysconfig
from collections.abc import Iterator

KINDS = ("prose", "code", "json", "cjk")
EXTRA_KINDS = ("other",)  # Russian/Greek/German/French UI strings: used to fit, reported apart
_PER_KIND = 300


def _split_of(name: str) -> str:
    return "fit" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 2 == 0 else "eval"


# ---------------------------------------------------------------------------- prose
_PROSE_MODULES = (
    "os",
    "sys",
    "json",
    "re",
    "collections",
    "itertools",
    "functools",
    "threading",
    "asyncio",
    "subprocess",
    "pathlib",
    "logging",
    "argparse",
    "datetime",
    "decimal",
    "fractions",
    "random",
    "statistics",
    "email",
    "http.client",
    "urllib.request",
    "socket",
    "ssl",
    "sqlite3",
    "csv",
    "typing",
    "dataclasses",
    "enum",
    "inspect",
    "contextlib",
    "abc",
    "io",
    "shutil",
    "tempfile",
    "zipfile",
    "tarfile",
    "gzip",
    "hashlib",
    "hmac",
    "secrets",
    "base64",
    "struct",
    "codecs",
    "unittest",
    "doctest",
    "pdb",
    "timeit",
    "traceback",
    "warnings",
    "weakref",
    "copy",
    "pickle",
    "shelve",
    "textwrap",
    "string",
    "difflib",
    "calendar",
    "heapq",
    "bisect",
    "array",
    "queue",
    "sched",
    "selectors",
    "signal",
    "mmap",
    "ctypes",
    "configparser",
    "tomllib",
    "xml.dom.minidom",
    "html.parser",
    "mailbox",
    "imaplib",
    "smtplib",
    "ftplib",
    "poplib",
    "uuid",
    "ipaddress",
    "locale",
    "gettext",
    "platform",
    "errno",
    "multiprocessing",
    "concurrent.futures",
    "pydoc",
)
_PROSE_OK = re.compile(r"^[A-Za-z][^\n]*$")


def _paragraphs(doc: str) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        p = " ".join(line.strip() for line in para.splitlines())
        if len(p) < 120 or ">>>" in p or "::" in p or p.count("(") > 4:
            continue
        letters = sum(ch.isalpha() or ch == " " for ch in p)
        if letters / len(p) < 0.9:
            continue
        yield p


def _prose_items() -> list[tuple[str, str]]:
    import importlib
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    items: list[tuple[str, str]] = []
    for modname in _PROSE_MODULES:
        try:
            mod = importlib.import_module(modname)
        except Exception:
            continue
        objs = [mod] + [getattr(mod, n, None) for n in sorted(dir(mod)) if not n.startswith("_")]
        for obj in objs:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str) or getattr(obj, "__module__", modname) not in (
                modname,
                None,
            ):
                if obj is not mod:
                    continue
                if not isinstance(doc, str):
                    continue
            for i, p in enumerate(_paragraphs(doc)):
                items.append((f"{modname}.{getattr(obj, '__name__', '')}.{i}", p))
    # README-style long descriptions of installed distributions
    for meta in sorted(
        glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "*.dist-info", "METADATA"))
    ):
        try:
            text = open(meta, encoding="utf-8", errors="ignore").read()
        except OSError:
            continue
        body = text.split("\n\n", 1)[-1]
        body = re.sub(r"```.*?```", "", body, flags=re.DOTALL)
        for i, p in enumerate(_paragraphs(body)):
            if "http" in p or "|" in p or "#" in p:
                continue
            items.append((f"{meta}.{i}", p))
    # the language reference / library topics shipped for pydoc's help()
    try:
        from pydoc_data.topics import topics
    except ImportError:
        topics = {}
    for name in sorted(topics):
        for i, p in enumerate(_paragraphs(topics[name])):
            items.append((f"topic.{name}.{i}", p))
    # the Zen of Python
    import codecs
    import this

    zen = codecs.decode(this.s, "rot13")
    items.append(("this", " ".join(zen.splitlines()[2:])))
    # many objects share one docstring (int constants carry int's, re-exported functions
    # their original's): keep each paragraph once and split by its text, so no paragraph
    # lands in both splits
    unique = dict.fromkeys(p for _, p in items)
    return [(p, p) for p in unique]


def _group(texts: list[str], rng: random.Random, lo: int, hi: int) -> list[str]:
    """Join consecutive short items into samples of lo..hi characters."""
    out: list[str] = []
    cur = ""
    target = rng.randint(lo, hi)
    for t in texts:
        cur = f"{cur}\n\n{t}" if cur else t
        if len(cur) >= target:
            out.append(cur)
            cur = ""
            target = rng.randint(lo, hi)
    if cur and len(cur) >= lo // 2:
        out.append(cur)
    return out


# ---------------------------------------------------------------------------- code
def _code_items(rng: random.Random) -> list[tuple[str, str]]:
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    items = []
    for path in files:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        if len(lines) < 40:
            continue
        for j in range(4):
            n = rng.randint(20, 80)
            start = rng.randint(0, max(0, len(lines) - n))
            text = "\n".join(lines[start : start + n]).strip("\n")
            if len(text) > 200:
                items.append((f"{path}:{j}", text))
    return items


# ---------------------------------------------------------------------------- json
_FIRST = [
    "Alice",
    "Bob",
    "Chen",
    "Dmitri",
    "Emma",
    "Farah",
    "Giulia",
    "Hiro",
    "Ines",
    "Jamal",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Oscar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
]
_LAST = [
    "Smith",
    "Garcia",
    "Nakamura",
    "Okafor",
    "Novak",
    "Rossi",
    "Kim",
    "Müller",
    "Silva",
    "Haddad",
    "Johansson",
    "Patel",
    "Nguyen",
    "Kowalski",
    "Dubois",
]
_WORDS = [
    "invoice",
    "shipped",
    "pending",
    "refunded",
    "premium",
    "basic",
    "trial",
    "active",
    "archived",
    "urgent",
    "review",
    "billing",
    "support",
    "onboarding",
    "analytics",
    "checkout",
    "inventory",
    "warehouse",
    "delivery",
    "customer",
    "priority",
    "escalated",
    "resolved",
    "duplicate",
    "webhook",
    "retry",
    "timeout",
    "latency",
    "region",
    "cache",
]


def _record(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(["user", "order", "event", "config", "metrics"])
    if kind == "user":
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return {
            "id": rng.randint(1, 10**6),
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "active": rng.random() < 0.8,
            "roles": rng.sample(["admin", "editor", "viewer", "billing"], 2),
            "created_at": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        }
    if kind == "order":
        return {
            "order_id": f"ord_{rng.getrandbits(40):x}",
            "status": rng.choice(_WORDS),
            "currency": rng.choice(["USD", "EUR", "JPY"]),
            "items": [
                {
                    "sku": f"SKU-{rng.randint(1000, 9999)}",
                    "qty": rng.randint(1, 5),
                    "price": round(rng.uniform(1, 500), 2),
                }
                for _ in range(rng.randint(1, 4))
            ],
            "total": round(rng.uniform(5, 2000), 2),
            "note": " ".join(rng.sample(_WORDS, 4)),
        }
    if kind == "event":
        return {
            "type": rng.choice(["page_view", "click", "purchase", "signup"]),
            "ts": rng.randint(1_600_000_000, 1_800_000_000),
            "session": f"{rng.getrandbits(64):016x}",
            "props": {
                "path": "/" + "/".join(rng.sample(_WORDS, 2)),
                "ms": rng.randint(1, 5000),
                "ok": rng.random() < 0.9,
            },
        }
    if kind == "config":
        return {
            "service": rng.choice(_WORDS),
            "replicas": rng.randint(1, 12),
            "env": {
                k.upper(): rng.choice(["true", "false", str(rng.randint(1, 999))])
                for k in rng.sample(_WORDS, 3)
            },
            "limits": {"cpu": f"{rng.randint(1, 8)}00m", "memory": f"{rng.randint(1, 16)}Gi"},
            "tags": rng.sample(_WORDS, 3),
        }
    return {
        "metric": rng.choice(_WORDS) + "_" + rng.choice(["count", "p95_ms", "ratio"]),
        "values": [round(rng.gauss(100, 30), 3) for _ in range(rng.randint(3, 10))],
        "labels": {"region": rng.choice(["us-east-1", "eu-west-1", "ap-northeast-1"])},
    }


def _json_items(rng: random.Random) -> list[tuple[str, str]]:
    items = []
    for i in range(2 * _PER_KIND):
        recs = [_record(rng) for _ in range(rng.randint(1, 6))]
        style = rng.choice(["compact", "indent2", "indent4", "default"])
        if style == "compact":
            text = json.dumps(recs, separators=(",", ":"), ensure_ascii=False)
        elif style == "indent2":
            text = json.dumps(recs, indent=2, ensure_ascii=False)
        elif style == "indent4":
            text = json.dumps(recs, indent=4)
        else:
            text = json.dumps(recs)
        items.append((f"gen{i}", text))
    return items


# ---------------------------------------------------------------------------- cjk
_CJK_FALLBACK = [
    "今天天气很好，我们一起去公园散步吧。",
    "这个函数返回一个新的列表，原来的列表不会被修改。",
    "请在继续之前保存您的工作。",
    "服务器暂时无法处理您的请求，请稍后再试。",
    "明日の会議は午後三時から始まります。",
    "ファイルが見つかりませんでした。パスを確認してください。",
    "この設定を変更すると、アプリケーションを再起動する必要があります。",
    "오늘 회의는 오후 세 시에 시작합니다.",
    "파일을 찾을 수 없습니다. 경로를 확인하세요.",
    "변경 사항을 저장하려면 다시 시작해야 합니다.",
]


def _family(mo: str) -> str:
    """Catalog family: gtk20/gtk30/gtk30-properties -> gtk, postgres-15 -> postgres."""
    name = os.path.basename(mo)[: -len(".mo")]
    return re.sub(r"[-_.]?\d.*$", "", name.replace("-properties", ""))


def _catalog_strings(
    langs: tuple[str, ...], keep, quick: bool = False, max_files: int | None = None
) -> list[tuple[str, str, list[str]]]:
    """``[(family, path, strings)]`` of the gettext catalogs of ``langs`` (not ``iso_*``)."""
    out = []
    for lang in langs:
        files = sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo"))
        if quick:  # an even spread of ~10 catalogs: parsing all of them takes seconds
            files = files[:: max(1, len(files) // 10)]
        files = [f for f in files if not os.path.basename(f).startswith("iso_")][:max_files]
        for mo in files:
            try:
                with open(mo, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
            except Exception:
                continue
            strings = [v for k, v in cat.items() if k and isinstance(v, str) and keep(v)]
            out.append((_family(mo), mo, strings))
    return out


def _split_strings(
    cats: list[tuple[str, str, list[str]]], split: str
) -> list[tuple[str, str, list[str]]]:
    """Keep each catalog's strings of ``split``. A string belongs to the split of its
    catalog family (gtk20 and gtk30 share most translations, so whole families go to one
    split); a string found in several families goes with the first of them, so no string
    is in both splits."""
    owner: dict[str, str] = {}
    for fam, _, strings in cats:
        for s in strings:
            if fam < owner.get(s, "\uffff"):
                owner[s] = fam
    return [
        (fam, mo, [s for s in strings if _split_of(owner[s]) == split]) for fam, mo, strings in cats
    ]


def _cjk_items(rng: random.Random, split: str, quick: bool = False) -> list[tuple[str, str]]:
    items = []
    cats = _catalog_strings(
        ("zh_CN", "zh_TW", "ja", "ko"),
        lambda v: len(v) > 6 and sum(ord(c) > 0x2E80 for c in v) > len(v) * 0.4,
        quick,
    )
    for _, mo, strings in _split_strings(cats, split):
        rng.shuffle(strings)
        for j, s in enumerate(_group(strings[:400], rng, 80, 700)):
            items.append((f"{mo}:{j}", s))
    if not items:
        fallback = [s for s in _CJK_FALLBACK if _split_of(s) == split]
        for j, s in enumerate(_group(fallback * 20, rng, 60, 400)):
            items.append((f"fallback:{j}", s))
    return items


def _natural_cjk(split: str, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """Paragraphs of 2-6 hand-written natural sentences; sentences are split fit/eval by
    index (even -> fit), so no sentence appears in both splits."""
    from _cjk_sentences import JA, KO, ZH

    out = []
    for lang, sents in (("zh", ZH), ("ja", JA), ("ko", KO)):
        pool = [s for i, s in enumerate(sents) if (i % 2 == 0) == (split == "fit")]
        for j in range(n // 3):
            k = rng.randint(2, min(6, len(pool)))
            out.append(
                (
                    f"natural-{lang}:{j}",
                    "".join(rng.sample(pool, k)) if lang != "ko" else " ".join(rng.sample(pool, k)),
                )
            )
    return out


def _other_items(rng: random.Random, split: str) -> list[tuple[str, str]]:
    items = []
    cats = _catalog_strings(
        ("ru", "uk", "el", "de", "fr", "es", "pl"), lambda v: len(v) > 20, max_files=12
    )
    for _, mo, strings in _split_strings(cats, split):
        rng.shuffle(strings)
        for j, s in enumerate(_group(strings[:120], rng, 150, 900)):
            items.append((f"{mo}:{j}", s))
    return items


def corpus(
    split: str = "eval",
    per_kind: int = _PER_KIND,
    seed: int = 20261123,
    extra: bool = False,
    quick: bool = False,
) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` for ``split`` in {"fit", "eval"}; deterministic.

    ``quick=True`` reads fewer CJK catalogs (smoke runs). ``extra=True`` adds the ``other``
    kind (non-English Latin, Cyrillic, Greek text)."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    prose = [(n, t) for n, t in _prose_items() if _split_of(n) == split]
    prose_texts = _group([t for _, t in prose], rng, 200, 2000)
    sources = {
        "prose": [("p", t) for t in prose_texts],
        # windows of one file overlap: split by file
        "code": [(n, t) for n, t in _code_items(rng) if _split_of(n.rsplit(":", 1)[0]) == split],
        "json": [(n, t) for n, t in _json_items(rng) if _split_of(n) == split],
        "cjk": _cjk_items(rng, split, quick),
    }
    # a third of the CJK corpus is natural prose, the rest UI strings
    rng.shuffle(sources["cjk"])
    sources["cjk"] = sources["cjk"][: per_kind - per_kind // 3] + _natural_cjk(
        split, rng, per_kind // 3
    )
    if extra:
        sources["other"] = _other_items(rng, split)
    for kind in KINDS + (EXTRA_KINDS if extra else ()):
        items = sources[kind]
        rng.shuffle(items)
        out.extend((kind, t) for _, t in items[:per_kind])
    return out


if __name__ == "__main__":
    import collections
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        c = corpus(sys.argv[1] if len(sys.argv) > 1 else "eval")
    by = collections.Counter(k for k, _ in c)
    print(by)
    for kind in KINDS:
        sample = next(t for k, t in c if k == kind)
        print(f"--- {kind}\n{sample[:300]}")

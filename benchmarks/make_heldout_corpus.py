"""Build ``benchmarks/data/heldout_corpus.jsonl``: text the estimate was never tuned on.

Run once (``python benchmarks/make_heldout_corpus.py``); the output is committed, so the
benchmark does not depend on what a machine has installed. Every record is
``{"class", "source", "split", "text"}``. Sources were chosen to share nothing with the old
fit corpus (``_corpus.py``: stdlib docstrings and code, pydoc topics, generated user/order
JSON): licence texts for English prose, gettext catalogs of *other* languages, third-party and
non-Python source files, and data/emoji/URL/base64 text generated here with its own
vocabulary and seed.

``split`` is ``"calibrate"`` or ``"eval"``, decided by a hash of ``source`` (a file, a
catalog, a generator batch): everything cut from one source lands in one split, so the two
splits share no text by construction (``tests/test_counting_corpus.py`` checks it).
"""

from __future__ import annotations

import base64
import csv
import glob
import hashlib
import io
import json
import os
import random
import re
import struct
import sys
from collections.abc import Iterator

OUT = os.path.join(os.path.dirname(__file__), "data", "heldout_corpus.jsonl")
PER_CLASS = 30
CLASSES = (
    "prose-en",
    "german",
    "french",
    "spanish",
    "polish",
    "vietnamese",
    "cyrillic",
    "arabic",
    "hindi",
    "cjk",
    "code",
    "json",
    "yaml",
    "csv",
    "markdown-table",
    "urls-paths",
    "emoji",
    "base64",
)


def split_of(source: str) -> str:
    return "calibrate" if hashlib.sha256(source.encode()).digest()[0] % 2 == 0 else "eval"


def _windows(text: str, rng: random.Random, lo: int, hi: int, n: int) -> Iterator[str]:
    """Up to ``n`` non-overlapping windows of ``lo``-``hi`` characters, cut at line ends."""
    pos = 0
    for _ in range(n):
        if pos >= len(text) - lo:
            return
        end = min(len(text), pos + rng.randint(lo, hi))
        nl = text.rfind("\n", pos + lo // 2, end)
        end = nl if nl > pos else end
        chunk = text[pos:end].strip()
        pos = end + 1
        if len(chunk) >= lo // 2:
            yield chunk


def prose_en(rng: random.Random) -> Iterator[tuple[str, str]]:
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        with open(path, encoding="utf-8", errors="ignore") as f:
            text = f.read()
        paras = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n\n")]
        paras = [p for p in paras if len(p) > 200 and p.count(" ") > 30]
        for p in paras[:6]:
            yield path, p[:1200]


_LANGS = {
    "german": ["de"],
    "french": ["fr"],
    "spanish": ["es"],
    "polish": ["pl"],
    "vietnamese": ["vi"],
    "cyrillic": ["ru", "uk"],
    "arabic": ["ar"],
    "hindi": ["hi"],
    "cjk": ["zh_CN", "ja", "ko"],
}


def _catalog(path: str) -> list[str]:
    import gettext

    try:
        with open(path, "rb") as f:
            cat = gettext.GNUTranslations(f)
    except (OSError, struct.error, UnicodeDecodeError):
        return []
    out = []
    for k, v in cat._catalog.items():  # type: ignore[attr-defined]
        if isinstance(k, str) and k and isinstance(v, str) and len(v) > 25 and "%" not in v:
            out.append(v.strip())
    return out


def language(langs: list[str], rng: random.Random) -> Iterator[tuple[str, str]]:
    for lang in langs:
        files = sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo"))
        files = [f for f in files if not os.path.basename(f).startswith("iso_")]
        rng.shuffle(files)
        for path in files:
            strings = _catalog(path)
            if len(strings) < 8:
                continue
            rng.shuffle(strings)
            for i in range(0, min(len(strings), 24), 8):
                yield path, "\n".join(strings[i : i + 8])[:1200]


def code(rng: random.Random) -> Iterator[tuple[str, str]]:
    pats = [
        "/usr/include/*.h",
        "/usr/share/doc/git/contrib/**/*.go",
        "/root/.rustup/**/*.rs",
        "/usr/lib/python3*/site-packages/**/*.js",
        f"{sys.prefix}/lib/python3*/site-packages/**/*.js",
        f"{sys.prefix}/lib/python3*/site-packages/requests/*.py",
        f"{sys.prefix}/lib/python3*/site-packages/pydantic/*.py",
    ]
    files: list[str] = []
    for pat in pats:
        files += sorted(glob.glob(pat, recursive=True))[:40]
    shells = []
    for path in sorted(glob.glob("/usr/bin/*"))[:400]:
        try:
            with open(path, "rb") as f:
                if f.read(12).startswith((b"#!/bin/sh", b"#!/bin/bash")):
                    shells.append(path)
        except OSError:
            pass
    files += shells[:30]
    rng.shuffle(files)
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        start = text.find("\n", len(text) // 3)  # past licence headers and imports
        for w in _windows(text[start + 1 :] if start > 0 else text, rng, 400, 1200, 2):
            yield path, w


_PRODUCTS = [
    "telescope",
    "kayak",
    "espresso grinder",
    "drone",
    "synthesizer",
    "tent",
    "e-bike",
    "microscope",
]
_CITIES = [
    "Reykjavík",
    "Kraków",
    "São Paulo",
    "Nagoya",
    "Marrakesh",
    "Winnipeg",
    "Tbilisi",
    "Hobart",
]
_STATUSES = ["backordered", "in_transit", "delivered", "returned", "awaiting_pickup"]


def _shipment(rng: random.Random) -> dict[str, object]:
    return {
        "shipment_ref": f"SHP-{rng.randint(100000, 999999)}",
        "carrier": rng.choice(["DHL", "UPS", "PostNord", "Yamato", "Correios"]),
        "destination": {"city": rng.choice(_CITIES), "postcode": f"{rng.randint(1000, 99999)}"},
        "items": [
            {
                "sku": f"{rng.choice(_PRODUCTS)[:3].upper()}-{rng.randint(10, 999)}",
                "qty": rng.randint(1, 9),
                "unit_price": round(rng.uniform(3, 2500), 2),
            }
            for _ in range(rng.randint(1, 4))
        ],
        "status": rng.choice(_STATUSES),
        "insured": rng.random() < 0.5,
        "weight_kg": round(rng.uniform(0.1, 40), 3),
        "eta": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
    }


def data_json(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        recs = [_shipment(rng) for _ in range(rng.randint(1, 4))]
        indent = rng.choice([None, 2, 4])
        yield (
            f"json-batch-{batch}",
            json.dumps(recs if len(recs) > 1 else recs[0], indent=indent, ensure_ascii=False),
        )


def data_yaml(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        lines = [
            f"service: {rng.choice(['ingest', 'billing-api', 'search', 'notifier'])}-{batch}",
            "replicas: " + str(rng.randint(1, 12)),
            "env:",
        ]
        for _ in range(rng.randint(3, 8)):
            lines.append(
                f"  - name: {rng.choice(['LOG_LEVEL', 'DB_POOL', 'CACHE_TTL', 'REGION', 'FEATURE_X'])}_{rng.randint(1, 99)}"
            )
            lines.append(
                f'    value: "{rng.choice(["debug", "eu-west-3", "300", "true", "postgres://db:5432/app"])}"'
            )
        lines.append(
            'resources:\n  limits:\n    cpu: "'
            + str(rng.choice([0.5, 1, 2]))
            + '"\n    memory: '
            + rng.choice(["256Mi", "1Gi", "4Gi"])
        )
        yield f"yaml-batch-{batch}", "\n".join(lines)


def data_csv(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["station_id", "city", "date", "temp_c", "rain_mm", "wind_kmh", "note"])
        for _ in range(rng.randint(5, 25)):
            w.writerow(
                [
                    rng.randint(1000, 9999),
                    rng.choice(_CITIES),
                    f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    round(rng.uniform(-20, 40), 1),
                    round(rng.uniform(0, 80), 1),
                    rng.randint(0, 120),
                    rng.choice(["", "sensor recalibrated", 'gusts, "strong"', "n/a"]),
                ]
            )
        yield f"csv-batch-{batch}", buf.getvalue()


def markdown_tables(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        cols = rng.sample(
            ["Model", "Latency (ms)", "Cost / 1M", "Context", "Region", "Notes", "p95"], 4
        )
        rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _ in range(rng.randint(3, 12)):
            cells = [
                rng.choice(
                    [
                        f"{rng.uniform(0.1, 900):.2f}",
                        rng.choice(_PRODUCTS),
                        rng.choice(_CITIES),
                        f"{rng.randint(8, 1024)}k",
                        "—",
                        "**yes**",
                    ]
                )
                for _ in cols
            ]
            rows.append("| " + " | ".join(cells) + " |")
        yield f"md-batch-{batch}", "\n".join(rows)


def urls_paths(rng: random.Random) -> Iterator[tuple[str, str]]:
    hosts = [
        "api.example-shop.io",
        "cdn.static-assets.net",
        "docs.internal.corp",
        "storage.googleapis.com",
        "github.com",
    ]
    words = [
        "reports",
        "2026",
        "invoices",
        "v3",
        "users",
        "download",
        "assets",
        "img",
        "q4-final",
        "export",
    ]
    for batch in range(PER_CLASS):
        out = []
        for _ in range(rng.randint(4, 10)):
            kind = rng.random()
            segs = "/".join(
                rng.choice(words) + (str(rng.randint(1, 999)) if rng.random() < 0.3 else "")
                for _ in range(rng.randint(2, 6))
            )
            if kind < 0.5:
                q = "&".join(
                    f"{rng.choice(['id', 'page', 'sort', 'utm_source', 'token'])}={rng.randint(1, 10**6)}"
                    for _ in range(rng.randint(0, 3))
                )
                out.append(f"https://{rng.choice(hosts)}/{segs}" + (f"?{q}" if q else ""))
            elif kind < 0.8:
                out.append(f"/var/lib/{segs}.{rng.choice(['log', 'json', 'tar.gz', 'parquet'])}")
            else:
                out.append(
                    "C:\\Users\\"
                    + rng.choice(["anna", "jbrown", "svc_build"])
                    + "\\"
                    + segs.replace("/", "\\")
                    + ".xlsx"
                )
        yield f"url-batch-{batch}", rng.choice(["\n", " ", "\nSee: "]).join(out)


_EMOJI = [
    "😀",
    "🎉",
    "🚀",
    "🔥",
    "✅",
    "❌",
    "💡",
    "📦",
    "🙏",
    "😂",
    "🥲",
    "🤖",
    "❤️",
    "👍🏽",
    "👩‍💻",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇩🇪",
    "🇯🇵",
    "🇧🇷",
    "🧑🏿‍🚀",
    "⭐",
    "🍕",
    "☕",
]
_CHAT = [
    "shipped it",
    "great job team",
    "deploy is green",
    "who broke the build",
    "lunch?",
    "see you tomorrow",
    "release notes are up",
    "thanks so much",
]


def emoji(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        lines = []
        for _ in range(rng.randint(3, 10)):
            parts = [rng.choice(_CHAT)] + [rng.choice(_EMOJI) for _ in range(rng.randint(1, 5))]
            rng.shuffle(parts)
            lines.append(" ".join(parts))
        yield f"emoji-batch-{batch}", "\n".join(lines)


def base64_blobs(rng: random.Random) -> Iterator[tuple[str, str]]:
    for batch in range(PER_CLASS):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(150, 900)))
        b = base64.b64encode(raw).decode()
        style = batch % 3
        if style == 0:
            text = "data:image/png;base64," + b
        elif style == 1:
            text = (
                "-----BEGIN CERTIFICATE-----\n"
                + "\n".join(b[i : i + 64] for i in range(0, len(b), 64))
                + "\n-----END CERTIFICATE-----"
            )
        else:
            text = f'{{"attachment": "{b}", "encoding": "base64"}}'
        yield f"b64-batch-{batch}", text


def build() -> list[dict[str, str]]:
    rng = random.Random(20261204)
    gens = {
        "prose-en": prose_en(rng),
        "code": code(rng),
        "json": data_json(rng),
        "yaml": data_yaml(rng),
        "csv": data_csv(rng),
        "markdown-table": markdown_tables(rng),
        "urls-paths": urls_paths(rng),
        "emoji": emoji(rng),
        "base64": base64_blobs(rng),
        **{cls: language(langs, rng) for cls, langs in _LANGS.items()},
    }
    records = []
    for cls in CLASSES:
        seen: set[str] = set()
        for source, text in gens[cls]:
            if text in seen:
                continue
            seen.add(text)
            records.append(
                {"class": cls, "source": source, "split": split_of(source), "text": text}
            )
            if len(seen) >= PER_CLASS:
                break
    return records


if __name__ == "__main__":
    recs = build()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts: dict[str, dict[str, int]] = {}
    for r in recs:
        counts.setdefault(r["class"], {"calibrate": 0, "eval": 0})[r["split"]] += 1
    for cls, c in counts.items():
        print(f"{cls:15s} calibrate {c['calibrate']:3d}  eval {c['eval']:3d}")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")

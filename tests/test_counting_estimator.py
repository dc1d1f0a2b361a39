"""Content-aware estimator and the per-model Calibrator."""

from __future__ import annotations

import threading

import pytest

from tokenward.counting import (
    Calibrator,
    EstimatorCounter,
    count_messages,
    count_text,
    estimate_tokens,
    get_counter,
    get_encoding,
)

SAMPLES = [
    "The quick brown fox jumps over the lazy dog while the committee reviews the proposal. "
    "Nevertheless, the documentation explains how configuration files are loaded at startup, "
    "which options override others, and what happens when a value cannot be parsed.",
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    a, b = 0, 1\n"
    "    for _ in range(n - 1):\n        a, b = b, a + b\n    return b\n\n\n"
    "class Cache:\n    def __init__(self, size=128):\n        self._data = {}\n        self.size = size\n",
    '{"id": 4213, "name": "Alice Smith", "email": "alice.smith@example.com", "active": true, '
    '"roles": ["admin", "billing"], "created_at": "2025-03-14T09:26:00Z", "total": 1520.75}',
    "服务器暂时无法处理您的请求，请稍后再试。如果问题仍然存在，请联系系统管理员并提供错误代码。",
    "ファイルが見つかりませんでした。パスを確認してから、もう一度実行してください。",
    "파일을 찾을 수 없습니다. 경로를 확인한 다음 다시 실행하세요.",
]


# Per-sample tolerance: the benchmark measures the distribution; this guards regressions.
TOLERANCE = [0.15, 0.15, 0.15, 0.15, 0.15, 0.15]


@pytest.mark.parametrize(("text", "tol"), list(zip(SAMPLES, TOLERANCE)))
def test_estimate_close_to_o200k(text, tol):
    exact = len(get_encoding("o200k_base").encode_ordinary(text))
    est = estimate_tokens(text)
    assert abs(est - exact) / exact <= tol, (est, exact)


@pytest.mark.parametrize(
    "text",
    [
        "服务器暂时无法处理您的请求",
        "ファイルが見つかりませんでした",
        "파일을 찾을 수 없습니다",
        "這座城市的夜景非常美麗",
    ],
)
def test_cjk_greedy_match_reproduces_o200k(text):
    from tokenward.counting._estimator import _cjk_tokens, _full_table

    _full_table()  # loads the CJK vocabulary
    assert _cjk_tokens(text) == len(get_encoding("o200k_base").encode_ordinary(text))


def test_estimator_tables_are_o200k_tokens():
    from tokenward.counting._estimator import MIN_WORD
    from tokenward.counting._estimator_tables import CJK_TOKENS, WORDS

    enc = get_encoding("o200k_base")
    cjk = CJK_TOKENS.split("|")
    assert len(cjk) == 10561 and all(len(enc.encode_ordinary(t)) == 1 for t in cjk)
    words = WORDS.split()
    assert len(words) == 8000 and all(len(w) >= MIN_WORD for w in words)
    assert all(
        min(len(enc.encode_ordinary(w)), len(enc.encode_ordinary(" " + w))) == 1 for w in words
    )


def test_rare_word_letters_feature():
    from tokenward.counting._estimator import FEATURE_NAMES, features

    def rare(text):
        return dict(zip(FEATURE_NAMES, features(text)))["rare_word_letters"]

    assert rare("the information about performance") == 0  # common single-token words
    assert rare("self._sampwidth = getnchannels") == len("sampwidth") + len("getnchannels")
    # splitting identifiers raises the estimate
    assert estimate_tokens("getnchannels sampwidth") > estimate_tokens("information performance")


def test_estimator_basics():
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    long = "word " * 10_000
    assert 8_000 <= estimate_tokens(long) <= 12_000  # ~1 token per short word (o200k: 10,001)
    assert estimate_tokens("x" * 5000) > 100  # one huge run is not one token
    assert estimate_tokens("Привет, как дела? Всё хорошо.") > 5  # other scripts count


def test_estimates_are_flagged_inexact():
    res = count_text("hello there", "claude-sonnet-4-5")
    assert res.exact is False and res.method == "estimate" and res.tokens > 0
    res = count_messages([{"role": "user", "content": "hello there"}], "gemini-2.5-pro")
    assert res.exact is False


def test_calibrator_converges_to_reported_ratio():
    cal = Calibrator()
    assert cal.ratio("m") == 1.0
    for est in range(100, 3000, 97):
        cal.observe(est, round(est * 1.25), model="m")
    assert cal.ratio("m") == pytest.approx(1.25, rel=0.01)
    assert cal.apply(1000, "m") == 1250
    assert cal.ratio("other") == 1.0  # per model


def test_calibrator_rejects_outliers_and_clamps():
    cal = Calibrator(min_samples=3)
    for _ in range(10):
        cal.observe(1000, 1100, model="m")
    assert cal.observe(1000, 1_000_000, model="m") is False  # absurd ratio
    assert cal.observe(1000, 2500, model="m") is False  # far from the learned ratio
    assert cal.observe(3, 100, model="m") is False  # too small to say anything
    assert cal.ratio("m") == pytest.approx(1.1)
    # a minority of wild (but in-range) points does not move the median much
    for i in range(5):
        cal.observe(1000, 1600 if i % 2 else 1150, model="m")
    assert cal.ratio("m") == pytest.approx(1.1, abs=0.03)
    clamp = Calibrator(min_samples=1, max_ratio=2.0)
    for _ in range(5):
        clamp.observe(100, 390, model="x")
    assert clamp.ratio("x") == 2.0


def test_calibrator_thread_safe():
    cal = Calibrator(window=1000)

    def feed():
        for i in range(500):
            cal.observe(1000, 1200, model="t")

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cal.samples("t") == 1000 and cal.ratio("t") == pytest.approx(1.2)


def test_estimator_counter_applies_calibration():
    cal = Calibrator(min_samples=1)
    c = EstimatorCounter(model="my-llama", calibrator=cal)
    msgs = [
        {"role": "user", "content": "Explain the difference between a list and a tuple in Python."}
    ]
    before = c.count_messages(msgs)
    for _ in range(3):
        c.observe(before, before * 2 - 1)
    after = c.count_messages(msgs)  # cached message counts are scaled at the end
    assert after == pytest.approx(before * (2 * before - 1) / before, abs=1)
    assert c.count_text("hello world") >= 2 * estimate_tokens("hello world") - 1


def test_default_counter_for_unknown_model_is_estimator():
    c = get_counter("some-local-model-7b")
    assert isinstance(c, EstimatorCounter) and c.exact is False


def test_feeding_back_calibrated_estimates_converges_without_oscillating():
    cal = Calibrator(min_samples=3)
    c = EstimatorCounter(model="acme-1", calibrator=cal)
    convos = [
        [
            {
                "role": "user",
                "content": f"Question {i}: " + "please summarise the quarterly report " * (i + 3),
            }
        ]
        for i in range(30)
    ]
    ratios = []
    for msgs in convos:
        est = c.count_messages(msgs)  # calibrated, as a caller would see it
        reported = round(c.raw_count_messages(msgs) * 1.3)  # the provider's truth
        c.observe(est, reported)
        ratios.append(cal.ratio("acme-1"))
    assert ratios[-1] == pytest.approx(1.3, rel=0.02)
    assert all(r == pytest.approx(1.3, rel=0.03) for r in ratios[5:])

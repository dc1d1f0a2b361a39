"""The estimate (o200k count) and the Calibrator per (provider, model, content class):
learning, exported state, drift history."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tokenward.counting import (
    CalibrationRecord,
    Calibrator,
    EstimatorCounter,
    content_class,
    count_messages,
    count_text,
    estimate_tokens,
    get_counter,
    get_encoding,
)

CODE = "def area(r: float) -> float:\n    return 3.14159 * r ** 2\n\nfor i in range(10):\n    print(area(i))\n"
PROSE = "Please summarise the quarterly report for the board and highlight the main risks. "


def test_estimate_is_the_o200k_count():
    enc = get_encoding("o200k_base")
    for text in ("hello world", "Zähl 🎉 お誕生日", CODE, "<|endoftext|>"):
        assert estimate_tokens(text) == len(enc.encode_ordinary(text))
    assert estimate_tokens("") == 0


def test_estimates_are_flagged_inexact():
    res = count_text("hello there", "claude-sonnet-4-5")
    assert res.exact is False and res.method == "estimate" and res.tokens == 2
    res = count_messages([{"role": "user", "content": "hello there"}], "gemini-2.5-pro")
    assert res.exact is False


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        (PROSE * 3, "prose"),
        (CODE, "code"),
        ('{"id": 1, "name": "Ada", "tags": ["x", "y"], "active": true}', "json"),
        ("name,price,qty\nwidget,2.50,10\ngadget,4.00,3\n", "tabular"),
        ("| a | b |\n|---|---|\n| 1 | 2 |\n", "tabular"),
        ("service: api\nreplicas: 3\nenv:\n  - name: X\n", "data"),
        ("https://example.com/a/b?c=1\n/var/log/app/x.log C:\\Users\\a\\b.xlsx", "paths"),
        ("服务器暂时无法处理您的请求，请稍后再试。", "cjk"),
        ("Привет! Как дела? Всё хорошо, спасибо.", "cyrillic"),
        ("مرحبا بكم في موقعنا", "arabic"),
        ("नमस्ते, आप कैसे हैं?", "indic"),
        ("Γειά σου κόσμε, τι κάνεις;", "script"),
        ("Größere Änderungen müssen vorher geprüft werden, sagt Jürgen.", "latin"),
        ("👨‍👩‍👧‍👦 🎉 🇩🇪 👍🏽 ❤️ great!", "emoji"),
        (
            "data:image/png;base64,"
            + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk" * 3,
            "encoded",
        ),
    ],
)
def test_content_class(text, cls):
    assert content_class(text) == cls


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
        for _ in range(500):
            cal.observe(1000, 1200, model="t")

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cal.samples("t") == 1000 and cal.ratio("t") == pytest.approx(1.2)


def test_calibrator_learns_per_content_class():
    cal = Calibrator()
    # code costs the provider 1.4x o200k, prose 1.1x; mixed prompts teach the dominant class
    for _ in range(5):
        cal.observe(
            {"code": 900, "prose": 100}, round(900 * 1.4 + 100 * 1.1), model="m", provider="p"
        )
        cal.observe({"prose": 1000}, 1100, model="m", provider="p")
    assert cal.ratio("m", provider="p", content_class="code") == pytest.approx(1.4, rel=0.02)
    assert cal.ratio("m", provider="p", content_class="prose") == pytest.approx(1.1, rel=0.02)
    # a class never seen uses the model-wide ratio; another provider knows nothing
    assert 1.1 <= cal.ratio("m", provider="p", content_class="cjk") <= 1.4
    assert cal.ratio("m", provider="q", content_class="code") == 1.0


def test_estimator_counter_scales_each_message_by_its_class():
    cal = Calibrator(min_samples=1)
    c = EstimatorCounter(model="acme-1", provider="acme", calibrator=cal)
    code = [{"role": "user", "content": CODE * 4}]
    prose = [{"role": "user", "content": PROSE * 4}]
    raw_code, raw_prose = c.raw_count_messages(code), c.raw_count_messages(prose)
    for _ in range(3):
        c.observe(c.count_messages(code), round(raw_code * 1.5))
        c.observe(c.count_messages(prose), round(raw_prose * 1.1))
    assert c.count_messages(code) == pytest.approx(raw_code * 1.5, abs=2)
    assert c.count_messages(prose) == pytest.approx(raw_prose * 1.1, abs=2)
    assert c.count_text(CODE) == pytest.approx(estimate_tokens(CODE) * 1.5, abs=1)
    assert c.count_message(prose[0]) == pytest.approx(c.raw_count_messages(prose) * 1.1 - 3, abs=2)


def test_feeding_back_calibrated_estimates_converges_without_oscillating():
    cal = Calibrator(min_samples=3)
    c = EstimatorCounter(model="acme-1", calibrator=cal)
    ratios = []
    for i in range(30):
        msgs = [{"role": "user", "content": f"Question {i}: " + PROSE * (i + 3)}]
        est = c.count_messages(msgs)  # calibrated, as a caller would see it
        reported = round(c.raw_count_messages(msgs) * 1.3)  # the provider's truth
        c.observe(est, reported)
        ratios.append(cal.ratio("acme-1", provider="unknown"))
    assert ratios[-1] == pytest.approx(1.3, rel=0.02)
    assert all(r == pytest.approx(1.3, rel=0.03) for r in ratios[5:])


def test_default_counter_for_unknown_model_is_estimator():
    c = get_counter("some-local-model-7b")
    assert isinstance(c, EstimatorCounter) and c.exact is False


def test_estimator_truncate_never_exceeds_its_count():
    c = EstimatorCounter(model="m", calibrator=Calibrator())
    text = "Some prose with words, numbers 12345 and code: def f(x): return x\n" * 30
    for limit in (1, 7, 50, 200):
        out = c.truncate(text, limit)
        assert c.count_text(out) <= limit and text.startswith(out)


# -- exported state and drift ---------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_state_round_trips_through_json_and_keeps_the_history():
    clock = _Clock()
    cal = Calibrator(clock=clock)
    for day, ratio in enumerate((1.10, 1.10, 1.10, 1.20, 1.20, 1.20, 1.20)):
        clock.now += timedelta(days=day)
        cal.observe({"code": 1000}, round(1000 * ratio), model="claude-x", provider="anthropic")
    hist = cal.history("claude-x", provider="anthropic", content_class="code")
    assert [round(s.ratio, 2) for s in hist] == [1.1, 1.15, 1.2]  # drift, one snapshot per move
    assert hist[0].at < hist[-1].at and hist[-1].samples == 7

    payload = json.dumps([r.to_dict() for r in cal.state()])
    restored = Calibrator()
    restored.load_state(json.loads(payload))
    for cls in ("*", "code"):
        assert restored.ratio("claude-x", provider="anthropic", content_class=cls) == cal.ratio(
            "claude-x", provider="anthropic", content_class=cls
        )
    assert restored.history("claude-x", provider="anthropic", content_class="code") == hist
    # it keeps learning from where it was
    restored.observe({"code": 1000}, 1200, model="claude-x", provider="anthropic")
    assert restored.samples("claude-x", provider="anthropic", content_class="code") == 8


def test_on_snapshot_reports_records_to_persist():
    seen: list[CalibrationRecord] = []
    cal = Calibrator(min_samples=2, on_snapshot=seen.append)
    cal.observe(1000, 1300, model="g", provider="gemini", content_class="cjk")
    assert seen == []
    cal.observe(1000, 1300, model="g", provider="gemini", content_class="cjk")
    assert {(r.model, r.content_class) for r in seen} == {("g", "*"), ("g", "cjk")}
    assert all(r.ratio == pytest.approx(1.3) and r.provider == "gemini" for r in seen)
    cal.observe(1000, 1301, model="g", provider="gemini", content_class="cjk")  # < 1 %: no news
    assert len(seen) == 2


def test_load_state_replaces_only_the_given_keys():
    cal = Calibrator(min_samples=1)
    cal.observe(1000, 1500, model="a")
    cal.observe(1000, 1200, model="b")
    cal.load_state([CalibrationRecord("", "a", "*", 1.0, (0.0,))])
    assert cal.ratio("a") == 1.0 and cal.ratio("b") == pytest.approx(1.2)
    cal.reset("b")
    assert cal.ratio("b") == 1.0

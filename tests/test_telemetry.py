"""OTel GenAI metrics sink, checked with the SDK's in-memory metric reader."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tokenward.ledger import UsageEvent
from tokenward.telemetry import OTelMetricsSink
from tokenward.usage import Usage


def _event(**kw) -> UsageEvent:
    base = dict(
        id="r1",
        timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
        model="claude-sonnet-4",
        provider="anthropic",
        cost=Decimal("0.0123"),
        latency_ms=1500.0,
        user_id="u1",
        agent="support",
        usage=Usage(input=1200, output=300, cache_read=800, cache_write_5m=100, reasoning=50),
    )
    base.update(kw)
    return UsageEvent(**base)


def _points(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [
                    (metric.unit, dict(p.attributes), p) for p in metric.data.data_points
                ]
    return out


@pytest.fixture
def reader_and_sink():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    return reader, provider


def test_token_usage_histogram_follows_genai_conventions(reader_and_sink):
    reader, provider = reader_and_sink
    sink = OTelMetricsSink(provider)
    sink(_event())
    points = _points(reader)
    usage = points["gen_ai.client.token.usage"]
    by_type = {attrs["gen_ai.token.type"]: (unit, attrs, p) for unit, attrs, p in usage}
    assert set(by_type) == {"input", "output"}
    unit, attrs, p = by_type["input"]
    assert unit == "{token}" and p.sum == 1200 and p.count == 1
    assert by_type["output"][2].sum == 300
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-sonnet-4"
    assert attrs["gen_ai.operation.name"] == "chat"
    # cardinality: no user/agent ids unless asked for
    assert not any(k.startswith("tokenward.") for k in attrs)
    details = {
        a["tokenward.token.type"]: p.value for _, a, p in points["tokenward.client.token.details"]
    }
    assert details == {"cache_read": 800, "cache_creation": 100, "reasoning": 50}
    ((cost_unit, _, cost_point),) = points["tokenward.client.cost"]
    assert cost_unit == "USD" and cost_point.value == pytest.approx(0.0123)
    ((dur_unit, _, dur_point),) = points["gen_ai.client.operation.duration"]
    assert dur_unit == "s" and dur_point.sum == pytest.approx(1.5)


def test_dimensions_are_opt_in_and_errors_are_typed(reader_and_sink):
    reader, provider = reader_and_sink
    sink = OTelMetricsSink(provider, dimensions=("agent",))
    sink(_event(status="error", error="TimeoutError: upstream", provider="google", kind="chat"))
    attrs = _points(reader)["gen_ai.client.token.usage"][0][1]
    assert attrs["tokenward.agent"] == "support"
    assert "tokenward.user_id" not in attrs
    assert attrs["error.type"] == "TimeoutError"
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    with pytest.raises(ValueError, match="unknown dimensions"):
        OTelMetricsSink(provider, dimensions=("email",))


def test_embedding_events_record_input_only(reader_and_sink):
    reader, provider = reader_and_sink
    OTelMetricsSink(provider)(
        _event(kind="embedding", usage=Usage(input=64), model="text-embedding-3-small")
    )
    usage = _points(reader)["gen_ai.client.token.usage"]
    assert [(a["gen_ai.token.type"], a["gen_ai.operation.name"]) for _, a, _ in usage] == [
        ("input", "embeddings")
    ]


def test_budget_alerts_become_span_events():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tokenward.budgets import Alert
    from tokenward.telemetry import otel_alert_sink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    alert = Alert(
        budget="daily",
        scope_key="user_id=<script>",
        window="day",
        threshold=0.9,
        kind="threshold",
        unit="usd",
        spent=Decimal("4.5"),
        limit=Decimal("5"),
        utilization=0.9,
        mode="hard",
        at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    with provider.get_tracer("t").start_as_current_span("call"):
        otel_alert_sink(alert)
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "tokenward.budget.alert"
    assert event.attributes["tokenward.alert.budget"] == "daily"
    assert event.attributes["tokenward.alert.scope_key"] == "user_id=<script>"
    assert event.attributes["tokenward.alert.spent"] == "4.5"
    assert event.attributes["tokenward.alert.at"] == "2026-01-01T00:00:00+00:00"
    assert "tokenward.alert.reset_at" not in event.attributes

"""OpenTelemetry metrics (GenAI semantic conventions) and structured budget alerts.

``OTelMetricsSink`` is an Accountant sink: pass it in ``Accountant(sinks=[...])``
and every recorded call becomes

* ``gen_ai.client.token.usage`` (histogram, ``{token}``), once with
  ``gen_ai.token.type=input`` and once with ``output``, exactly as the GenAI
  conventions define it;
* ``gen_ai.client.operation.duration`` (histogram, seconds) when latency is known;
* ``tokenward.client.token.details`` (counter, ``{token}``) for what the
  conventions have no metric for: ``tokenward.token.type`` = ``cache_read`` |
  ``cache_creation`` | ``reasoning``;
* ``tokenward.client.cost`` (counter, ``USD``): the conventions define no cost
  metric, so it lives in our namespace. OpenTelemetry carries floats; the exact
  ``Decimal`` stays in the ledger.

``otel_alert_sink`` adds budget alerts as span events (structured log records come
from :class:`tokenward.budgets.LoggingAlertSink`).

User, conversation and agent ids are high-cardinality: they are attached only
when listed in ``dimensions`` (e.g. ``dimensions=("agent",)``).

It uses only ``opentelemetry-api`` (extra ``otel``); with no SDK configured the
calls are no-ops, as OpenTelemetry intends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tokenward._version import __version__
from tokenward.errors import IntegrationUnavailableError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from tokenward.budgets import Alert

__all__ = ["PROVIDER_NAMES", "OTelMetricsSink", "otel_alert_sink"]

# GenAI semantic-convention bucket advice (gen-ai-metrics.md).
_TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

#: catalog provider name -> ``gen_ai.provider.name`` well-known value
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "cohere": "cohere",
    "xai": "x_ai",
    "perplexity": "perplexity",
}

_OPERATIONS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
_DIMENSIONS = ("user_id", "conversation_id", "session_id", "agent")


def _metrics_api() -> Any:
    try:
        from opentelemetry import metrics
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise IntegrationUnavailableError("opentelemetry-api", "otel") from None
    return metrics


class OTelMetricsSink:
    """Accountant sink recording each ``UsageEvent`` as OpenTelemetry GenAI metrics."""

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        dimensions: Iterable[str] = (),
        tag_keys: Iterable[str] = (),
    ) -> None:
        metrics = _metrics_api()
        unknown = set(dimensions) - set(_DIMENSIONS)
        if unknown:
            raise ValueError(
                f"unknown dimensions {sorted(unknown)}; choose from {list(_DIMENSIONS)}"
            )
        self._dimensions = tuple(dimensions)
        self._tag_keys = tuple(tag_keys)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("tokenward", __version__)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._details = meter.create_counter(
            "tokenward.client.token.details",
            unit="{token}",
            description="Cache-read, cache-creation and reasoning tokens (subsets of input/output).",
        )
        self._cost = meter.create_counter(
            "tokenward.client.cost", unit="USD", description="Cost of GenAI calls in US dollars."
        )

    def _attributes(self, event: Any) -> dict[str, str]:
        provider = event.provider or "unknown"
        attrs = {
            "gen_ai.operation.name": _OPERATIONS.get(event.kind, event.kind),
            "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
            "gen_ai.request.model": event.model,
            "gen_ai.response.model": event.model,
        }
        if event.status != "ok":
            attrs["error.type"] = event.error.split(":", 1)[0] if event.error else event.status
        for dim in self._dimensions:
            value = getattr(event, dim, None)
            if value is not None:
                attrs[f"tokenward.{dim}"] = str(value)
        tags = event.tags or {}
        for key in self._tag_keys:
            if key in tags:
                attrs[f"tokenward.tag.{key}"] = str(tags[key])
        return attrs

    def __call__(self, event: Any) -> None:
        attrs = self._attributes(event)
        usage = event.usage
        self._tokens.record(usage.input, {**attrs, "gen_ai.token.type": "input"})
        if event.kind != "embedding":
            self._tokens.record(usage.output, {**attrs, "gen_ai.token.type": "output"})
        for kind, value in (
            ("cache_read", usage.cache_read),
            ("cache_creation", usage.cache_write),
            ("reasoning", usage.reasoning),
        ):
            if value:
                self._details.add(value, {**attrs, "tokenward.token.type": kind})
        if event.cost:
            self._cost.add(float(event.cost), attrs)
        if event.latency_ms is not None:
            self._duration.record(event.latency_ms / 1000.0, attrs)


def otel_alert_sink(alert: Alert) -> None:
    """Budget alert sink: add the alert as a ``tokenward.budget.alert`` event on the current span.

    Pair it with :class:`tokenward.budgets.LoggingAlertSink` (one structured log record per
    alert, which OpenTelemetry's logging handler exports):
    ``Budgets(..., alert_sinks=[LoggingAlertSink(), otel_alert_sink])``.
    """
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover
        raise IntegrationUnavailableError("opentelemetry-api", "otel") from None
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "tokenward.budget.alert",
            {f"tokenward.alert.{k}": v for k, v in alert.to_dict().items() if v is not None},
        )

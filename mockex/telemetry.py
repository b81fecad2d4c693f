"""OpenTelemetry set-up from the standard OTEL_* variables, and context in message metadata.

Tracing is off unless OTEL_TRACES_EXPORTER names an exporter (`otlp` or `console`); off, the API
is a no-op and costs next to nothing. Context travels between services in the `trace_context`
map of EngineCommand (W3C traceparent), so one trace follows an order through the queue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace

_configured = False


def setup_tracing(service_name: str) -> bool:
    """Install a tracer provider when OTEL_TRACES_EXPORTER asks for one; True when tracing is on."""
    global _configured
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none") or _configured:
        return _configured
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter_name!r}: use otlp, console or none")
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    RedisInstrumentor().instrument()
    _configured = True
    return True


def tracing_enabled() -> bool:
    """True once setup_tracing installed a provider in this process."""
    return _configured


def inject_context(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context into a message's metadata map."""
    propagate.inject(carrier)


def extract_context(carrier: Mapping[str, str]) -> context.Context:
    return propagate.extract(carrier)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)

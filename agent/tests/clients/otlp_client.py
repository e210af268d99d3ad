"""A game instrumented with the OpenTelemetry Python SDK (from PyPI), exporting OTLP.

Usage: otlp_client.py grpc|http PORT SHARD. Sends, gzip-compressed, with an
exponential-histogram view on game.tick.duration:
- game.kills: +3 and +4 with shard.id=SHARD (a counter: game_kills_total 7);
- game.players: 42 with shard.id=SHARD (an observable gauge);
- game.tick.duration (s): 0.001 .. 1.000 s, 1000 observations, with shard.id=SHARD;
- game.errors: +1 with a player.id attribute (forbidden by the policy);
- three log records carrying an email and IP addresses, in the body and attributes;
- one span `match.join` with an email attribute and an event carrying an IP address;
then shuts the providers down, which exports everything and waits for the answers.
"""

import logging
import sys

from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

transport, port, shard = sys.argv[1], int(sys.argv[2]), sys.argv[3]

if transport == "grpc":
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    endpoint = f"127.0.0.1:{port}"
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, compression=grpc.Compression.Gzip)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, compression=grpc.Compression.Gzip)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=grpc.Compression.Gzip)
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    base = f"http://127.0.0.1:{port}"
    metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", compression=Compression.Gzip)
    log_exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs", compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", compression=Compression.Gzip)

resource = Resource.create({"service.name": "game-server", "service.instance.id": "inst-1"})
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
views = [View(instrument_name="game.tick.duration", aggregation=ExponentialBucketHistogramAggregation())]
meters = MeterProvider(resource=resource, metric_readers=[reader], views=views)
meter = meters.get_meter("game")

attrs = {"shard.id": shard}
kills = meter.create_counter("game.kills")
kills.add(3, attrs)
kills.add(4, attrs)
meter.create_observable_gauge("game.players", callbacks=[lambda _: [Observation(42, attrs)]])
tick = meter.create_histogram("game.tick.duration", unit="s")
for ms in range(1, 1001):
    tick.record(ms / 1000.0, attrs)
meter.create_counter("game.errors").add(1, {"player.id": "p-4242"})

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=logs)
log = logging.getLogger("game")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.warning(
    "player alice.smith+game@example.com joined from 203.0.113.77",
    extra={"player.ip": "10.1.2.3", "shard.id": shard, "transport": transport},
)
log.info("match started", extra={"shard.id": shard, "transport": transport})
log.error("kicked bob_99@mail.example.co.uk", extra={"transport": transport})

tracers = TracerProvider(resource=resource)
tracers.add_span_processor(BatchSpanProcessor(span_exporter))
tracer = tracers.get_tracer("game")
with tracer.start_as_current_span(
    "match.join", attributes={"player.email": "alice.smith+game@example.com", "transport": transport}
) as span:
    span.add_event("peer", {"peer.ip": "203.0.113.77"})

meters.shutdown()
logs.shutdown()
tracers.shutdown()
print("sent")

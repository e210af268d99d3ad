"""A game instrumented with the OpenTelemetry Python SDK (from PyPI), exporting spans
over OTLP/HTTP protobuf with gzip, presenting a client certificate (mTLS).

Usage: otel_traces.py ENDPOINT CA CERT KEY ROUNDS [PEER]
For each round: a `match` span (server) with a child `tick` span carrying attributes
and an event, and a `save` span that ends in error. With PEER, the `match` span carries
it as `client.address` (a value the agent tokenizes). Flushes, shuts down, and prints
`exported N` (spans) or exits 1 if the exporter reported a failure.
"""

import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Status, StatusCode

endpoint, ca, cert, key, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
peer = sys.argv[6] if len(sys.argv) > 6 else None


class Counting(OTLPSpanExporter):
    """The stock exporter, counting what it exported and remembering a failure."""

    exported = 0
    failed = False

    def export(self, spans):
        result = super().export(spans)
        if result == SpanExportResult.SUCCESS:
            Counting.exported += len(spans)
        else:
            Counting.failed = True
        return result


exporter = Counting(
    endpoint=endpoint,
    certificate_file=ca,
    client_certificate_file=cert,
    client_key_file=key,
    compression=Compression.Gzip,
    timeout=30,
)
provider = TracerProvider(resource=Resource.create({"service.name": "game", "deployment.environment": "e2e"}))
# One export per span: every export is a request the gateway must commit before 200.
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("edgepipe.e2e", "1.0")

for r in range(rounds):
    with tracer.start_as_current_span("match", kind=trace.SpanKind.SERVER) as match:
        match.set_attribute("map", "dust")
        match.set_attribute("round", r)
        if peer:
            match.set_attribute("client.address", peer)
        with tracer.start_as_current_span("tick") as tick:
            tick.set_attribute("tick.ms", 16.5)
            tick.set_attribute("shards", [1, 2, 3])
            tick.add_event("overrun", {"by.ms": 3})
        with tracer.start_as_current_span("save") as save:
            save.set_status(Status(StatusCode.ERROR, "disk full"))

provider.force_flush()
provider.shutdown()
if Counting.failed:
    print(f"export failed after {Counting.exported} spans", file=sys.stderr)
    sys.exit(1)
print(f"exported {Counting.exported}")

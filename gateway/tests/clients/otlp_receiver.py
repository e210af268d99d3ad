"""An OTLP/HTTP traces endpoint standing in for AWS X-Ray's, for the gateway's `otlp`
traces sink: each request is decoded with the OpenTelemetry project's own protobuf
types (`opentelemetry-proto`) and its SigV4 signature checked with botocore's signer
(the AWS SDK for Python's), recomputed from the request as received.

Usage: otlp_receiver.py PORT OUT SECRET FAIL_FIRST
Listens on 127.0.0.1:PORT. The first FAIL_FIRST requests are answered 503 with
`Retry-After: 1` (after being checked and recorded). A request whose signature does not
verify is answered 403. Every request appends one JSON line to OUT:
{"status", "signed", "signature_ok", "service", "region", "spans", "names", "sha256"}.
"""

import hashlib
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

port, out, secret, fail_first = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = {"n": 0}

AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<sig>[0-9a-f]+)"
)


def verify(handler, body):
    """(signed, ok, service, region): the signature recomputed by botocore."""
    auth = handler.headers.get("Authorization")
    if not auth:
        return False, False, None, None
    m = AUTH.match(auth)
    if not m:
        return True, False, None, None
    signed = m.group("signed").split(";")
    headers = {name: handler.headers.get(name, "") for name in signed}
    url = f"http://{handler.headers.get('Host')}{handler.path}"
    request = AWSRequest(method=handler.command, url=url, data=body, headers=headers)
    request.context["timestamp"] = handler.headers.get("X-Amz-Date")
    token = handler.headers.get("X-Amz-Security-Token")
    signer = SigV4Auth(Credentials(m.group("akid"), secret, token), m.group("service"), m.group("region"))
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return True, expected == m.group("sig"), m.group("service"), m.group("region")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        signed, ok, service, region = verify(self, body)
        names = []
        try:
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    names.extend(s.name for s in ss.spans)
            decoded = True
        except Exception:  # noqa: BLE001 - recorded as a failed decode
            decoded = False
        seen["n"] += 1
        if not decoded:
            status = 400
        elif signed and not ok:
            status = 403
        elif seen["n"] <= fail_first:
            status = 503
        else:
            status = 200
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "status": status, "signed": signed, "signature_ok": ok, "service": service,
                "region": region, "spans": len(names), "names": names,
                "sha256": hashlib.sha256(body).hexdigest(),
                "content_type": self.headers.get("Content-Type"),
            }) + "\n")
        answer = ExportTraceServiceResponse().SerializeToString() if status == 200 else b"no"
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()

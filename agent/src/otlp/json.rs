//! The OTLP/JSON encoding (the protobuf JSON mapping with OTLP's exceptions), for
//! `application/json` bodies:
//!
//! - field names in lowerCamelCase (`timeUnixNano`); the original snake_case names are
//!   accepted too, as the specification lets receivers do;
//! - `traceId`, `spanId`, `parentSpanId` as hex strings (not base64); other `bytes`
//!   (`bytesValue`) in base64;
//! - enums as their names (`AGGREGATION_TEMPORALITY_DELTA`) or their numbers;
//! - 64-bit integers as decimal strings or numbers; doubles as numbers or `"NaN"`,
//!   `"Infinity"`, `"-Infinity"`;
//! - unknown fields ignored.
//!
//! A value of the wrong type is refused naming where it is
//! (`resourceMetrics[0].scopeMetrics[0].metrics[1].sum.dataPoints[0].timeUnixNano`).

use edge_schema::proto::opentelemetry::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use edge_schema::proto::opentelemetry::proto::logs::v1 as l;
use edge_schema::proto::opentelemetry::proto::metrics::v1 as m;
use edge_schema::proto::opentelemetry::proto::resource::v1::Resource;
use edge_schema::proto::opentelemetry::proto::trace::v1 as t;
use serde_json::{Map, Value, json};

type R<T> = Result<T, String>;

/// One JSON object and where it is.
#[derive(Clone, Copy)]
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn what(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

impl<'a> Obj<'a> {
    fn of(v: &'a Value, path: &'a str) -> R<Obj<'a>> {
        match v {
            Value::Object(map) => Ok(Obj { map, path }),
            other => Err(format!("{path}: {} is not an object", what(other))),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map
            .get(key)
            .or_else(|| self.map.get(&snake(key)))
            .filter(|v| !v.is_null())
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn string(&self, key: &str) -> R<String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "{}: {} is not a string",
                self.path(key),
                what(other)
            )),
        }
    }

    fn bool(&self, key: &str) -> R<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!(
                "{}: {} is not a boolean",
                self.path(key),
                what(other)
            )),
        }
    }

    fn int(&self, key: &str) -> R<i128> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => {
                int(v).ok_or_else(|| format!("{}: {} is not an integer", self.path(key), what(v)))
            }
        }
    }

    fn u64(&self, key: &str) -> R<u64> {
        let n = self.int(key)?;
        u64::try_from(n).map_err(|_| format!("{}: {n} is out of range", self.path(key)))
    }

    fn i64(&self, key: &str) -> R<i64> {
        let n = self.int(key)?;
        i64::try_from(n).map_err(|_| format!("{}: {n} is out of range", self.path(key)))
    }

    fn i32(&self, key: &str) -> R<i32> {
        let n = self.int(key)?;
        i32::try_from(n).map_err(|_| format!("{}: {n} is out of range", self.path(key)))
    }

    fn u32(&self, key: &str) -> R<u32> {
        let n = self.int(key)?;
        u32::try_from(n).map_err(|_| format!("{}: {n} is out of range", self.path(key)))
    }

    fn f64(&self, key: &str) -> R<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(0.0))
    }

    fn opt_f64(&self, key: &str) -> R<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => double(v)
                .map(Some)
                .ok_or_else(|| format!("{}: {} is not a number", self.path(key), what(v))),
        }
    }

    /// An enum by name (`names[i]` is value `i`) or number.
    fn enumeration(&self, key: &str, names: &[&str]) -> R<i32> {
        match self.get(key) {
            None => Ok(0),
            Some(Value::String(s))
                if !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-') =>
            {
                names
                    .iter()
                    .position(|n| n == s)
                    .map(|i| i as i32)
                    .ok_or_else(|| {
                        format!(
                            "{}: {s:?} is not one of {}",
                            self.path(key),
                            names.join(", ")
                        )
                    })
            }
            Some(_) => self.i32(key),
        }
    }

    fn hex(&self, key: &str) -> R<Vec<u8>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => {
                unhex(s).ok_or_else(|| format!("{}: {s:?} is not hex", self.path(key)))
            }
            Some(other) => Err(format!(
                "{}: {} is not a hex string",
                self.path(key),
                what(other)
            )),
        }
    }

    fn array(&self, key: &str) -> R<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(format!(
                "{}: {} is not an array",
                self.path(key),
                what(other)
            )),
        }
    }

    /// Each element of array `key` through `f`, with its path.
    fn each<T>(&self, key: &str, f: impl Fn(&Value, &str) -> R<T>) -> R<Vec<T>> {
        let items = self.array(key)?;
        let base = self.path(key);
        items
            .iter()
            .enumerate()
            .map(|(i, v)| f(v, &format!("{base}[{i}]")))
            .collect()
    }

    fn object(&self, key: &str) -> R<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                path: self.path,
            })),
            Some(other) => Err(format!(
                "{}: {} is not an object",
                self.path(key),
                what(other)
            )),
        }
    }
}

fn int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 1e38).then_some(f as i128)
            }),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    }
}

fn double(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn parse(body: &[u8]) -> R<Value> {
    serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))
}

fn any_value(v: &Value, path: &str) -> R<AnyValue> {
    let o = Obj::of(v, path)?;
    use any_value::Value as V;
    let value = if let Some(s) = o.get("stringValue") {
        Some(V::StringValue(match s {
            Value::String(s) => s.clone(),
            other => {
                return Err(format!(
                    "{path}.stringValue: {} is not a string",
                    what(other)
                ));
            }
        }))
    } else if o.get("boolValue").is_some() {
        Some(V::BoolValue(o.bool("boolValue")?))
    } else if o.get("intValue").is_some() {
        Some(V::IntValue(o.i64("intValue")?))
    } else if o.get("doubleValue").is_some() {
        Some(V::DoubleValue(o.f64("doubleValue")?))
    } else if let Some(a) = o.object("arrayValue")? {
        let p = format!("{path}.arrayValue");
        let a = Obj {
            map: a.map,
            path: &p,
        };
        Some(V::ArrayValue(ArrayValue {
            values: a.each("values", any_value)?,
        }))
    } else if let Some(kv) = o.object("kvlistValue")? {
        let p = format!("{path}.kvlistValue");
        let kv = Obj {
            map: kv.map,
            path: &p,
        };
        Some(V::KvlistValue(KeyValueList {
            values: kv.each("values", key_value)?,
        }))
    } else if let Some(b) = o.get("bytesValue") {
        let s = b.as_str().unwrap_or("\u{0}");
        Some(V::BytesValue(unbase64(s).ok_or_else(|| {
            format!("{path}.bytesValue: {} is not base64", what(b))
        })?))
    } else {
        None
    };
    Ok(AnyValue { value })
}

fn key_value(v: &Value, path: &str) -> R<KeyValue> {
    let o = Obj::of(v, path)?;
    let value = match o.get("value") {
        Some(v) => Some(any_value(v, &o.path("value"))?),
        None => None,
    };
    Ok(KeyValue {
        key: o.string("key")?,
        value,
    })
}

fn resource(o: &Obj<'_>) -> R<Option<Resource>> {
    let p = o.path("resource");
    match o.object("resource")? {
        None => Ok(None),
        Some(r) => {
            let r = Obj {
                map: r.map,
                path: &p,
            };
            Ok(Some(Resource {
                attributes: r.each("attributes", key_value)?,
                dropped_attributes_count: r.u32("droppedAttributesCount")?,
            }))
        }
    }
}

fn scope(o: &Obj<'_>) -> R<Option<InstrumentationScope>> {
    let p = o.path("scope");
    match o.object("scope")? {
        None => Ok(None),
        Some(s) => {
            let s = Obj {
                map: s.map,
                path: &p,
            };
            Ok(Some(InstrumentationScope {
                name: s.string("name")?,
                version: s.string("version")?,
                attributes: s.each("attributes", key_value)?,
                dropped_attributes_count: s.u32("droppedAttributesCount")?,
            }))
        }
    }
}

const TEMPORALITY: &[&str] = &[
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

fn exemplar(v: &Value, path: &str) -> R<m::Exemplar> {
    let o = Obj::of(v, path)?;
    let value = if o.get("asInt").is_some() {
        Some(m::exemplar::Value::AsInt(o.i64("asInt")?))
    } else if o.get("asDouble").is_some() {
        Some(m::exemplar::Value::AsDouble(o.f64("asDouble")?))
    } else {
        None
    };
    Ok(m::Exemplar {
        filtered_attributes: o.each("filteredAttributes", key_value)?,
        time_unix_nano: o.u64("timeUnixNano")?,
        value,
        span_id: o.hex("spanId")?,
        trace_id: o.hex("traceId")?,
    })
}

fn number_point(v: &Value, path: &str) -> R<m::NumberDataPoint> {
    let o = Obj::of(v, path)?;
    let value = if o.get("asInt").is_some() {
        Some(m::number_data_point::Value::AsInt(o.i64("asInt")?))
    } else if o.get("asDouble").is_some() {
        Some(m::number_data_point::Value::AsDouble(o.f64("asDouble")?))
    } else {
        None
    };
    Ok(m::NumberDataPoint {
        attributes: o.each("attributes", key_value)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        value,
        exemplars: o.each("exemplars", exemplar)?,
        flags: o.u32("flags")?,
    })
}

fn u64s(o: &Obj<'_>, key: &str) -> R<Vec<u64>> {
    o.each(key, |v, p| {
        int(v)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("{p}: {} is not a count", what(v)))
    })
}

fn histogram_point(v: &Value, path: &str) -> R<m::HistogramDataPoint> {
    let o = Obj::of(v, path)?;
    Ok(m::HistogramDataPoint {
        attributes: o.each("attributes", key_value)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        bucket_counts: u64s(&o, "bucketCounts")?,
        explicit_bounds: o.each("explicitBounds", |v, p| {
            double(v).ok_or_else(|| format!("{p}: {} is not a number", what(v)))
        })?,
        exemplars: o.each("exemplars", exemplar)?,
        flags: o.u32("flags")?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
    })
}

fn buckets(o: &Obj<'_>, key: &str) -> R<Option<m::exponential_histogram_data_point::Buckets>> {
    let p = o.path(key);
    match o.object(key)? {
        None => Ok(None),
        Some(b) => {
            let b = Obj {
                map: b.map,
                path: &p,
            };
            Ok(Some(m::exponential_histogram_data_point::Buckets {
                offset: b.i32("offset")?,
                bucket_counts: u64s(&b, "bucketCounts")?,
            }))
        }
    }
}

fn exponential_point(v: &Value, path: &str) -> R<m::ExponentialHistogramDataPoint> {
    let o = Obj::of(v, path)?;
    Ok(m::ExponentialHistogramDataPoint {
        attributes: o.each("attributes", key_value)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        scale: o.i32("scale")?,
        zero_count: o.u64("zeroCount")?,
        positive: buckets(&o, "positive")?,
        negative: buckets(&o, "negative")?,
        flags: o.u32("flags")?,
        exemplars: o.each("exemplars", exemplar)?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
        zero_threshold: o.f64("zeroThreshold")?,
    })
}

fn summary_point(v: &Value, path: &str) -> R<m::SummaryDataPoint> {
    let o = Obj::of(v, path)?;
    Ok(m::SummaryDataPoint {
        attributes: o.each("attributes", key_value)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.f64("sum")?,
        quantile_values: o.each("quantileValues", |v, p| {
            let q = Obj::of(v, p)?;
            Ok(m::summary_data_point::ValueAtQuantile {
                quantile: q.f64("quantile")?,
                value: q.f64("value")?,
            })
        })?,
        flags: o.u32("flags")?,
    })
}

fn metric(v: &Value, path: &str) -> R<m::Metric> {
    use m::metric::Data;
    let o = Obj::of(v, path)?;
    let sub = |key: &str| -> R<Option<(String, &Map<String, Value>)>> {
        Ok(o.object(key)?.map(|x| (o.path(key), x.map)))
    };
    let data = if let Some((p, g)) = sub("gauge")? {
        let g = Obj { map: g, path: &p };
        Some(Data::Gauge(m::Gauge {
            data_points: g.each("dataPoints", number_point)?,
        }))
    } else if let Some((p, s)) = sub("sum")? {
        let s = Obj { map: s, path: &p };
        Some(Data::Sum(m::Sum {
            data_points: s.each("dataPoints", number_point)?,
            aggregation_temporality: s.enumeration("aggregationTemporality", TEMPORALITY)?,
            is_monotonic: s.bool("isMonotonic")?,
        }))
    } else if let Some((p, h)) = sub("histogram")? {
        let h = Obj { map: h, path: &p };
        Some(Data::Histogram(m::Histogram {
            data_points: h.each("dataPoints", histogram_point)?,
            aggregation_temporality: h.enumeration("aggregationTemporality", TEMPORALITY)?,
        }))
    } else if let Some((p, h)) = sub("exponentialHistogram")? {
        let h = Obj { map: h, path: &p };
        Some(Data::ExponentialHistogram(m::ExponentialHistogram {
            data_points: h.each("dataPoints", exponential_point)?,
            aggregation_temporality: h.enumeration("aggregationTemporality", TEMPORALITY)?,
        }))
    } else if let Some((p, s)) = sub("summary")? {
        let s = Obj { map: s, path: &p };
        Some(Data::Summary(m::Summary {
            data_points: s.each("dataPoints", summary_point)?,
        }))
    } else {
        None
    };
    Ok(m::Metric {
        name: o.string("name")?,
        description: o.string("description")?,
        unit: o.string("unit")?,
        data,
        metadata: o.each("metadata", key_value)?,
    })
}

/// An `ExportMetricsServiceRequest` from OTLP/JSON.
pub fn metrics_request(body: &[u8]) -> R<ExportMetricsServiceRequest> {
    let v = parse(body)?;
    let o = Obj::of(&v, "")?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: o.each("resourceMetrics", |v, p| {
            let o = Obj::of(v, p)?;
            Ok(m::ResourceMetrics {
                resource: resource(&o)?,
                scope_metrics: o.each("scopeMetrics", |v, p| {
                    let o = Obj::of(v, p)?;
                    Ok(m::ScopeMetrics {
                        scope: scope(&o)?,
                        metrics: o.each("metrics", metric)?,
                        schema_url: o.string("schemaUrl")?,
                    })
                })?,
                schema_url: o.string("schemaUrl")?,
            })
        })?,
    })
}

const SEVERITY: &[&str] = &[
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
];

fn log_record(v: &Value, path: &str) -> R<l::LogRecord> {
    let o = Obj::of(v, path)?;
    let body = match o.get("body") {
        Some(b) => Some(any_value(b, &o.path("body"))?),
        None => None,
    };
    Ok(l::LogRecord {
        time_unix_nano: o.u64("timeUnixNano")?,
        observed_time_unix_nano: o.u64("observedTimeUnixNano")?,
        severity_number: o.enumeration("severityNumber", SEVERITY)?,
        severity_text: o.string("severityText")?,
        body,
        attributes: o.each("attributes", key_value)?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        flags: o.u32("flags")?,
        trace_id: o.hex("traceId")?,
        span_id: o.hex("spanId")?,
        event_name: o.string("eventName")?,
    })
}

/// An `ExportLogsServiceRequest` from OTLP/JSON.
pub fn logs_request(body: &[u8]) -> R<ExportLogsServiceRequest> {
    let v = parse(body)?;
    let o = Obj::of(&v, "")?;
    Ok(ExportLogsServiceRequest {
        resource_logs: o.each("resourceLogs", |v, p| {
            let o = Obj::of(v, p)?;
            Ok(l::ResourceLogs {
                resource: resource(&o)?,
                scope_logs: o.each("scopeLogs", |v, p| {
                    let o = Obj::of(v, p)?;
                    Ok(l::ScopeLogs {
                        scope: scope(&o)?,
                        log_records: o.each("logRecords", log_record)?,
                        schema_url: o.string("schemaUrl")?,
                    })
                })?,
                schema_url: o.string("schemaUrl")?,
            })
        })?,
    })
}

const SPAN_KIND: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

const STATUS_CODE: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn span(v: &Value, path: &str) -> R<t::Span> {
    let o = Obj::of(v, path)?;
    let status = match o.object("status")? {
        None => None,
        Some(s) => {
            let p = o.path("status");
            let s = Obj {
                map: s.map,
                path: &p,
            };
            Some(t::Status {
                message: s.string("message")?,
                code: s.enumeration("code", STATUS_CODE)?,
            })
        }
    };
    Ok(t::Span {
        trace_id: o.hex("traceId")?,
        span_id: o.hex("spanId")?,
        trace_state: o.string("traceState")?,
        parent_span_id: o.hex("parentSpanId")?,
        flags: o.u32("flags")?,
        name: o.string("name")?,
        kind: o.enumeration("kind", SPAN_KIND)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        end_time_unix_nano: o.u64("endTimeUnixNano")?,
        attributes: o.each("attributes", key_value)?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        events: o.each("events", |v, p| {
            let o = Obj::of(v, p)?;
            Ok(t::span::Event {
                time_unix_nano: o.u64("timeUnixNano")?,
                name: o.string("name")?,
                attributes: o.each("attributes", key_value)?,
                dropped_attributes_count: o.u32("droppedAttributesCount")?,
            })
        })?,
        dropped_events_count: o.u32("droppedEventsCount")?,
        links: o.each("links", |v, p| {
            let o = Obj::of(v, p)?;
            Ok(t::span::Link {
                trace_id: o.hex("traceId")?,
                span_id: o.hex("spanId")?,
                trace_state: o.string("traceState")?,
                attributes: o.each("attributes", key_value)?,
                dropped_attributes_count: o.u32("droppedAttributesCount")?,
                flags: o.u32("flags")?,
            })
        })?,
        dropped_links_count: o.u32("droppedLinksCount")?,
        status,
    })
}

/// An `ExportTraceServiceRequest` from OTLP/JSON.
pub fn traces_request(body: &[u8]) -> R<ExportTraceServiceRequest> {
    let v = parse(body)?;
    let o = Obj::of(&v, "")?;
    Ok(ExportTraceServiceRequest {
        resource_spans: o.each("resourceSpans", |v, p| {
            let o = Obj::of(v, p)?;
            Ok(t::ResourceSpans {
                resource: resource(&o)?,
                scope_spans: o.each("scopeSpans", |v, p| {
                    let o = Obj::of(v, p)?;
                    Ok(t::ScopeSpans {
                        scope: scope(&o)?,
                        spans: o.each("spans", span)?,
                        schema_url: o.string("schemaUrl")?,
                    })
                })?,
                schema_url: o.string("schemaUrl")?,
            })
        })?,
    })
}

fn partial(rejected_key: &str, rejected: i64, message: &str) -> Value {
    json!({ "partialSuccess": { rejected_key: rejected.to_string(), "errorMessage": message } })
}

/// The response in OTLP/JSON (`{}` without `partialSuccess`).
pub fn metrics_response(r: &ExportMetricsServiceResponse) -> Value {
    r.partial_success.as_ref().map_or_else(
        || json!({}),
        |p| {
            partial(
                "rejectedDataPoints",
                p.rejected_data_points,
                &p.error_message,
            )
        },
    )
}

/// The response in OTLP/JSON.
pub fn logs_response(r: &ExportLogsServiceResponse) -> Value {
    r.partial_success.as_ref().map_or_else(
        || json!({}),
        |p| {
            partial(
                "rejectedLogRecords",
                p.rejected_log_records,
                &p.error_message,
            )
        },
    )
}

/// The response in OTLP/JSON.
pub fn traces_response(r: &ExportTraceServiceResponse) -> Value {
    r.partial_success.as_ref().map_or_else(
        || json!({}),
        |p| partial("rejectedSpans", p.rejected_spans, &p.error_message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_decodes_with_strings_names_and_hex() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"game"}}]},
          "scopeMetrics":[{"scope":{"name":"s"},"metrics":[
            {"name":"game.kills","unit":"1","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","isMonotonic":true,
              "dataPoints":[{"asInt":"5","startTimeUnixNano":"1000","timeUnixNano":"2000","attributes":[{"key":"shard.id","value":{"intValue":"3"}}],
                "exemplars":[{"asDouble":1.5,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}},
            {"name":"t","exponentialHistogram":{"aggregation_temporality":2,"dataPoints":[{"count":"3","sum":1.5,"scale":3,"zeroCount":"1",
              "positive":{"offset":-2,"bucketCounts":["1","1"]}}]}}]}]}]}"#;
        let r = metrics_request(body).expect("decodes");
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let Some(m::metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("a sum")
        };
        assert_eq!(sum.aggregation_temporality, 1);
        assert!(sum.is_monotonic);
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(m::number_data_point::Value::AsInt(5)));
        assert_eq!(p.time_unix_nano, 2000);
        assert_eq!(
            p.exemplars[0].span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        let Some(m::metric::Data::ExponentialHistogram(h)) = &metrics[1].data else {
            panic!("an exponential histogram")
        };
        assert_eq!(h.aggregation_temporality, 2, "snake_case and numbers too");
        let p = &h.data_points[0];
        assert_eq!((p.count, p.scale, p.zero_count), (3, 3, 1));
        assert_eq!(p.positive.as_ref().map(|b| b.offset), Some(-2));
    }

    #[test]
    fn a_wrong_type_is_refused_naming_where() {
        let e = metrics_request(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":[{"timeUnixNano":"soon"}]}}]}]}]}"#,
        )
        .expect_err("refused");
        assert_eq!(
            e,
            r#"resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].timeUnixNano: "soon" is not an integer"#
        );
        let e = logs_request(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_LOUD"}]}]}]}"#,
        )
        .expect_err("refused");
        assert!(e.starts_with("resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber: \"SEVERITY_NUMBER_LOUD\" is not one of"), "{e}");
        assert!(metrics_request(b"{not json").is_err());
    }

    #[test]
    fn logs_and_spans_decode_and_responses_spell_int64_as_strings() {
        let r = logs_request(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","severityNumber":"SEVERITY_NUMBER_WARN","body":{"stringValue":"hi"},
              "attributes":[{"key":"b","value":{"bytesValue":"AQID"}},{"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"doubleValue":"NaN"}}]}}}],
              "traceId":"00000000000000000000000000000001"}]}]}]}"#,
        )
        .expect("decodes");
        let rec = &r.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.severity_number, 13);
        assert_eq!(
            rec.attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::BytesValue(vec![1, 2, 3]))
            })
        );
        assert_eq!(rec.trace_id.len(), 16);
        let t = traces_request(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#,
        )
        .expect("decodes");
        let s = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((s.kind, s.status.as_ref().map(|s| s.code)), (2, Some(2)));
        let answer = metrics_response(&ExportMetricsServiceResponse {
            partial_success: Some(
                edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points: 2,
                    error_message: "m".into(),
                },
            ),
        });
        assert_eq!(
            answer.to_string(),
            r#"{"partialSuccess":{"errorMessage":"m","rejectedDataPoints":"2"}}"#
        );
    }
}

//! A remote_write `WriteRequest` read in place: each series' labels as slices of the
//! decompressed body, its sample count and newest timestamp, and the byte range of
//! its field. Nothing is copied or allocated per label: decoding into owned messages
//! cost most of the gateway's CPU in the allocator. What is accepted is forwarded as
//! the original bytes (all of it, or the accepted series' fields concatenated, which
//! is again a valid `WriteRequest`: repeated fields concatenate).

use std::ops::Range;

use super::BodyError;
use super::budget::Reservation;

/// One series, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesView {
    /// The whole `timeseries` field (tag, length, message) in the body.
    pub field: Range<usize>,
    /// Its labels in the request's label store (empty when the scan left them as bytes,
    /// [`scan_series_within`]).
    pub labels: Range<usize>,
    /// How many labels it has.
    pub label_count: usize,
    /// Its label fields as bytes in the body: from the first one's tag to the last one's
    /// end, when nothing lies between them (as every encoder writes them), else `None`
    /// ([`label_fields`] walks them).
    pub label_bytes: Option<Range<usize>>,
    /// Float samples plus histograms.
    pub samples: u64,
    /// The newest sample or histogram timestamp (ms), if any.
    pub newest_ms: Option<i64>,
    /// The oldest one.
    pub oldest_ms: Option<i64>,
    /// Its native histograms, in the request's histogram store.
    pub histograms: Range<usize>,
}

/// A scanned request.
#[derive(Debug, Default)]
pub struct Scanned<'a> {
    /// Every series, in order.
    pub series: Vec<SeriesView>,
    /// `(name, value)` of every label of every series.
    pub labels: Vec<(&'a str, &'a str)>,
    /// The byte ranges of the other top-level fields (metadata), kept when forwarding.
    pub other_fields: Vec<Range<usize>>,
    /// The byte range of every native histogram message of every series (checked for
    /// consistency, which takes decoding them; a float series has none).
    pub histograms: Vec<Range<usize>>,
}

impl<'a> Scanned<'a> {
    /// The labels of `s`.
    pub fn labels_of(&self, s: &SeriesView) -> &[(&'a str, &'a str)] {
        &self.labels[s.labels.clone()]
    }

    /// The byte ranges of `s`'s native histograms in the body.
    pub fn histograms_of(&self, s: &SeriesView) -> &[Range<usize>] {
        &self.histograms[s.histograms.clone()]
    }
}

/// Why a body is not a `WriteRequest`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a remote_write WriteRequest: {0}")]
pub struct ScanError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, ScanError> {
    Err(ScanError(what.into()))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            buf,
            at: range.start,
            end: range.end,
        }
    }

    fn done(&self) -> bool {
        self.at >= self.end
    }

    fn varint(&mut self) -> Result<u64, ScanError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.at).filter(|_| self.at < self.end) else {
                return err("truncated varint");
            };
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        err("varint over 10 bytes")
    }

    /// `(field, wire type)`.
    fn key(&mut self) -> Result<(u64, u8), ScanError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>, ScanError> {
        let start = self.at;
        let end = start.checked_add(n).filter(|e| *e <= self.end);
        let Some(end) = end else {
            return err("a field runs past the end");
        };
        self.at = end;
        Ok(start..end)
    }

    fn len_delimited(&mut self) -> Result<Range<usize>, ScanError> {
        let n = usize::try_from(self.varint()?).map_err(|_| ScanError("length".into()))?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), ScanError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.len_delimited().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            w => err(format!("wire type {w}")),
        }
    }
}

fn text(buf: &[u8], range: Range<usize>) -> Result<&str, ScanError> {
    std::str::from_utf8(&buf[range]).map_err(|_| ScanError("a label is not UTF-8".into()))
}

/// The `timestamp` (field `field`, int64) of a sample or histogram message.
fn timestamp_in(buf: &[u8], range: Range<usize>, field: u64) -> Result<Option<i64>, ScanError> {
    let mut r = Reader::new(buf, range);
    let mut ts = None;
    while !r.done() {
        let (f, wire) = r.key()?;
        if f == field && wire == 0 {
            ts = Some(r.varint()? as i64);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(ts)
}

fn wrong_wire<T>(what: &str, wire: u8) -> Result<T, ScanError> {
    err(format!(
        "{what} has wire type {wire}, not 2 (length-delimited); nothing in this body was committed"
    ))
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Scans a decompressed `WriteRequest`, labels and all.
pub fn scan(buf: &[u8]) -> Result<Scanned<'_>, ScanError> {
    scan_inner(buf, None, Labels::Parse)
}

/// Whether a scan reads each label's name and value (checking they are UTF-8) or only
/// finds the label fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Labels {
    Parse,
    Skip,
}

/// [`scan`], with its lists grown only as far as `reserved` lets them, and the labels
/// left as bytes.
///
/// The budget: a body of empty series is two bytes a series on the wire and over a
/// hundred in the list, so 16 MiB of them (a 400 KB snappy body) would take gigabytes.
/// No room now: a 503; more than the whole budget: a 413.
///
/// The labels: each series' label fields are found ([`SeriesView::label_bytes`],
/// [`SeriesView::label_count`]) but not read. The gateway reads them ([`labels_in`])
/// only for a series it has not seen fine before: most of a push repeats the series of
/// the last one, and reading every label of every series was a fifth of its CPU.
pub fn scan_series_within<'a>(
    buf: &'a [u8],
    reserved: &mut Reservation,
) -> Result<Scanned<'a>, BodyError> {
    let mut over = Over::No;
    scan_inner(buf, Some((reserved, &mut over)), Labels::Skip).map_err(|e| match over {
        Over::No => BodyError::Malformed(e.to_string()),
        Over::Now => BodyError::OverBudget(e.0),
        Over::Ever => BodyError::TooLarge(e.0),
    })
}

/// Reads one label field's message: `(name, value)`.
fn label_in(buf: &[u8], label: Range<usize>) -> Result<(&str, &str), ScanError> {
    let mut l = Reader::new(buf, label);
    let (mut name, mut value) = ("", "");
    while !l.done() {
        let (lf, lw) = l.key()?;
        match (lf, lw) {
            (1, 2) => name = text(buf, l.len_delimited()?)?,
            (2, 2) => value = text(buf, l.len_delimited()?)?,
            (1 | 2, w) => return wrong_wire("a label's name or value", w),
            _ => l.skip(lw)?,
        }
    }
    Ok((name, value))
}

/// The byte ranges of `series`' label fields (tag, length and message), in order.
pub fn label_fields(buf: &[u8], series: &SeriesView) -> Result<Vec<Range<usize>>, ScanError> {
    if let Some(bytes) = &series.label_bytes {
        let mut r = Reader::new(buf, bytes.clone());
        let mut out = Vec::with_capacity(series.label_count);
        while !r.done() {
            let at = r.at;
            r.key()?;
            r.len_delimited()?;
            out.push(at..r.at);
        }
        return Ok(out);
    }
    let mut r = Reader::new(buf, series.field.clone());
    r.key()?;
    let body = r.len_delimited()?;
    let mut s = Reader::new(buf, body);
    let mut out = Vec::with_capacity(series.label_count);
    while !s.done() {
        let at = s.at;
        let (f, w) = s.key()?;
        if (f, w) == (1, 2) {
            s.len_delimited()?;
            out.push(at..s.at);
        } else {
            s.skip(w)?;
        }
    }
    Ok(out)
}

/// `series`' metric name (`__name__`), read from the body; empty if it has none or its
/// labels do not read.
pub fn metric_name_in<'a>(buf: &'a [u8], series: &SeriesView) -> &'a str {
    let Ok(fields) = label_fields(buf, series) else {
        return "";
    };
    for field in fields {
        let mut r = Reader::new(buf, field);
        let label = r.key().and_then(|_| r.len_delimited());
        if let Ok((name, value)) = label.and_then(|l| label_in(buf, l))
            && name == "__name__"
        {
            return value;
        }
    }
    ""
}

/// `series`' labels, read from the body into `out` (cleared first): names and values
/// checked to be UTF-8, in the order sent.
pub fn labels_in<'a>(
    buf: &'a [u8],
    series: &SeriesView,
    out: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), ScanError> {
    out.clear();
    out.reserve(series.label_count);
    for field in label_fields(buf, series)? {
        let mut r = Reader::new(buf, field);
        r.key()?;
        let label = r.len_delimited()?;
        out.push(label_in(buf, label)?);
    }
    Ok(())
}

/// Whether a scan stopped at the budget.
#[derive(Debug)]
enum Over {
    No,
    /// No room now.
    Now,
    /// More than the whole budget.
    Ever,
}

/// Room for one more element in `v`: a full list doubles, and the new buffer is
/// reserved first (the old and the new both while it moves).
fn room<T>(
    v: &mut Vec<T>,
    budget: &mut Option<(&mut Reservation, &mut Over)>,
) -> Result<(), ScanError> {
    let Some((reserved, over)) = budget else {
        return Ok(());
    };
    if v.len() < v.capacity() {
        return Ok(());
    }
    let size = std::mem::size_of::<T>() as u64;
    let cap = (v.capacity() * 2).max(16);
    let (old, new) = (v.capacity() as u64 * size, cap as u64 * size);
    let held = reserved.held();
    if !reserved.hold(held + new) {
        **over = if held + new > reserved.cap() {
            Over::Ever
        } else {
            Over::Now
        };
        return err(format!(
            "scanning this body needs {new} bytes more and limits.max_decompressed_bytes_in_flight ({}) has no room",
            reserved.cap()
        ));
    }
    v.reserve_exact(cap - v.len());
    reserved.hold(held + new - old);
    Ok(())
}

/// The bytes of a series in a typical body, to size the series list before the scan.
const EXPECTED_SERIES_BYTES: usize = 128;

/// Whether `n` elements of `v`'s type fit in the reservation (and are now held in it);
/// always true without one.
fn reserve_within<T>(
    v: &mut Vec<T>,
    n: usize,
    budget: &mut Option<(&mut Reservation, &mut Over)>,
) -> bool {
    let Some((reserved, _)) = budget else {
        return true;
    };
    let bytes = (n.saturating_sub(v.capacity()) * std::mem::size_of::<T>()) as u64;
    let held = reserved.held();
    reserved.hold(held + bytes)
}

fn scan_inner<'a>(
    buf: &'a [u8],
    mut budget: Option<(&mut Reservation, &mut Over)>,
    parse: Labels,
) -> Result<Scanned<'a>, ScanError> {
    let mut out = Scanned::default();
    // Sized once for the series a body of this size usually holds (an agent's series is
    // 150–300 bytes), not doubled from 16: the doublings were copies and large mallocs.
    // Within the reservation, like every growth; a body of tiny series still grows.
    let expected = (buf.len() / EXPECTED_SERIES_BYTES).clamp(16, 1 << 16);
    if reserve_within(&mut out.series, expected, &mut budget) {
        out.series.reserve_exact(expected);
    }
    let mut r = Reader::new(buf, 0..buf.len());
    while !r.done() {
        let field_start = r.at;
        let (field, wire) = r.key()?;
        if field == 1 && wire == 2 {
            let body = r.len_delimited()?;
            let body_start = body.start;
            let labels_start = out.labels.len();
            let histograms_start = out.histograms.len();
            let mut samples = 0u64;
            let mut newest: Option<i64> = None;
            let mut oldest: Option<i64> = None;
            let mut label_count = 0usize;
            // The label fields' run: `Some` while they lie one after the other.
            let mut label_bytes: Option<Range<usize>> = None;
            let mut contiguous = true;
            let mut s = Reader::new(buf, body);
            while !s.done() {
                let at = s.at;
                let (f, w) = s.key()?;
                match (f, w) {
                    (1, 2) => {
                        let label = s.len_delimited()?;
                        label_count += 1;
                        match &mut label_bytes {
                            None => label_bytes = Some(at..s.at),
                            Some(run) if run.end == at => run.end = s.at,
                            Some(_) => contiguous = false,
                        }
                        if parse == Labels::Parse {
                            let pair = label_in(buf, label)?;
                            room(&mut out.labels, &mut budget)?;
                            out.labels.push(pair);
                        }
                    }
                    (2, 2) => {
                        samples += 1;
                        let ts = timestamp_in(buf, s.len_delimited()?, 2)?;
                        newest = newest.max(ts);
                        oldest = min_some(oldest, ts);
                    }
                    (4, 2) => {
                        samples += 1;
                        let histogram = s.len_delimited()?;
                        let ts = timestamp_in(buf, histogram.clone(), 15)?;
                        newest = newest.max(ts);
                        oldest = min_some(oldest, ts);
                        room(&mut out.histograms, &mut budget)?;
                        out.histograms.push(histogram);
                    }
                    // A known field with the wrong wire type would be forwarded as it is
                    // and make the store refuse the whole batch: the body is malformed.
                    (1..=4, w) => return wrong_wire("a series field", w),
                    _ => s.skip(w)?,
                }
            }
            room(&mut out.series, &mut budget)?;
            out.series.push(SeriesView {
                field: field_start..r.at,
                labels: labels_start..out.labels.len(),
                label_count,
                label_bytes: if contiguous {
                    Some(label_bytes.unwrap_or(body_start..body_start))
                } else {
                    None
                },
                samples,
                newest_ms: newest,
                oldest_ms: oldest,
                histograms: histograms_start..out.histograms.len(),
            });
        } else if field == 1 || (field == 3 && wire != 2) {
            return wrong_wire("a top-level field", wire);
        } else {
            r.skip(wire)?;
            room(&mut out.other_fields, &mut budget)?;
            out.other_fields.push(field_start..r.at);
        }
    }
    Ok(out)
}

/// A `WriteRequest` of the `keep` series of `buf` (and its other fields).
pub fn select(buf: &[u8], scanned: &Scanned<'_>, keep: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    for (s, k) in scanned.series.iter().zip(keep) {
        if *k {
            out.extend_from_slice(&buf[s.field.clone()]);
        }
    }
    for f in &scanned.other_fields {
        out.extend_from_slice(&buf[f.clone()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::prometheus::{
        Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
    };
    use prost::Message;

    fn request() -> WriteRequest {
        let series = |name: &str, region: &str, ts: i64, hist: bool| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "region".into(),
                    value: region.into(),
                },
            ],
            samples: if hist {
                vec![]
            } else {
                vec![
                    Sample {
                        value: 1.5,
                        timestamp: ts,
                    },
                    Sample {
                        value: 2.0,
                        timestamp: ts + 10,
                    },
                ]
            },
            histograms: if hist {
                vec![Histogram {
                    timestamp: ts,
                    schema: 2,
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            ..Default::default()
        };
        WriteRequest {
            timeseries: vec![
                series("a", "eu", 1000, false),
                series("b", "ü", 2000, true),
                series("c", "us", 3000, false),
            ],
            metadata: vec![MetricMetadata {
                metric_family_name: "a".into(),
                help: "h".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn scans_what_prost_encodes() {
        let req = request();
        let buf = req.encode_to_vec();
        let s = scan(&buf).expect("scan");
        assert_eq!(s.series.len(), 3);
        assert_eq!(
            s.labels_of(&s.series[1]),
            &[("__name__", "b"), ("region", "ü")]
        );
        assert_eq!(s.series[0].samples, 2);
        assert_eq!(s.series[0].newest_ms, Some(1010));
        assert_eq!(s.series[1].samples, 1);
        assert_eq!(s.series[1].newest_ms, Some(2000));
        assert_eq!(s.other_fields.len(), 1);
        // Selecting re-forms a valid request of exactly the kept series.
        let kept = select(&buf, &s, &[true, false, true]);
        let back = WriteRequest::decode(kept.as_slice()).expect("decode");
        assert_eq!(
            back.timeseries,
            vec![req.timeseries[0].clone(), req.timeseries[2].clone()]
        );
        assert_eq!(back.metadata, req.metadata);
        assert_eq!(select(&buf, &s, &[true, true, true]).len(), buf.len());
    }

    #[test]
    fn a_scan_that_skips_labels_finds_them_as_bytes_and_reads_them_on_demand() {
        let buf = request().encode_to_vec();
        let budget = crate::decode::budget::Budget::default();
        let mut r = budget.reservation(1 << 20);
        let light = scan_series_within(&buf, &mut r).expect("scans");
        let full = scan(&buf).expect("scans");
        assert!(light.labels.is_empty());
        let mut read = Vec::new();
        for (l, f) in light.series.iter().zip(&full.series) {
            assert_eq!(
                (l.field.clone(), l.samples, l.newest_ms),
                (f.field.clone(), f.samples, f.newest_ms)
            );
            assert_eq!(l.label_count, 2);
            assert!(
                l.label_bytes.is_some(),
                "prost writes the labels first, together"
            );
            labels_in(&buf, l, &mut read).expect("labels");
            assert_eq!(read, full.labels_of(f));
        }
        assert_eq!(metric_name_in(&buf, &light.series[1]), "b");

        // A series whose labels have a sample between them (valid, if unusual).
        let label = |n: &str, v: &str| {
            edge_schema::proto::prometheus::Label {
                name: n.into(),
                value: v.into(),
            }
            .encode_length_delimited_to_vec()
        };
        let sample = Sample {
            value: 1.0,
            timestamp: 5,
        }
        .encode_length_delimited_to_vec();
        let mut series = vec![0x0a];
        series.extend(label("__name__", "up"));
        series.push(0x12);
        series.extend(&sample);
        series.push(0x0a);
        series.extend(label("zone", "a"));
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(series.len() as u64, &mut body);
        body.extend(&series);
        let mut r = budget.reservation(1 << 20);
        let light = scan_series_within(&body, &mut r).expect("scans");
        let s = &light.series[0];
        assert_eq!(
            (s.label_count, s.label_bytes.clone(), s.samples),
            (2, None, 1)
        );
        assert_eq!(label_fields(&body, s).expect("fields").len(), 2);
        labels_in(&body, s, &mut read).expect("labels");
        assert_eq!(read, [("__name__", "up"), ("zone", "a")]);
        assert_eq!(metric_name_in(&body, s), "up");

        // A label that is not UTF-8 is found only when read.
        let mut bad = vec![0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff];
        let light = scan_series_within(&bad, &mut budget.reservation(1 << 20)).expect("scans");
        assert!(labels_in(&bad, &light.series[0], &mut read).is_err());
        bad.truncate(6);
        assert!(scan_series_within(&bad, &mut budget.reservation(1 << 20)).is_err());
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        let buf = request().encode_to_vec();
        for cut in 0..buf.len() {
            // Every prefix either scans (a prefix can end on a field boundary) or errs.
            let _ = scan(&buf[..cut]);
        }
        assert!(scan(&buf[..buf.len() - 1]).is_err());
        assert!(scan(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(scan(&[0x0f]).is_err(), "wire type 7");
        let mut bad_utf8 = Vec::new();
        // timeseries { labels { name: "\xff" } }
        bad_utf8.extend_from_slice(&[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff]);
        assert!(scan(&bad_utf8).is_err());
    }

    #[test]
    fn the_scan_grows_its_lists_within_the_reservation() {
        let buf = request().encode_to_vec();
        let budget = crate::decode::budget::Budget::default();
        let mut r = budget.reservation(1 << 20);
        let within = scan_series_within(&buf, &mut r).expect("scans");
        let fields = |s: &Scanned<'_>| -> Vec<_> {
            s.series
                .iter()
                .map(|v| (v.field.clone(), v.samples, v.newest_ms))
                .collect()
        };
        assert_eq!(fields(&within), fields(&scan(&buf).expect("scans")));
        assert!(r.held() > 0);
        drop(within);
        drop(r);
        assert_eq!(budget.in_use(), 0);
        // 100,000 empty series: 200 KB on the wire, 8.8 MB in the list.
        let empty = [0x0au8, 0x00].repeat(100_000);
        let mut r = budget.reservation(1 << 20);
        assert!(matches!(
            scan_series_within(&empty, &mut r),
            Err(BodyError::TooLarge(_))
        ));
        // Room in the budget, but held by others now: a 503.
        let mut others = budget.reservation(16 << 20);
        assert!(others.hold(15 << 20));
        let mut r = budget.reservation(16 << 20);
        assert!(matches!(
            scan_series_within(&empty, &mut r),
            Err(BodyError::OverBudget(_))
        ));
    }
}

//! `edge-gateway spool cat DIR [--stream metrics|logs|traces]`: a file sink's spool as
//! NDJSON on stdout, read with the sink's own reader ([`crate::sink::file::scan`]).
//!
//! `DIR` is the sink's `dir` (holding `metrics/`, `logs/`, `traces/`) or one stream's
//! directory. Each line names its `stream`, `tenant` (and for metrics `host`), the
//! `segment` file and the `offset` of the record's frame in it, then the record: one
//! line per series (metrics), per document (logs) or per span (traces), in the shapes of
//! [`crate::ndjson`]. A torn or corrupt record, or one that does not decode, is reported
//! on stderr with its segment and offset and the rest is still printed; the exit status
//! then is 1.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ndjson::{self, Line};
use crate::sink::file::{Frame, scan};

/// The streams a spool may hold, in the order they are printed.
pub const STREAMS: [&str; 3] = ["metrics", "logs", "traces"];

/// What a run found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read.
    pub records: u64,
    /// Lines printed.
    pub lines: u64,
    /// Problems reported on stderr (torn records, undecodable ones, missing streams).
    pub problems: u64,
}

/// Where the streams to read are: the spool directory and the stream names under it.
fn locate(dir: &Path, stream: Option<&str>) -> Result<(PathBuf, Vec<String>), String> {
    if !dir.is_dir() {
        return Err(format!(
            "{}: not a directory (give the file sink's `dir`)",
            dir.display()
        ));
    }
    // One stream's own directory: its name says which.
    let own = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| STREAMS.contains(n))
        .filter(|_| has_segments(dir));
    if let Some(name) = own {
        if let Some(s) = stream
            && s != name
        {
            return Err(format!(
                "{}: this is the {name} stream's directory, not {s}",
                dir.display()
            ));
        }
        let parent = dir.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((parent, vec![name.to_string()]));
    }
    match stream {
        Some(s) if dir.join(s).is_dir() => Ok((dir.to_path_buf(), vec![s.to_string()])),
        Some(s) => Err(format!(
            "{}: no such directory: this spool has no {s} stream",
            dir.join(s).display()
        )),
        None => {
            let present: Vec<String> = STREAMS
                .iter()
                .filter(|s| dir.join(s).is_dir())
                .map(|s| s.to_string())
                .collect();
            if present.is_empty() {
                return Err(format!(
                    "{}: not a spool directory: no metrics/, logs/ or traces/ in it (give the file sink's `dir`)",
                    dir.display()
                ));
            }
            Ok((dir.to_path_buf(), present))
        }
    }
}

fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".seg"))
    })
}

/// The lines of one record of `stream`.
fn lines(
    stream: &str,
    key: &str,
    segment: &str,
    offset: u64,
    data: &[u8],
) -> Result<Vec<String>, ndjson::RenderError> {
    let head = |tenant: &str| {
        Line::new("stream", stream)
            .with("tenant", tenant)
            .with("segment", segment)
            .with("offset", offset)
    };
    match stream {
        "metrics" => {
            let (tenant, host) = ndjson::tenant_and_host(key);
            Ok(ndjson::metrics_record(data)?
                .into_iter()
                .map(|fields| {
                    Line::new("stream", stream)
                        .with("tenant", tenant)
                        .with("host", host)
                        .with("segment", segment)
                        .with("offset", offset)
                        .with_all(fields)
                        .end()
                })
                .collect())
        }
        "traces" => Ok(ndjson::traces_record(data, key)?
            .into_iter()
            .map(|span| head(key).with("span", span).end())
            .collect()),
        _ => Ok(vec![
            head(key)
                .with_raw("document", &ndjson::log_document(data)?)
                .end(),
        ]),
    }
}

/// Prints the spool under `dir` (every stream, or `stream`) to `out`, problems to `err`.
/// Stops early, without a problem, when `out` is closed (`| head`).
pub fn run(dir: &Path, stream: Option<&str>, out: &mut dyn Write, err: &mut dyn Write) -> Summary {
    let mut summary = Summary::default();
    let (base, streams) = match locate(dir, stream) {
        Ok(found) => found,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            summary.problems += 1;
            return summary;
        }
    };
    let mut closed = false;
    for stream in streams {
        if closed {
            break;
        }
        let scanned = scan(&base, &stream, |frame| {
            if closed {
                return;
            }
            match frame {
                Frame::Record {
                    segment,
                    offset,
                    key,
                    data,
                } => {
                    summary.records += 1;
                    let name = segment.file_name().map_or_else(
                        || segment.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    match lines(&stream, key, &name, offset, data) {
                        Ok(lines) => {
                            for line in lines {
                                if let Err(e) = out.write_all(line.as_bytes()) {
                                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                                        let _ = writeln!(err, "cannot write the output: {e}");
                                        summary.problems += 1;
                                    }
                                    closed = true;
                                    return;
                                }
                                summary.lines += 1;
                            }
                        }
                        Err(e) => {
                            let _ = writeln!(
                                err,
                                "{} at byte {offset}: a {stream} record (key {key:?}) that does not decode: {e}",
                                segment.display()
                            );
                            summary.problems += 1;
                        }
                    }
                }
                Frame::Torn {
                    segment,
                    offset,
                    bytes,
                } => {
                    let _ = writeln!(
                        err,
                        "{} at byte {offset}: a torn or corrupt record; the {bytes} byte(s) from there to the end of the segment are skipped",
                        segment.display()
                    );
                    summary.problems += 1;
                }
            }
        });
        if let Err(e) = scanned {
            let _ = writeln!(err, "{}: cannot read: {e}", base.join(&stream).display());
            summary.problems += 1;
        }
    }
    let _ = out.flush();
    summary
}

/// `edge-gateway spool cat`: [`run`] on stdout and stderr, a summary line and exit 1
/// when there were problems.
pub fn main(dir: &Path, stream: Option<&str>) -> std::process::ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = run(dir, stream, &mut out, &mut std::io::stderr());
    if summary.problems > 0 {
        eprintln!(
            "edge-gateway spool cat: {} problem(s); {} record(s) read, {} line(s) printed",
            summary.problems, summary.records, summary.lines
        );
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Record;
    use crate::sink::Sink;
    use crate::sink::file::FileSink;
    use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;

    fn write_request(name: &str) -> Vec<u8> {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: vec![Sample {
                    value: 2.0,
                    timestamp: 1000,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[tokio::test]
    async fn prints_every_stream_and_reports_a_torn_record_with_its_place_and_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = FileSink::open(dir.path(), "metrics").expect("open");
        metrics
            .commit(vec![
                Record {
                    key: "game/gs-1".into(),
                    data: write_request("edge_a_total"),
                },
                Record {
                    key: "game/gs-2".into(),
                    data: b"\xff\xffnot protobuf".to_vec(),
                },
            ])
            .await
            .expect("commit");
        let logs = FileSink::open(dir.path(), "logs").expect("open");
        logs.commit(vec![Record {
            key: "game".into(),
            data: br#"{"message":"hello","level":"info"}"#.to_vec(),
        }])
        .await
        .expect("commit");
        drop((metrics, logs));
        // A torn frame at the end of the metrics segment.
        let seg = dir.path().join("metrics/000000000001.seg");
        let whole = std::fs::metadata(&seg).expect("segment").len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        f.write_all(&[40, 0, 0, 0, 9, 9]).expect("tear");

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = run(dir.path(), None, &mut out, &mut err);
        let out = String::from_utf8(out).expect("utf-8");
        let err = String::from_utf8(err).expect("utf-8");
        assert_eq!(
            summary,
            Summary {
                records: 3,
                lines: 2,
                problems: 2
            },
            "{out}{err}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "{\"stream\":\"metrics\",\"tenant\":\"game\",\"host\":\"gs-1\",\"segment\":\"000000000001.seg\",\"offset\":0,\
             \"labels\":{\"__name__\":\"edge_a_total\"},\"samples\":[[1000,2.0]],\"histograms\":[]}"
        );
        assert!(
            lines[1].starts_with("{\"stream\":\"logs\",\"tenant\":\"game\",\"segment\":\"000000000001.seg\",\"offset\":0,\"document\":{\"message\":\"hello\""),
            "{out}"
        );
        assert!(
            err.contains(&format!("{} at byte {whole}: a torn", seg.display())),
            "{err}"
        );
        assert!(
            err.contains("key \"game/gs-2\"") && err.contains("does not decode"),
            "{err}"
        );

        // One stream, and one stream's own directory.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = run(dir.path(), Some("logs"), &mut out, &mut err);
        assert_eq!((s.lines, s.problems), (1, 0));
        let s = run(
            &dir.path().join("logs"),
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert_eq!((s.lines, s.problems), (1, 0));
        // Not a spool.
        let mut err = Vec::new();
        let s = run(
            &dir.path().join("metrics/000000000001.seg"),
            None,
            &mut Vec::new(),
            &mut err,
        );
        assert_eq!(s.problems, 1);
        assert!(String::from_utf8_lossy(&err).contains("not a directory"));
        let empty = tempfile::tempdir().expect("tempdir");
        let mut err = Vec::new();
        assert_eq!(
            run(empty.path(), None, &mut Vec::new(), &mut err).problems,
            1
        );
        assert!(String::from_utf8_lossy(&err).contains("not a spool directory"));
        let mut err = Vec::new();
        assert_eq!(
            run(dir.path(), Some("traces"), &mut Vec::new(), &mut err).problems,
            1
        );
        assert!(String::from_utf8_lossy(&err).contains("no traces stream"));
    }
}

//! Scrape targets: third-party exporters that speak the Prometheus text format
//! (version 0.0.4). Every scraped series passes the same gate as pushed ones.
//!
//! The parser (`edge_schema::exposition`, shared with `label-lint`) takes samples only (`# HELP`/`# TYPE` lines are skipped): a line that does
//! not parse is counted and skipped, and its neighbours still count.

use std::time::Duration;

use super::SeriesKey;
use crate::plain_http::{self, PlainHttpError};

/// The most a scrape may return; a larger answer is refused, not truncated.
pub const MAX_SCRAPE_BYTES: usize = 8 << 20;

/// A parsed exposition.
#[derive(Debug, Default, PartialEq)]
pub struct Exposition {
    /// Samples: series, value, and the timestamp when the line gave one.
    pub samples: Vec<(SeriesKey, f64, Option<i64>)>,
    /// Lines that did not parse, with their 1-based number and the reason.
    pub bad_lines: Vec<(usize, String)>,
}

/// Parses a text exposition.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(sample) => out.samples.push(sample),
            Err(why) => out.bad_lines.push((i + 1, why)),
        }
    }
    out
}

fn parse_line(line: &str) -> Result<(SeriesKey, f64, Option<i64>), String> {
    let sample = edge_schema::exposition::parse_sample(line)
        .map_err(|e| format!("column {}: {}", e.at + 1, e.message))?;
    let labels = sample
        .labels
        .into_iter()
        .map(|l| (l.name.to_string(), l.value.into_owned()))
        .collect();
    Ok((
        SeriesKey::new(sample.name, labels),
        sample.value,
        sample.timestamp,
    ))
}

/// Fetches `url` (plain `http`, meant for exporters on the host) within `timeout`.
pub async fn fetch(url: &str, timeout: Duration) -> Result<String, PlainHttpError> {
    let (status, body) = plain_http::request(
        http::Method::GET,
        url,
        &[(http::header::ACCEPT, "text/plain;version=0.0.4")],
        timeout,
        MAX_SCRAPE_BYTES,
    )
    .await?;
    if status != 200 {
        return Err(PlainHttpError::Status {
            url: url.to_string(),
            status,
        });
    }
    String::from_utf8(body).map_err(|_| PlainHttpError::Transport {
        url: url.to_string(),
        why: "the body is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_escapes_and_timestamps() {
        let text = "# HELP x y\n# TYPE x counter\nx 1\ny{a=\"1\",b=\"q\\\"\\n\"} 2.5 1700000000000\nz{} +Inf\nbroken{a=1} 3\n";
        let e = parse(text);
        assert_eq!(e.samples.len(), 3);
        assert_eq!(e.samples[0], (SeriesKey::new("x", vec![]), 1.0, None));
        assert_eq!(
            e.samples[1],
            (
                SeriesKey::new(
                    "y",
                    vec![("a".into(), "1".into()), ("b".into(), "q\"\n".into())]
                ),
                2.5,
                Some(1_700_000_000_000)
            )
        );
        assert!(e.samples[2].1.is_infinite());
        assert_eq!(e.bad_lines.len(), 1);
        assert_eq!(e.bad_lines[0].0, 6);
    }
}

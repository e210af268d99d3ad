//! The multi-line joiner: puts the lines of one record (a stack trace, a panic with its
//! backtrace, a Python traceback) back together before parsing.
//!
//! A line matching the source's `start` pattern begins a record; any other line
//! continues the record being built, joined with `\n`. A record is complete when the
//! next one starts, when it has waited `max_wait` since its last line (the writer is
//! done, or paused), or when it reaches `max_lines`.
//!
//! The joiner never reads a clock: the caller passes the time a line was read, and calls
//! [`Multiline::flush_due`] after each push and on a timer.

use std::time::{Duration, Instant};

use regex::Regex;

/// Joins the lines of one file into records. One per tailed file.
#[derive(Debug)]
pub struct Multiline {
    start: Regex,
    max_lines: usize,
    max_wait: Duration,
    pending: Option<Pending>,
}

/// The record being built.
#[derive(Debug)]
struct Pending {
    text: String,
    lines: usize,
    last_line_at: Instant,
}

impl Multiline {
    /// A joiner whose records begin at lines matching `start`, hold at most `max_lines`
    /// lines (0 is taken as 1) and are complete once `max_wait` has passed since their
    /// last line. Fails if `start` does not compile.
    pub fn new(
        start: &str,
        max_lines: usize,
        max_wait: Duration,
    ) -> Result<Multiline, regex::Error> {
        Ok(Multiline {
            start: Regex::new(start)?,
            max_lines: max_lines.max(1),
            max_wait,
            pending: None,
        })
    }

    /// Feeds one line read at `now`; returns a completed record's text when this line
    /// starts a new record (the previous one is complete).
    ///
    /// A line matching `start` starts a new record. So does a continuation line with no
    /// record to join: one before any start line (the file was opened mid-record), one
    /// after the pending record was flushed, or one past a record that holds
    /// `max_lines` already. Later continuations join it.
    pub fn push(&mut self, line: &str, now: Instant) -> Option<String> {
        if !self.start.is_match(line)
            && let Some(pending) = self.pending.as_mut().filter(|p| p.lines < self.max_lines)
        {
            pending.text.reserve(line.len() + 1);
            pending.text.push('\n');
            pending.text.push_str(line);
            pending.lines += 1;
            pending.last_line_at = now;
            return None;
        }
        let next = Pending {
            text: line.to_owned(),
            lines: 1,
            last_line_at: now,
        };
        self.pending.replace(next).map(|done| done.text)
    }

    /// The pending record if it has waited `max_wait` since its last line, or has
    /// reached `max_lines` (call after push and on a timer).
    pub fn flush_due(&mut self, now: Instant) -> Option<String> {
        let pending = self.pending.as_ref()?;
        let due = pending.lines >= self.max_lines
            || now.saturating_duration_since(pending.last_line_at) >= self.max_wait;
        if due { self.flush() } else { None }
    }

    /// Whatever is pending, now (shutdown, file rotated away).
    pub fn flush(&mut self) -> Option<String> {
        self.pending.take().map(|done| done.text)
    }

    /// When the pending record will be due by time, if one is pending: when to set the
    /// timer that calls [`Multiline::flush_due`].
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| {
            p.last_line_at
                .checked_add(self.max_wait)
                .unwrap_or(p.last_line_at)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMESTAMPED: &str = r"^\d{4}-\d{2}-\d{2}[T ]";
    const WAIT: Duration = Duration::from_secs(5);

    fn joiner(start: &str, max_lines: usize) -> Multiline {
        Multiline::new(start, max_lines, WAIT).expect("the start pattern compiles")
    }

    /// Feeds every line at `t0` and returns the records completed along the way, then
    /// the one flushed at the end.
    fn join_all(m: &mut Multiline, lines: &[&str], t0: Instant) -> Vec<String> {
        let mut out: Vec<String> = lines.iter().filter_map(|l| m.push(l, t0)).collect();
        out.extend(m.flush());
        out
    }

    #[test]
    fn java_stack_trace() {
        let lines = [
            "2024-05-01 12:00:00.123 ERROR [tick-1] c.e.Game - tick failed",
            "java.lang.IllegalStateException: no player p1",
            "\tat com.example.Game.tick(Game.java:42)",
            "\tat com.example.Loop.run(Loop.java:17)",
            "Caused by: java.io.IOException: broken pipe",
            "\tat com.example.Net.send(Net.java:9)",
            "\t... 2 more",
            "2024-05-01 12:00:01.000 INFO [tick-1] c.e.Game - recovered",
        ];
        let mut m = joiner(TIMESTAMPED, 500);
        let records = join_all(&mut m, &lines, Instant::now());
        assert_eq!(records, vec![lines[..7].join("\n"), lines[7].to_owned()]);
        assert_eq!(m.flush(), None);
    }

    #[test]
    fn rust_panic_with_backtrace() {
        let lines = [
            "2024-05-01T12:00:00Z INFO server: listening",
            "thread 'main' panicked at src/main.rs:4:5:",
            "index out of bounds: the len is 3 but the index is 7",
            "stack backtrace:",
            "   0: rust_begin_unwind",
            "             at /rustc/library/std/src/panicking.rs:652:5",
            "   1: game::tick",
            "             at ./src/main.rs:4:5",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
            "2024-05-01T12:00:01Z INFO server: restarted",
        ];
        let mut m = joiner(r"^(\d{4}-\d{2}-\d{2}T|thread ')", 500);
        let records = join_all(&mut m, &lines, Instant::now());
        assert_eq!(
            records,
            vec![
                lines[0].to_owned(),
                lines[1..9].join("\n"),
                lines[9].to_owned()
            ]
        );
    }

    #[test]
    fn python_traceback() {
        let lines = [
            "2024-05-01 12:00:00,123 ERROR matchmaker: failed",
            "Traceback (most recent call last):",
            "  File \"/srv/mm.py\", line 10, in <module>",
            "    main()",
            "  File \"/srv/mm.py\", line 7, in main",
            "    raise ValueError(\"bad élo\")",
            "ValueError: bad élo",
            "",
            "2024-05-01 12:00:02,000 INFO matchmaker: ok",
        ];
        let mut m = joiner(TIMESTAMPED, 500);
        let records = join_all(&mut m, &lines, Instant::now());
        assert_eq!(records, vec![lines[..8].join("\n"), lines[8].to_owned()]);
        assert!(records[0].ends_with("élo\n"));
    }

    #[test]
    fn continuation_before_any_start_line_starts_its_own_record() {
        let lines = [
            "\tat a.B.c(B.java:1)",
            "\tat a.B.d(B.java:2)",
            "2024-05-01 12:00:00 INFO up",
            "x",
        ];
        let mut m = joiner(TIMESTAMPED, 500);
        let records = join_all(&mut m, &lines, Instant::now());
        assert_eq!(records, vec![lines[..2].join("\n"), lines[2..].join("\n")]);
    }

    #[test]
    fn every_start_line_is_a_record() {
        let mut m = joiner(r"^\S", 500);
        let t0 = Instant::now();
        assert_eq!(m.push("a", t0), None);
        assert_eq!(m.push("b", t0).as_deref(), Some("a"));
        assert_eq!(m.push("c", t0).as_deref(), Some("b"));
        assert_eq!(m.flush().as_deref(), Some("c"));
        assert_eq!(m.flush(), None);
    }

    #[test]
    fn max_lines_bounds_a_record() {
        let t0 = Instant::now();
        let mut m = joiner(r"^START", 3);
        assert_eq!(m.push("START", t0), None);
        assert_eq!(m.push("1", t0), None);
        assert_eq!(m.push("2", t0), None);
        // Full: the next continuation starts a new record.
        assert_eq!(m.push("3", t0).as_deref(), Some("START\n1\n2"));
        assert_eq!(m.push("4", t0), None);
        assert_eq!(m.push("5", t0), None);
        assert_eq!(m.push("6", t0).as_deref(), Some("3\n4\n5"));
        assert_eq!(m.push("START", t0).as_deref(), Some("6"));
        assert_eq!(m.flush().as_deref(), Some("START"));

        // Or flush_due hands it over as soon as it is full.
        let mut m = joiner(r"^START", 2);
        assert_eq!(m.push("START", t0), None);
        assert_eq!(m.flush_due(t0), None);
        assert_eq!(m.push("1", t0), None);
        assert_eq!(m.flush_due(t0).as_deref(), Some("START\n1"));
        assert_eq!(m.push("2", t0), None);
        assert_eq!(m.flush().as_deref(), Some("2"));
    }

    #[test]
    fn max_lines_of_zero_or_one_makes_every_line_a_record() {
        let t0 = Instant::now();
        for max in [0, 1] {
            let mut m = joiner(r"^START", max);
            assert_eq!(m.push("START", t0), None);
            assert_eq!(m.push("a", t0).as_deref(), Some("START"));
            assert_eq!(m.flush_due(t0).as_deref(), Some("a"));
        }
    }

    #[test]
    fn flush_due_waits_max_wait_from_the_last_line() {
        let t0 = Instant::now();
        let mut m = joiner(TIMESTAMPED, 500);
        assert_eq!(m.flush_due(t0), None);
        assert_eq!(m.deadline(), None);
        assert_eq!(m.push("2024-05-01 12:00:00 ERROR boom", t0), None);
        assert_eq!(m.deadline(), Some(t0 + WAIT));
        assert_eq!(m.flush_due(t0 + WAIT - Duration::from_millis(1)), None);
        // A continuation restarts the wait.
        assert_eq!(m.push("  detail", t0 + Duration::from_secs(3)), None);
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(3) + WAIT));
        assert_eq!(m.flush_due(t0 + WAIT), None);
        assert_eq!(
            m.flush_due(t0 + Duration::from_secs(3) + WAIT).as_deref(),
            Some("2024-05-01 12:00:00 ERROR boom\n  detail")
        );
        assert_eq!(m.flush_due(t0 + Duration::from_secs(60)), None);
        // A time before the last line (a clock read out of order) is not due.
        assert_eq!(
            m.push("2024-05-01 12:00:01 INFO x", t0 + Duration::from_secs(10)),
            None
        );
        assert_eq!(m.flush_due(t0), None);
        assert_eq!(m.flush().as_deref(), Some("2024-05-01 12:00:01 INFO x"));
    }

    #[test]
    fn lines_after_a_timed_flush_start_a_new_record() {
        let t0 = Instant::now();
        let mut m = joiner(TIMESTAMPED, 500);
        m.push("2024-05-01 12:00:00 ERROR boom", t0);
        assert!(m.flush_due(t0 + WAIT).is_some());
        assert_eq!(m.push("\tat late(X.java:1)", t0 + WAIT * 2), None);
        assert_eq!(m.push("\tat later(X.java:2)", t0 + WAIT * 2), None);
        assert_eq!(
            m.flush().as_deref(),
            Some("\tat late(X.java:1)\n\tat later(X.java:2)")
        );
    }

    #[test]
    fn zero_max_wait_is_due_at_once() {
        let t0 = Instant::now();
        let mut m = Multiline::new(r"^\S", 10, Duration::ZERO).expect("compiles");
        m.push("a", t0);
        assert_eq!(m.flush_due(t0).as_deref(), Some("a"));
    }

    #[test]
    fn empty_and_unicode_lines() {
        let t0 = Instant::now();
        let mut m = joiner(r"^\S", 10);
        assert_eq!(m.push("", t0), None);
        assert_eq!(m.push(" 世界", t0), None);
        assert_eq!(m.push("é start", t0).as_deref(), Some("\n 世界"));
        assert_eq!(m.flush().as_deref(), Some("é start"));
    }

    #[test]
    fn a_bad_start_pattern_is_an_error() {
        assert!(Multiline::new("(unclosed", 10, WAIT).is_err());
    }
}

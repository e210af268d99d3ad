use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::*;

fn config(glob: &Path) -> TailConfig {
    TailConfig {
        glob: glob.to_string_lossy().into_owned(),
        read_existing_from_start: true,
        max_line_bytes: 64 * 1024,
        partial_flush: Duration::from_secs(5),
    }
}

/// Polls until `want` lines were read or 20 s pass; commits as it goes.
fn read_all(
    tailer: &mut Tailer,
    want: usize,
    until_writer_done: &std::sync::atomic::AtomicBool,
) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::new();
    loop {
        out.clear();
        tailer.poll(Instant::now(), &mut out);
        let mut done = HashMap::new();
        for l in &out {
            done.insert(l.file, l.end_offset);
        }
        tailer.commit(&done);
        lines.extend(out.iter().map(|l| l.text.clone()));
        if lines.len() >= want && until_writer_done.load(std::sync::atomic::Ordering::SeqCst) {
            // One more poll: nothing may come twice.
            out.clear();
            tailer.poll(Instant::now() + ROTATED_GRACE, &mut out);
            lines.extend(out.iter().map(|l| l.text.clone()));
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "read {} of {want} lines",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every line exactly once, in order; on failure, says where it first differs.
fn assert_same(got: &[String], want: &[String]) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!("line {i}: got {:?}, want {:?}", got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "lost or repeated lines");
}

/// A busy game server's pace, about 150,000 lines a second with no pause around
/// rotations, so each file lives a few dozen milliseconds: long enough for a poll (or
/// an inotify event) to see it under its name.
fn pace(i: usize) {
    if i % 300 == 299 {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("line {i:06} {}", "x".repeat(i % 50)))
        .collect()
}

#[test]
fn globs_match_file_names() {
    assert!(glob_match("*.log", "game.log"));
    assert!(!glob_match("*.log", "game.log.1"));
    assert!(glob_match("game-?.log", "game-7.log"));
    assert!(glob_match("game.log", "game.log"));
    assert!(glob_match("*", "anything"));
    assert!(!glob_match("a*b*c", "acb"));
}

#[test]
fn rename_rotation_under_a_writer_that_never_pauses_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    std::fs::write(&log, "").expect("create");
    let mut tailer = Tailer::new(config(&log), dir.path().join("positions.json")).expect("tailer");
    let n = 60_000;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            for (i, line) in expected(n).into_iter().enumerate() {
                if i % 7_000 == 6_999 {
                    // logrotate's default: rename; the writer still writes this line to
                    // the renamed file, then reopens the path.
                    std::fs::rename(&log, log.with_extension(format!("log.{i}"))).expect("rename");
                    writeln!(f, "{line}").expect("write");
                    f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .expect("reopen");
                } else {
                    writeln!(f, "{line}").expect("write");
                }
                pace(i);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let lines = read_all(&mut tailer, n, &done);
    writer.join().expect("writer");
    assert_same(&lines, &expected(n));
}

#[test]
fn copytruncate_under_a_writer_that_never_pauses_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    std::fs::write(&log, "").expect("create");
    let mut tailer = Tailer::new(config(&log), dir.path().join("positions.json")).expect("tailer");
    let n = 60_000;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            let mut w = &f;
            for (i, line) in expected(n).into_iter().enumerate() {
                writeln!(w, "{line}").expect("write");
                pace(i);
                if i % 7_000 == 6_999 {
                    // logrotate's copytruncate: copy, then truncate the original,
                    // which the writer keeps appending to.
                    std::fs::copy(&log, log.with_extension(format!("log.{i}"))).expect("copy");
                    f.set_len(0).expect("truncate");
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let lines = read_all(&mut tailer, n, &done);
    writer.join().expect("writer");
    assert_same(&lines, &expected(n));
}

#[test]
fn a_file_truncated_in_place_restarts_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    std::fs::write(&log, "one\ntwo\n").expect("write");
    let mut tailer = Tailer::new(config(&log), dir.path().join("p.json")).expect("tailer");
    let mut out = Vec::new();
    tailer.poll(Instant::now(), &mut out);
    assert_eq!(out.len(), 2);
    std::fs::write(&log, "three\n").expect("rewrite");
    out.clear();
    tailer.poll(Instant::now(), &mut out);
    let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["three"]);
}

#[test]
fn positions_resume_after_a_restart_and_a_reused_inode_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    let positions = dir.path().join("p.json");
    std::fs::write(&log, "alpha one\nalpha two\nalpha three\n").expect("write");
    {
        let mut tailer = Tailer::new(config(&log), positions.clone()).expect("tailer");
        let mut out = Vec::new();
        tailer.poll(Instant::now(), &mut out);
        assert_eq!(out.len(), 3);
        // Only the first two are durable when the agent dies.
        tailer.commit(&HashMap::from([(out[1].file, out[1].end_offset)]));
    }
    let mut tailer = Tailer::new(config(&log), positions.clone()).expect("tailer");
    let mut out = Vec::new();
    tailer.poll(Instant::now(), &mut out);
    let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        ["alpha three"],
        "resumes after the last durable line"
    );
    tailer.commit(&HashMap::from([(out[0].file, out[0].end_offset)]));
    drop(tailer);
    // The same inode now holds other content (a recreated file): read from the start.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open");
    f.set_len(0).expect("truncate");
    f.write_all_at(b"bravo one is longer than before\nbravo two\n", 0)
        .expect("rewrite");
    let mut tailer = Tailer::new(config(&log), positions).expect("tailer");
    out.clear();
    tailer.poll(Instant::now(), &mut out);
    let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["bravo one is longer than before", "bravo two"]);
}

#[test]
fn files_present_at_the_first_run_start_at_their_end_new_ones_at_their_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("old.log"), "old line\n").expect("write");
    let mut c = config(&dir.path().join("*.log"));
    c.read_existing_from_start = false;
    let mut tailer = Tailer::new(c, dir.path().join("p.json")).expect("tailer");
    let mut out = Vec::new();
    tailer.poll(Instant::now(), &mut out);
    assert!(out.is_empty());
    std::fs::write(dir.path().join("new.log"), "new line\n").expect("write");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("old.log"))
        .expect("open");
    writeln!(f, "appended").expect("append");
    tailer.poll(Instant::now(), &mut out);
    let mut texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["appended", "new line"]);
}

#[test]
fn long_lines_are_split_and_flagged_partial_lines_wait_for_their_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    let mut c = config(&log);
    c.max_line_bytes = 10;
    c.partial_flush = Duration::from_millis(100);
    std::fs::write(&log, format!("{}\nshort\nhalf", "y".repeat(25))).expect("write");
    let mut tailer = Tailer::new(c, dir.path().join("p.json")).expect("tailer");
    let mut out = Vec::new();
    let t0 = Instant::now();
    tailer.poll(t0, &mut out);
    let got: Vec<(usize, bool)> = out.iter().map(|l| (l.text.len(), l.truncated)).collect();
    assert_eq!(got, [(10, true), (10, true), (5, true), (5, false)]);
    assert_eq!(
        out[2].end_offset, 26,
        "the last piece ends past the newline"
    );
    assert_eq!(out[1].end_offset, 20);
    out.clear();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    write!(f, " done\nnext").expect("append");
    tailer.poll(t0, &mut out);
    assert_eq!(
        out.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["half done"]
    );
    out.clear();
    tailer.poll(t0 + Duration::from_millis(200), &mut out);
    assert_eq!(
        out.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["next"],
        "flushed after the timeout"
    );
}

#[test]
fn a_long_line_is_cut_where_no_address_straddles_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    let mut c = config(&log);
    c.max_line_bytes = 64;
    // The email spans bytes 55..79: a cut at 64 would ship "jane.q.p" and
    // "ublic@example.com" apart, neither of which a detector finds.
    let line = format!(
        "{} jane.q.public@example.com then {}",
        "x".repeat(54),
        "z".repeat(80)
    );
    std::fs::write(&log, format!("{line}\n")).expect("write");
    let mut tailer = Tailer::new(c, dir.path().join("p.json")).expect("tailer");
    let mut out = Vec::new();
    tailer.poll(Instant::now(), &mut out);
    let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.concat(), line, "nothing lost or repeated");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("jane.q.public@example.com")),
        "the address is whole in one piece: {texts:?}"
    );
    assert!(texts.iter().all(|t| t.len() <= 64), "{texts:?}");
    assert!(out.iter().all(|l| l.truncated));
    assert_eq!(
        out.last().map(|l| l.end_offset),
        Some(line.len() as u64 + 1)
    );
}

/// Polls once and commits everything read; the lines' texts.
fn poll_commit(tailer: &mut Tailer) -> Vec<String> {
    let mut out = Vec::new();
    tailer.poll(Instant::now(), &mut out);
    let mut done = HashMap::new();
    for l in &out {
        done.insert(l.file, l.end_offset);
    }
    tailer.commit(&done);
    out.into_iter().map(|l| l.text).collect()
}

#[test]
fn after_a_restart_a_file_renamed_out_of_the_glob_is_read_from_its_position_to_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    let positions = dir.path().join("p.json");
    std::fs::write(&log, "one\ntwo\n").expect("write");
    {
        let mut tailer =
            Tailer::new(config(&dir.path().join("*.log")), positions.clone()).expect("tailer");
        assert_eq!(poll_commit(&mut tailer), ["one", "two"]);
        // The agent dies here (no clean stop).
    }
    // While it is down, the game writes on and logrotate renames the file to a name
    // outside the glob; a new file starts.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    writeln!(f, "three").expect("write");
    drop(f);
    std::fs::rename(&log, dir.path().join("game.log.1")).expect("rotate");
    std::fs::write(&log, "four\n").expect("new file");
    let mut tailer =
        Tailer::new(config(&dir.path().join("*.log")), positions.clone()).expect("tailer");
    let mut got = poll_commit(&mut tailer);
    got.sort();
    assert_eq!(got, ["four", "three"], "nothing lost, nothing repeated");
    assert_eq!(tailer.take_lost_bytes(), 0);
}

#[test]
fn a_position_whose_file_is_gone_is_reported_as_lost_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    let positions = dir.path().join("p.json");
    std::fs::write(&log, "one\ntwo\n").expect("write");
    {
        let mut tailer =
            Tailer::new(config(&dir.path().join("*.log")), positions.clone()).expect("tailer");
        let mut out = Vec::new();
        tailer.poll(Instant::now(), &mut out);
        // Only the first line became durable before the crash.
        let first = out.first().expect("a line");
        tailer.commit(&HashMap::from([(first.file, first.end_offset)]));
    }
    std::fs::remove_file(&log).expect("delete");
    let mut tailer = Tailer::new(config(&dir.path().join("*.log")), positions).expect("tailer");
    assert!(poll_commit(&mut tailer).is_empty());
    assert_eq!(
        tailer.take_lost_bytes(),
        4,
        "\"two\\n\" was read but never delivered"
    );
    assert_eq!(tailer.take_lost_bytes(), 0, "reported once");
}

#[test]
fn a_file_created_and_renamed_away_between_two_listings_is_read_under_its_new_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    let mut tailer = Tailer::new(config(&log), dir.path().join("positions.json")).expect("tailer");
    assert!(poll_commit(&mut tailer).is_empty(), "nothing there yet");
    // Between two polls the game creates its log, writes, and logrotate renames it
    // out of the glob; a new file starts. The first file was never listed as game.log.
    std::fs::write(&log, "first 1\nfirst 2\n").expect("write");
    std::fs::rename(&log, dir.path().join("game.log.1")).expect("rotate");
    std::fs::write(&log, "second 1\n").expect("write");
    // A compressed rotation and an unrelated file are not followed.
    std::fs::write(dir.path().join("game.log.2.gz"), "\u{1f}\u{8b}binary").expect("gz");
    std::fs::write(dir.path().join("other.txt"), "not ours\n").expect("other");
    assert_eq!(poll_commit(&mut tailer), ["second 1"]);
    // A file first seen outside the glob is followed once its length holds still for a
    // poll (a copytruncate copy being written is not new data).
    assert_eq!(poll_commit(&mut tailer), ["first 1", "first 2"]);
    // The rotated file stays known: a later poll, or a restart, reads nothing twice.
    assert!(poll_commit(&mut tailer).is_empty());
    drop(tailer);
    let mut again = Tailer::new(config(&log), dir.path().join("positions.json")).expect("tailer");
    assert!(
        poll_commit(&mut again).is_empty(),
        "nothing repeated after a restart"
    );
}

#[test]
fn a_file_renamed_to_an_unrelated_name_before_it_was_listed_is_followed_by_the_rename_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    let mut tailer = Tailer::new(config(&log), dir.path().join("positions.json")).expect("tailer");
    assert!(poll_commit(&mut tailer).is_empty(), "nothing there yet");
    // Created, written and renamed to a name that is no rotated name of the glob, all
    // before the next listing: only inotify's paired rename says where it went.
    std::fs::write(&log, "gone 1\ngone 2\n").expect("write");
    std::fs::rename(&log, dir.path().join("archive-0001.bin")).expect("rename");
    // An unrelated file renamed to another unrelated name is not followed.
    std::fs::write(dir.path().join("notes.txt"), "not ours\n").expect("write");
    std::fs::rename(dir.path().join("notes.txt"), dir.path().join("notes.old")).expect("rename");
    tailer.renamed("game.log", "archive-0001.bin");
    tailer.renamed("notes.txt", "notes.old");
    // Followed once its length holds still for a poll, like any file first seen
    // outside the glob.
    assert!(poll_commit(&mut tailer).is_empty());
    assert_eq!(poll_commit(&mut tailer), ["gone 1", "gone 2"]);
    // Renamed again: still followed, nothing read twice.
    std::fs::rename(
        dir.path().join("archive-0001.bin"),
        dir.path().join("archive-0002.bin"),
    )
    .expect("rename");
    tailer.renamed("archive-0001.bin", "archive-0002.bin");
    assert!(poll_commit(&mut tailer).is_empty());
    assert!(poll_commit(&mut tailer).is_empty());
}

#[test]
fn rotated_names_are_a_glob_match_and_a_suffix_but_never_compressed() {
    assert!(rotated_name("*.log", "game.log.1"));
    assert!(rotated_name("*.log", "game.log-20261205"));
    assert!(rotated_name("game.log", "game.log_old"));
    assert!(!rotated_name("*.log", "game.log.1.gz"));
    assert!(!rotated_name("*.log", "game.log."));
    assert!(!rotated_name("*.log", "other.txt"));
    assert!(!rotated_name("game.log", "xgame.log.1"));
}

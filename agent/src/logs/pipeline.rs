//! The logs pipeline, on its own thread: tail → multi-line → parse → filter → enrich →
//! tokenize → batch → disk queue, then the positions are committed.
//!
//! One thread does it all, in order, per file: no channel between stages, no record
//! copied between threads. It reads its files every [`POLL_INTERVAL`], at once when
//! inotify reports a file created, moved or deleted in a source's directory (or the
//! event queue overflowing), and without pause while a file has more than one round's
//! worth waiting; it reads everything new and closes batches by size or age. Writes
//! themselves wake nothing, so the cost does not grow with how often the game writes.
//!
//! **The acknowledgement chain.** A file position is committed only after every
//! record read before it is in the disk queue (fsynced): when batches close, all open
//! batches are queued together, and each file's position becomes the end of its last
//! line, or the start of a multi-line record still being joined. The queue keeps a
//! batch until the gateway's 2xx. So a position never runs ahead of what is durable,
//! and after `kill -9` the agent resumes without a gap (and at most re-sends the lines
//! of the batches that were open).
//!
//! **Privacy.** Every record is tokenized before it is batched; a record a detector
//! says to drop is dropped, counted, and never queued.
//!
//! **Shedding.** With the queue above 80% of its bound, or the gateway's shed hint at
//! `debug`, debug and trace records are shed; above 90%, or the hint at `info`, info
//! records too. Warnings and errors are kept to the last (the queue itself sheds whole
//! segments, lowest class first, at its bound). Every dropped record is counted by
//! reason and class.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regex::RegexSet;
use tokio::sync::Notify;

use super::multiline::Multiline;
use super::parse::Parser;
use super::record::{Level, LogRecord};
use super::ship::{BatchLimits, Batcher, Closed, class_of};
use super::tail::{FileId, Line, TailConfig, Tailer};
use crate::config::{AgentConfig, LogSource};
use crate::queue::{Class, SharedQueue};
use crate::telemetry::Telemetry;
use edge_tokenize::{KeyFile, Tokenizer, Verdict};

/// The longest the pipeline sleeps without looking at its files.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often the tokenization key file is checked for a new key.
pub const KEY_CHECK_EVERY: Duration = Duration::from_secs(5);

pub use crate::queue::{SHED_DEBUG_AT, SHED_INFO_AT};

#[derive(Debug, Default)]
struct FileState {
    joiner: Option<Multiline>,
    /// End offset of the last line handed to the pipeline.
    last_end: u64,
    /// Start of a multi-line record still being joined.
    pending_from: Option<u64>,
}

#[derive(Debug)]
struct Source {
    tailer: Tailer,
    /// What the tailer was built for: a reload keeps the tailer (and its open files)
    /// of a source whose `tail` is the same.
    tail: TailConfig,
    multiline: Option<(String, usize, Duration)>,
    files: HashMap<FileId, FileState>,
    stages: Stages,
    /// The batcher's index of the source's service.
    service: usize,
}

/// What a reload changed in the logs pipeline ([`LogsPipeline::reconfigure`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Sources kept (their files stay open; parser, filters and tags are the new ones).
    pub kept: usize,
    /// Sources started, by `path`.
    pub added: Vec<String>,
    /// Sources stopped, by `path` (their positions were committed first).
    pub removed: Vec<String>,
    /// Directories of the new sources that were not watched before.
    pub new_dirs: Vec<PathBuf>,
}

/// A source of the new config, built but not yet swapped in.
enum Planned {
    /// The running source at this index, with new stages and multi-line settings.
    Keep(usize, Box<Stages>, Option<(String, usize, Duration)>),
    /// A new source.
    New(Box<Source>),
}

/// The stages of one source between the joiner and the tokenizer: parse → filter
/// (`min_level`, `drop`, `sample`) → shed → enrich (`tags`). No clock, no I/O and no
/// counters (the caller counts what it returns), so `edge-agent test` runs the very code
/// the pipeline runs.
#[derive(Debug)]
pub struct Stages {
    parser: Parser,
    filters: Filters,
}

/// What a record passes after it is parsed: the level floor, drop patterns, sampling,
/// shedding, and the tags it gets. A file source's come from its config; OTLP records
/// have none of their own but pass the same stages (and tokenization).
#[derive(Debug, Default)]
pub struct Filters {
    min_level: Option<Level>,
    drop: Option<RegexSet>,
    /// Fraction kept per level and the running credit of each.
    sample: HashMap<Level, (f64, f64)>,
    tags: Vec<(String, String)>,
}

pub use crate::logs::record::Origin;

/// What became of OTLP records offered with [`LogsPipeline::offer_structured`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StructuredOutcome {
    /// Records queued (durable when the call returns).
    pub queued: usize,
    /// Records dropped by a filter, the sampler or a `drop` detector (counted in
    /// `edge_logs_dropped_total`).
    pub dropped: usize,
    /// Nothing was taken: the pipeline is shedding the class of some of them; the
    /// client should retry later.
    pub shedding: bool,
}

/// A record the stages dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// `min_level`, `drop_rule`, `sampled` or `shed` (as counted in
    /// `edge_logs_dropped_total{reason}`).
    pub reason: &'static str,
    /// The queue class its level maps to.
    pub class: Class,
    /// The line did not parse with the source's parser.
    pub parse_failed: bool,
}

impl Stages {
    /// The stages of `source`: its parser compiled, its drop patterns as one set.
    pub fn new(source: &LogSource) -> anyhow::Result<Stages> {
        let parser = Parser::new(source.parser, source.pattern.as_deref())?;
        let drop = if source.drop.is_empty() {
            None
        } else {
            Some(RegexSet::new(&source.drop)?)
        };
        let sample = source
            .sample
            .iter()
            .map(|(level, fraction)| (*level, (*fraction, 0.0)))
            .collect();
        Ok(Stages {
            parser,
            filters: Filters {
                min_level: source.min_level,
                drop,
                sample,
                tags: source
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
        })
    }

    /// Parses one record's text (read at `observed_ns`) and filters it; a kept record
    /// comes back with the source's tags, ready for the tokenizer. `shed_level`: 0 sheds
    /// nothing, 1 debug and trace, 2 info too.
    pub fn prepare(
        &mut self,
        text: &str,
        truncated: bool,
        observed_ns: i64,
        shed_level: u8,
    ) -> Result<LogRecord, Dropped> {
        let mut record: LogRecord = self.parser.parse(text, observed_ns);
        record.truncated = truncated;
        self.filters.apply(record, shed_level)
    }
}

impl Filters {
    /// Filters one parsed record; a kept one comes back with the tags, ready for the
    /// tokenizer. `shed_level`: 0 sheds nothing, 1 debug and trace, 2 info too.
    pub fn apply(&mut self, mut record: LogRecord, shed_level: u8) -> Result<LogRecord, Dropped> {
        let class = class_of(record.level);
        let dropped = |reason| Dropped {
            reason,
            class,
            parse_failed: record.parse_failed,
        };
        if let Some(min) = self.min_level
            && record.level != Level::Unknown
            && record.level < min
        {
            return Err(dropped("min_level"));
        }
        if let Some(set) = &self.drop
            && set.is_match(&record.message)
        {
            return Err(dropped("drop_rule"));
        }
        if let Some((fraction, credit)) = self.sample.get_mut(&record.level) {
            *credit += *fraction;
            if *credit < 1.0 {
                return Err(dropped("sampled"));
            }
            *credit -= 1.0;
        }
        if sheds(class, shed_level) {
            return Err(dropped("shed"));
        }
        record
            .attributes
            .extend(self.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(record)
    }
}

/// Whether `shed_level` sheds records of `class`.
fn sheds(class: Class, shed_level: u8) -> bool {
    match class {
        Class::LogsDebug => shed_level >= 1,
        Class::LogsInfo => shed_level >= 2,
        _ => false,
    }
}

/// The pipeline (see the module docs).
#[derive(Debug)]
pub struct LogsPipeline {
    sources: Vec<Source>,
    /// Where the sources' positions files are.
    state_dir: PathBuf,
    batcher: Batcher,
    tokenizer: Tokenizer,
    key: KeyFile,
    key_checked: Instant,
    queue: SharedQueue,
    queue_max: u64,
    wake: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    shed_hint: Arc<AtomicU8>,
    /// 0 none, 1 debug, 2 info: what this step sheds.
    shed_level: u8,
    /// The stages OTLP records pass.
    otlp_filters: Filters,
}

/// The host's name, for every record's resource.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl LogsPipeline {
    /// Builds the pipeline: loads the tokenization key (no key, no logs: PII must never
    /// ship untokenized), compiles parsers and patterns, opens the positions.
    pub fn new(
        config: &AgentConfig,
        host_labels: &[(String, String)],
        queue: SharedQueue,
        wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
        shed_hint: Arc<AtomicU8>,
    ) -> anyhow::Result<Self> {
        let (key, tokenizer) = config.load_tokenizer("logs")?;
        let mut sources = Vec::with_capacity(config.logs.len());
        let state_dir = config.queue.dir.join("positions");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let services: Vec<String> = config.logs.iter().map(|s| s.service.clone()).collect();
        let mut batcher = Batcher::new(limits(), &services, &host_name(), host_labels);
        for (i, source) in config.logs.iter().enumerate() {
            let positions =
                super::tail::position::file_for(&state_dir, &source.service, &source.path);
            super::tail::position::adopt_numbered(&state_dir, i, &source.service, &positions);
            sources.push(
                build_source(source, positions, &mut batcher)
                    .with_context(|| format!("logs[{i}] ({})", source.path))?,
            );
        }
        Ok(LogsPipeline {
            sources,
            state_dir,
            batcher,
            tokenizer,
            key,
            key_checked: Instant::now(),
            queue,
            queue_max: config.queue.max_bytes,
            wake,
            telemetry,
            shed_hint,
            shed_level: 0,
            otlp_filters: Filters::default(),
        })
    }

    /// The directories to watch for events.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.sources
            .iter()
            .map(|s| s.tailer.dir().to_path_buf())
            .collect()
    }

    /// Runs until `stop`, waking on `events` or every [`POLL_INTERVAL`]; queues what
    /// is open before it returns. The pipeline is shared with the OTLP receivers, which
    /// lock it between two rounds.
    pub fn run(
        pipeline: &std::sync::Mutex<LogsPipeline>,
        stop: &AtomicBool,
        events: &std::sync::mpsc::Receiver<crate::logs::tail::WatchEvent>,
    ) {
        let lock = || {
            pipeline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        while !stop.load(Ordering::Relaxed) {
            let behind = {
                let mut p = lock();
                while let Ok(event) = events.try_recv() {
                    p.on_event(event);
                }
                p.step(Instant::now());
                // A file with more to read than one round takes goes on at once.
                p.sources.iter().any(|s| s.tailer.behind())
            };
            if !behind && let Ok(event) = events.recv_timeout(POLL_INTERVAL) {
                lock().on_event(event);
            }
        }
        lock().finish();
    }

    /// Hands a rename in a watched directory to the tailers of that directory.
    pub fn on_event(&mut self, event: crate::logs::tail::WatchEvent) {
        if let crate::logs::tail::WatchEvent::Renamed { dir, from, to } = event {
            for source in &mut self.sources {
                if source.tailer.dir() == dir {
                    source.tailer.renamed(&from, &to);
                }
            }
        }
    }

    /// One round: checks the key, reads every source, processes what came, and
    /// queues the batches that are due. Returns the lines read.
    pub fn step(&mut self, now: Instant) -> usize {
        if now.saturating_duration_since(self.key_checked) >= KEY_CHECK_EVERY {
            self.key_checked = now;
            match self.key.reload_if_changed() {
                Ok(true) => {
                    self.tokenizer.set_key(self.key.key().clone());
                    tracing::info!(
                        key_id = self.tokenizer.key_id(),
                        "tokenization key reloaded"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "new tokenization key does not load; keeping the current one")
                }
            }
        }
        self.shed_level = self.shed_level_now();
        let observed = now_ns();
        let mut lines: Vec<Line> = Vec::new();
        let mut read = 0;
        for i in 0..self.sources.len() {
            lines.clear();
            self.sources[i].tailer.poll(now, &mut lines);
            let lost = self.sources[i].tailer.take_lost_bytes();
            if lost > 0 {
                self.telemetry.logs_lost_bytes(lost);
            }
            read += lines.len();
            for line in lines.drain(..) {
                self.line(i, line, now, observed);
            }
            // Multi-line records that waited long enough are complete.
            let due: Vec<(FileId, String)> = self.sources[i]
                .files
                .iter_mut()
                .filter_map(|(id, st)| {
                    let text = st.joiner.as_mut()?.flush_due(now)?;
                    st.pending_from = None;
                    Some((*id, text))
                })
                .collect();
            for (_, text) in due {
                self.record(i, &text, false, now, observed);
            }
        }
        let closed = self.batcher.due(now);
        if !closed.is_empty() {
            self.queue_all(closed);
        }
        read
    }

    /// Shutdown: joins what is pending and queues every open batch.
    pub fn finish(&mut self) {
        let now = Instant::now();
        let observed = now_ns();
        for i in 0..self.sources.len() {
            self.finish_source(i, now, observed);
        }
        self.queue_all(Vec::new());
    }

    /// Reload: swaps in the sources, stages and tokenizer of `config`, between two
    /// rounds (the caller holds the pipeline). Everything that can fail is built first;
    /// on an error nothing has changed. Then the records of a source going away (or of
    /// one whose multi-line rule changes) that were still being joined are finished,
    /// every open batch is queued and every position committed, so no line read so far
    /// is lost or read again; a source whose path, service and tail settings are the same
    /// keeps its open files and positions.
    pub fn reconfigure(&mut self, config: &AgentConfig) -> anyhow::Result<Reconfigured> {
        let (key, tokenizer) = config.load_tokenizer("logs")?;
        let mut taken = vec![false; self.sources.len()];
        let mut plan = Vec::with_capacity(config.logs.len());
        for (i, new) in config.logs.iter().enumerate() {
            let tail = tail_config(new);
            let same = self.sources.iter().enumerate().position(|(j, old)| {
                !taken[j]
                    && old.tail.glob == tail.glob
                    && old.tail.read_existing_from_start == tail.read_existing_from_start
                    && old.tail.max_line_bytes == tail.max_line_bytes
                    && self.batcher.service_name(old.service) == Some(new.service.as_str())
            });
            let stages = Stages::new(new).with_context(|| format!("logs[{i}] ({})", new.path))?;
            plan.push(match same {
                Some(j) => {
                    taken[j] = true;
                    Planned::Keep(j, Box::new(stages), multiline_of(new))
                }
                None => Planned::New(Box::new(
                    build_source(
                        new,
                        super::tail::position::file_for(&self.state_dir, &new.service, &new.path),
                        &mut self.batcher,
                    )
                    .with_context(|| format!("logs[{i}] ({})", new.path))?,
                )),
            });
        }
        // From here on nothing fails.
        let mut finishing = Vec::new();
        for (j, kept) in taken.iter().enumerate() {
            let rule_changes = plan.iter().any(|p| {
                matches!(p, Planned::Keep(k, _, multiline) if *k == j && *multiline != self.sources[j].multiline)
            });
            if !kept || rule_changes {
                finishing.push(j);
            }
        }
        let now = Instant::now();
        let observed = now_ns();
        for j in finishing {
            self.finish_source(j, now, observed);
        }
        self.queue_all(Vec::new());

        let old_dirs = self.dirs();
        let mut old: Vec<Option<Source>> = std::mem::take(&mut self.sources)
            .into_iter()
            .map(Some)
            .collect();
        let mut out = Reconfigured::default();
        for planned in plan {
            match planned {
                Planned::Keep(j, stages, multiline) => {
                    let Some(mut source) = old[j].take() else {
                        continue;
                    };
                    source.stages = *stages;
                    if source.multiline != multiline {
                        source.files.values_mut().for_each(|f| f.joiner = None);
                        source.multiline = multiline;
                    }
                    out.kept += 1;
                    self.sources.push(source);
                }
                Planned::New(source) => {
                    out.added.push(source.tail.glob.clone());
                    self.sources.push(*source);
                }
            }
        }
        out.removed = old.into_iter().flatten().map(|s| s.tail.glob).collect();
        out.new_dirs = self
            .dirs()
            .into_iter()
            .filter(|d| !old_dirs.contains(d))
            .collect();
        out.new_dirs.sort();
        out.new_dirs.dedup();
        self.tokenizer = tokenizer;
        self.key = key;
        self.key_checked = Instant::now();
        Ok(out)
    }

    /// Finishes the records of source `i` that are still being joined.
    fn finish_source(&mut self, i: usize, now: Instant, observed: i64) {
        let pending: Vec<String> = self.sources[i]
            .files
            .values_mut()
            .filter_map(|st| {
                let text = st.joiner.as_mut()?.flush()?;
                st.pending_from = None;
                Some(text)
            })
            .collect();
        for text in pending {
            self.record(i, &text, false, now, observed);
        }
    }

    fn shed_level_now(&self) -> u8 {
        let hint = self.shed_hint.load(Ordering::Relaxed);
        let fill = {
            let q = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.total_bytes() as f64 / self.queue_max.max(1) as f64
        };
        let by_fill = if fill >= SHED_INFO_AT {
            2
        } else if fill >= SHED_DEBUG_AT {
            1
        } else {
            0
        };
        hint.max(by_fill)
    }

    fn line(&mut self, i: usize, line: Line, now: Instant, observed: i64) {
        if line.truncated {
            self.telemetry.log_truncated();
        }
        let start = line.end_offset.saturating_sub(line.text.len() as u64 + 1);
        let Source {
            multiline, files, ..
        } = &mut self.sources[i];
        let st = files.entry(line.file).or_default();
        let mut complete: Vec<String> = Vec::new();
        match (multiline.as_ref(), st.joiner.as_mut()) {
            (None, _) => complete.push(line.text),
            (Some((start_re, max_lines, timeout)), None) => {
                match Multiline::new(start_re, *max_lines, *timeout) {
                    Ok(mut joiner) => {
                        complete.extend(joiner.push(&line.text, now));
                        st.joiner = Some(joiner);
                        st.pending_from = Some(start);
                    }
                    // Checked when the config was loaded; a line is never lost over it.
                    Err(_) => complete.push(line.text),
                }
            }
            (Some(_), Some(joiner)) => {
                let done = joiner.push(&line.text, now);
                if done.is_some() || st.pending_from.is_none() {
                    st.pending_from = Some(start);
                }
                complete.extend(done);
                if let Some(text) = joiner.flush_due(now) {
                    // The bound on lines was reached with this one.
                    st.pending_from = None;
                    complete.push(text);
                }
            }
        }
        st.last_end = line.end_offset;
        for text in complete {
            self.record(i, &text, line.truncated, now, observed);
        }
    }

    fn record(&mut self, i: usize, text: &str, truncated: bool, now: Instant, observed: i64) {
        let prepared = self.sources[i]
            .stages
            .prepare(text, truncated, observed, self.shed_level);
        let parse_failed = match &prepared {
            Ok(record) => record.parse_failed,
            Err(dropped) => dropped.parse_failed,
        };
        if parse_failed {
            self.telemetry.log_parse_failed();
        }
        let mut record = match prepared {
            Ok(record) => record,
            Err(dropped) => {
                self.telemetry.log_dropped(dropped.reason, dropped.class);
                return;
            }
        };
        let class = class_of(record.level);
        match self.tokenizer.scrub_fields(
            &mut record.message,
            record.trace_id.as_mut(),
            &mut record.attributes,
        ) {
            Verdict::Drop { .. } => {
                self.telemetry.log_dropped("pii_drop", class);
                return;
            }
            Verdict::Keep { replaced } => {
                if replaced > 0 {
                    self.telemetry.pii_replaced(replaced as u64);
                }
            }
        }
        self.telemetry.logs_queued(Origin::File, record.level, 1);
        let service = self.sources[i].service;
        self.telemetry
            .taps()
            .log(self.batcher.service_name(service).unwrap_or(""), &record);
        if let Some(closed) = self.batcher.add(service, &record, now) {
            self.queue_all(vec![closed]);
        }
    }

    /// Takes records that arrive already structured (OTLP), past the parse stage: they
    /// pass the same filters, shedding, enrichment and tokenization as a file's, then
    /// every open batch is queued, so what this returns as queued is durable (the
    /// receiver answers only then). When the pipeline is shedding the class of any of
    /// them, none is taken (`shedding`): the client keeps them and retries.
    pub fn offer_structured(
        &mut self,
        service: &str,
        records: Vec<LogRecord>,
        now: Instant,
    ) -> StructuredOutcome {
        let mut out = StructuredOutcome::default();
        self.shed_level = self.shed_level_now();
        if self.shed_level > 0
            && records
                .iter()
                .any(|r| sheds(class_of(r.level), self.shed_level))
        {
            out.shedding = true;
            return out;
        }
        let service = self.batcher.service(service);
        let mut closed = Vec::new();
        for record in records {
            let class = class_of(record.level);
            let mut record = match self.otlp_filters.apply(record, self.shed_level) {
                Ok(record) => record,
                Err(dropped) => {
                    self.telemetry.log_dropped(dropped.reason, dropped.class);
                    out.dropped += 1;
                    continue;
                }
            };
            match self.tokenizer.scrub_fields(
                &mut record.message,
                record.trace_id.as_mut(),
                &mut record.attributes,
            ) {
                Verdict::Drop { .. } => {
                    self.telemetry.log_dropped("pii_drop", class);
                    out.dropped += 1;
                    continue;
                }
                Verdict::Keep { replaced } => {
                    if replaced > 0 {
                        self.telemetry.pii_replaced(replaced as u64);
                    }
                }
            }
            self.telemetry.logs_queued(Origin::Otlp, record.level, 1);
            out.queued += 1;
            self.telemetry
                .taps()
                .log(self.batcher.service_name(service).unwrap_or(""), &record);
            closed.extend(self.batcher.add(service, &record, now));
        }
        if out.queued > 0 {
            self.queue_all(closed);
        }
        out
    }

    /// Queues `closed` and every other open batch, then commits the positions they
    /// make durable and wakes the sender.
    fn queue_all(&mut self, mut closed: Vec<Closed>) {
        closed.extend(self.batcher.flush());
        if !closed.is_empty() {
            let figures = {
                let mut q = self
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for batch in &closed {
                    match q.push(batch.class, &batch.body) {
                        Ok(shed) if shed.records > 0 => tracing::warn!(
                            records = shed.records,
                            "disk queue at its bound: oldest low-priority batches shed"
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, records = batch.records, "cannot queue a log batch; it is lost")
                        }
                    }
                }
                q.figures()
            };
            self.telemetry.set_queue(&figures);
            self.wake.notify_one();
        }
        for source in &mut self.sources {
            let done: HashMap<FileId, u64> = source
                .files
                .iter()
                .map(|(id, st)| (*id, st.pending_from.unwrap_or(st.last_end)))
                .collect();
            source.tailer.commit(&done);
        }
    }
}

fn limits() -> BatchLimits {
    super::ship::DEFAULT_LIMITS
}

fn tail_config(source: &LogSource) -> TailConfig {
    TailConfig {
        glob: source.path.clone(),
        read_existing_from_start: source.read_existing_from_start,
        max_line_bytes: source.max_line_bytes,
        partial_flush: Duration::from_secs(5),
    }
}

fn multiline_of(source: &LogSource) -> Option<(String, usize, Duration)> {
    source
        .multiline_start
        .clone()
        .map(|s| (s, source.multiline_max_lines, source.multiline_timeout))
}

fn build_source(
    source: &LogSource,
    positions: PathBuf,
    batcher: &mut Batcher,
) -> anyhow::Result<Source> {
    let tail = tail_config(source);
    let tailer = Tailer::new(tail.clone(), positions)?;
    Ok(Source {
        tailer,
        tail,
        multiline: multiline_of(source),
        files: HashMap::new(),
        stages: Stages::new(source)?,
        service: batcher.service(&source.service),
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

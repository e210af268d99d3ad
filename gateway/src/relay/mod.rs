//! `edge-gateway relay`: reads the metrics stream from Kinesis and forwards its records
//! (snappy `WriteRequest`s, merged into as few requests as `max_batch_bytes` allows) to a
//! remote_write target (Amazon Managed Prometheus with SigV4, Mimir, a stock Prometheus).
//!
//! - **Shards**: listed every [`DISCOVER_EVERY`]; each shard this relay reads has its own
//!   task, so shards go in parallel and a shard's records in order. A child shard (after
//!   a split or merge) starts only once its parents are finished (see
//!   [`ready_to_start`]), at the start of the child, so a host's samples stay in order
//!   across a reshard.
//! - **Who reads what**: with `leases`, relays share the stream through a DynamoDB lease
//!   table ([`leases`]): each holds about shards / relays, renews its leases every third
//!   of the timeout, takes over leases not renewed for the timeout, and writes a
//!   checkpoint only while it holds the lease. With `checkpoint: FILE`, one relay reads
//!   every shard.
//! - **At least once**: a shard's checkpoint moves only after the target accepted the
//!   request (or refused it for good with a 4xx other than 429, which is counted and
//!   skipped). A restart, or another relay taking the lease over, resumes after the
//!   checkpoint; at most the request in flight is sent again.
//! - **Kinesis limits**: a shard is polled at most five times a second, once a second
//!   when it is caught up; `ProvisionedThroughputExceeded` backs off; an expired
//!   iterator is acquired again from the checkpoint.

pub mod checkpoint;
pub mod leases;
mod shard;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Checkpoints, RelayConfig, StartAt};
use crate::sink::remote_write::forward::Forwarder;
use crate::telemetry::Telemetry;
use crate::telemetry::{
    RELAY_LEASE_STEALS_TOTAL, RELAY_LEASES_HELD, RELAY_LEASES_LOST_TOTAL, RELAY_RETRIES_TOTAL,
    RELAY_SHARDS_READING, labels,
};
use checkpoint::{Checkpoint, CheckpointStore, FileCheckpoints};
use leases::{Lease, LeaseTable, Take};

/// How often the shards are listed.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(5);

/// A shard as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id.
    pub id: String,
    /// The shard it was split from, or the first of the two it was merged from.
    pub parent: Option<String>,
    /// The second shard of a merge.
    pub adjacent_parent: Option<String>,
    /// Set once the shard is closed: its last sequence number.
    pub ending: Option<String>,
}

impl ShardInfo {
    fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent
            .as_deref()
            .into_iter()
            .chain(self.adjacent_parent.as_deref())
    }
}

/// Whether a shard with these parents may be read now: every parent still listed is
/// finished. A parent no longer listed has expired from the stream: nothing of it is
/// left to read.
pub fn ready_to_start<'a>(
    mut parents: impl Iterator<Item = &'a str>,
    listed: &HashMap<String, ShardInfo>,
    finished: &HashSet<String>,
) -> bool {
    parents.all(|p| !listed.contains_key(p) || finished.contains(p))
}

/// Compares two Kinesis sequence numbers (decimal, up to 128 bits, no leading zeros).
pub fn sequence_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Where a shard without a checkpoint starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    After(String),
    TrimHorizon,
    Latest,
}

/// A shard reader and the switch that stops it.
struct Running {
    handle: JoinHandle<shard::End>,
    stop: watch::Sender<bool>,
}

/// The relay's shared state.
#[derive(Debug)]
pub struct Relay {
    kinesis: Client,
    config: RelayConfig,
    forwarder: Forwarder,
    store: Arc<dyn CheckpointStore>,
    leases: Option<Arc<LeaseTable>>,
    /// Self-metrics.
    pub telemetry: Telemetry,
    /// Closed shards' last sequence numbers, from the latest listing.
    closed: Mutex<HashMap<String, String>>,
    /// When the shards were last listed successfully.
    listed_at: Mutex<Option<Instant>>,
}

/// A relay's id in the lease table: host, process and a random part, so a restarted
/// relay is a new one (its old leases expire and are taken over).
fn relay_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".into());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

impl Relay {
    /// Connects to Kinesis and the target and opens the checkpoints (the file, or the
    /// lease table, created if missing).
    pub async fn new(config: RelayConfig) -> anyhow::Result<Arc<Relay>> {
        let sdk = crate::aws::sdk_config(&config.region, config.endpoint_url.as_deref()).await;
        let (store, leases): (Arc<dyn CheckpointStore>, _) = match &config.checkpoints {
            Checkpoints::File(path) => {
                (Arc::new(FileCheckpoints::open(path, &config.stream)?), None)
            }
            Checkpoints::Leases(l) => {
                let table = Arc::new(
                    LeaseTable::open(
                        aws_sdk_dynamodb::Client::new(&sdk),
                        &l.table,
                        &config.stream,
                        &relay_id(),
                        l.timeout,
                    )
                    .await?,
                );
                tracing::info!(table = %l.table, relay = %table.me(), "sharing the stream through leases");
                (table.clone() as Arc<dyn CheckpointStore>, Some(table))
            }
        };
        let telemetry = Telemetry::default();
        crate::telemetry::set_build_info(&telemetry, "relay");
        Ok(Arc::new(Relay {
            kinesis: Client::new(&sdk),
            forwarder: Forwarder::new(&config.target).await?,
            store,
            leases,
            telemetry,
            closed: Mutex::new(HashMap::new()),
            listed_at: Mutex::new(None),
            config,
        }))
    }

    /// The config.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Whether the stream was listed within the last three rounds (`/ready`).
    pub fn ready(&self) -> bool {
        self.listed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < DISCOVER_EVERY * 3)
    }

    fn ending_of(&self, shard: &str) -> Option<String> {
        self.closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(shard)
            .cloned()
    }

    async fn list_shards(&self) -> anyhow::Result<Vec<ShardInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                // With a token, ListShards must not name the stream.
                Some(t) => self.kinesis.list_shards().next_token(t),
                None => self.kinesis.list_shards().stream_name(&self.config.stream),
            };
            let page = request.send().await.map_err(|e| {
                anyhow::anyhow!(
                    "ListShards {}: {}",
                    self.config.stream,
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                )
            })?;
            for s in page.shards() {
                out.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parent: s.parent_shard_id().map(str::to_string),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                    ending: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .map(str::to_string),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Lists the shards and notes which are closed; `None` (counted, logged) if the
    /// listing failed.
    async fn discover(&self) -> Option<HashMap<String, ShardInfo>> {
        match self.list_shards().await {
            Ok(shards) => {
                *self
                    .listed_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                let mut closed = self
                    .closed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                closed.clear();
                for s in &shards {
                    if let Some(end) = &s.ending {
                        closed.insert(s.id.clone(), end.clone());
                    }
                }
                Some(shards.into_iter().map(|s| (s.id.clone(), s)).collect())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the shards; retrying");
                self.retried("list_shards");
                None
            }
        }
    }

    fn retried(&self, reason: &str) {
        self.telemetry.add(
            &RELAY_RETRIES_TOTAL,
            labels(&[("shard", ""), ("reason", reason)]),
            1.0,
        );
    }

    fn start_reader(
        self: &Arc<Self>,
        running: &mut HashMap<String, Running>,
        shard: &str,
        position: Position,
    ) {
        tracing::info!(shard = %shard, ?position, "reading shard");
        let (stop, stop_rx) = watch::channel(false);
        let reader = shard::Reader::new(self.clone(), shard.to_string(), position);
        running.insert(
            shard.to_string(),
            Running {
                handle: tokio::spawn(reader.run(stop_rx)),
                stop,
            },
        );
    }

    /// Where a shard starts: after its checkpoint; a child at its start (its parents
    /// were read); a root shard without one as `start` says.
    fn position(&self, checkpoint: Option<&str>, has_parents: bool) -> Position {
        match checkpoint {
            Some(seq) => Position::After(seq.to_string()),
            None if has_parents => Position::TrimHorizon,
            None => match self.config.start {
                StartAt::TrimHorizon => Position::TrimHorizon,
                StartAt::Latest => Position::Latest,
            },
        }
    }

    /// Runs until `shutdown` turns true; then stops every shard reader (a request in
    /// flight is not checkpointed, so it is sent again after a restart) and, with
    /// leases, gives its leases back so other relays take them at once.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        match self.leases.clone() {
            Some(table) => self.run_leased(table, shutdown).await,
            None => self.run_alone(shutdown).await,
        }
    }

    /// Reaps readers that ended: their shards and how they ended.
    async fn reap(running: &mut HashMap<String, Running>) -> Vec<(String, Option<shard::End>)> {
        let ended: Vec<String> = running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ended {
            if let Some(r) = running.remove(&id) {
                match r.handle.await {
                    Ok(end) => {
                        if end == shard::End::Finished {
                            tracing::info!(shard = %id, "shard finished");
                        }
                        out.push((id, Some(end)));
                    }
                    Err(e) => {
                        tracing::error!(shard = %id, error = %e, "shard reader failed; it restarts");
                        out.push((id, None));
                    }
                }
            }
        }
        out
    }

    async fn stop_all(running: HashMap<String, Running>) {
        for r in running.values() {
            let _ = r.stop.send(true);
        }
        for (id, r) in running {
            if tokio::time::timeout(Duration::from_secs(15), r.handle)
                .await
                .is_err()
            {
                tracing::warn!(shard = %id, "shard reader did not stop in 15 s");
            }
        }
    }

    /// One relay, every shard, checkpoints in a file.
    async fn run_alone(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut running: HashMap<String, Running> = HashMap::new();
        loop {
            Self::reap(&mut running).await;
            if let Some(listed) = self.discover().await {
                let checkpoints = self.store.load().await?;
                let finished: HashSet<String> = checkpoints
                    .iter()
                    .filter(|(_, c)| **c == Checkpoint::Finished)
                    .map(|(s, _)| s.clone())
                    .collect();
                let mut shards: Vec<&ShardInfo> = listed.values().collect();
                shards.sort_by(|a, b| a.id.cmp(&b.id));
                for s in shards {
                    if running.contains_key(&s.id)
                        || finished.contains(&s.id)
                        || !ready_to_start(s.parents(), &listed, &finished)
                    {
                        continue;
                    }
                    let checkpoint = match checkpoints.get(&s.id) {
                        Some(Checkpoint::After(seq)) => Some(seq.as_str()),
                        Some(Checkpoint::Finished) => continue,
                        None => None,
                    };
                    let position = self.position(checkpoint, s.parents().next().is_some());
                    self.start_reader(&mut running, &s.id, position);
                }
                self.telemetry
                    .set(&RELAY_SHARDS_READING, String::new(), running.len() as f64);
            }
            tokio::select! {
                _ = tokio::time::sleep(DISCOVER_EVERY) => {}
                _ = shutdown.changed() => break,
            }
        }
        Self::stop_all(running).await;
        Ok(())
    }

    /// Relays sharing the stream through the lease table. Every round (a third of the
    /// lease timeout): renew the leases held, stop the readers of leases lost, list the
    /// shards (every [`DISCOVER_EVERY`]) and add their leases, then take free, expired
    /// or (one) stolen leases towards an even share, and read them.
    async fn run_leased(
        self: Arc<Self>,
        table: Arc<LeaseTable>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let round = (table.timeout() / 3).max(Duration::from_millis(300));
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut listed: HashMap<String, ShardInfo> = HashMap::new();
        let mut listed_at: Option<Instant> = None;
        // Leases another relay asked for: shard → that relay, until the reader stopped.
        let mut handing: HashMap<String, String> = HashMap::new();
        // Renewals run on their own, so a slow scan or take never delays them past the
        // timeout (which would let another relay take a live relay's lease).
        let (renewed_tx, mut renewed_rx) = tokio::sync::mpsc::unbounded_channel();
        let renewer = {
            let table = table.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(round).await;
                    if renewed_tx.send(table.renew().await).is_err() {
                        return;
                    }
                }
            })
        };
        loop {
            for (shard, end) in Self::reap(&mut running).await {
                match end {
                    // Finished (its lease says so) or lost: no longer ours.
                    Some(shard::End::Finished | shard::End::Lost) => table.forget(&shard),
                    // Stopped only on shutdown, or failed: still ours, restarted below.
                    Some(shard::End::Stopped) | None => {}
                }
            }
            let mut renewed = leases::Renewed::default();
            while let Ok(r) = renewed_rx.try_recv() {
                renewed.conflicts.extend(r.conflicts);
                renewed.unrenewed.extend(r.unrenewed);
                renewed.handoffs.extend(r.handoffs);
            }
            for (shard, to) in renewed.handoffs {
                if let Some(r) = running.get(&shard) {
                    // The request in flight is finished and checkpointed first.
                    let _ = r.stop.send(true);
                }
                handing.entry(shard).or_insert(to);
            }
            let ready: Vec<String> = handing
                .keys()
                .filter(|s| !running.contains_key(*s))
                .cloned()
                .collect();
            for shard in ready {
                if let Some(to) = handing.remove(&shard) {
                    match table.hand_over(&shard, &to).await {
                        Ok(()) => tracing::info!(shard = %shard, to = %to, "lease handed over"),
                        Err(e) => {
                            tracing::warn!(shard = %shard, error = %e, "cannot hand the lease over; it expires")
                        }
                    }
                }
            }
            for (shards, reason) in [
                (&renewed.conflicts, "renew_conflict"),
                (&renewed.unrenewed, "not_renewed"),
            ] {
                for shard in shards {
                    self.telemetry.add(
                        &RELAY_LEASES_LOST_TOTAL,
                        labels(&[("reason", reason)]),
                        1.0,
                    );
                    if let Some(r) = running.get(shard) {
                        let _ = r.stop.send(true);
                    }
                    handing.remove(shard);
                }
            }
            if listed_at.is_none_or(|t| t.elapsed() >= DISCOVER_EVERY)
                && let Some(l) = self.discover().await
            {
                listed = l;
                listed_at = Some(Instant::now());
            }
            match self.balance(&table, &listed, &handing, &mut running).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read or take leases; retrying");
                    self.retried("leases");
                }
            }
            self.telemetry
                .set(&RELAY_SHARDS_READING, String::new(), running.len() as f64);
            self.telemetry
                .set(&RELAY_LEASES_HELD, String::new(), table.held().len() as f64);
            tokio::select! {
                _ = tokio::time::sleep(round) => {}
                _ = shutdown.changed() => break,
            }
        }
        renewer.abort();
        Self::stop_all(running).await;
        for shard in table.held() {
            match table.release(&shard).await {
                Ok(()) => tracing::info!(shard = %shard, "lease given back"),
                Err(e) => {
                    tracing::warn!(shard = %shard, error = %e, "cannot give the lease back; it expires")
                }
            }
        }
        self.telemetry.set(&RELAY_LEASES_HELD, String::new(), 0.0);
        Ok(())
    }

    /// Adds leases for new shards, takes this round's share, and makes sure every held
    /// lease has a reader.
    async fn balance(
        self: &Arc<Self>,
        table: &LeaseTable,
        listed: &HashMap<String, ShardInfo>,
        handing: &HashMap<String, String>,
        running: &mut HashMap<String, Running>,
    ) -> anyhow::Result<()> {
        let mut leases = table.scan().await?;
        let missing: Vec<ShardInfo> = listed
            .values()
            .filter(|s| !leases.iter().any(|l| l.shard == s.id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            table.sync(&missing, &leases).await?;
            leases = table.scan().await?;
        }
        let finished: HashSet<String> = leases
            .iter()
            .filter(|l| l.finished)
            .map(|l| l.shard.clone())
            .collect();
        let by_shard: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.shard.as_str(), l)).collect();
        // Before the first listing nothing is known to be finished or expired: wait.
        if listed.is_empty() {
            return Ok(());
        }
        let ready =
            |l: &Lease| ready_to_start(l.parents.iter().map(String::as_str), listed, &finished);
        let held = table.held();
        let takes = leases::plan(table.me(), &leases, &held, &|l| table.expired(l), &ready);
        for take in takes {
            let shard = match take {
                Take::Free(s) => s,
                Take::Steal { shard, from } => {
                    // Asked for: its holder hands it over once its reader stopped.
                    if let Some(lease) = by_shard.get(shard.as_str())
                        && table.request(lease).await?
                    {
                        tracing::info!(shard = %shard, from = %from, "lease asked for, to balance the relays");
                        self.telemetry
                            .add(&RELAY_LEASE_STEALS_TOTAL, String::new(), 1.0);
                    }
                    continue;
                }
            };
            let Some(lease) = by_shard.get(shard.as_str()) else {
                continue;
            };
            match table.take(lease).await? {
                Some(taken) => {
                    tracing::info!(shard = %shard, previous = ?lease.owner, "lease taken");
                    if let Some(r) = running.remove(&shard) {
                        // A reader of an earlier holding still stopping: let it end.
                        let _ = r.stop.send(true);
                        let _ = r.handle.await;
                    }
                    let position =
                        self.position(taken.checkpoint.as_deref(), !taken.parents.is_empty());
                    self.start_reader(running, &shard, position);
                }
                None => tracing::debug!(shard = %shard, "another relay took the lease first"),
            }
        }
        // A held lease whose reader failed: read it again from its checkpoint.
        for shard in table.held() {
            if running.contains_key(&shard) || handing.contains_key(&shard) {
                continue;
            }
            if let Some(l) = by_shard.get(shard.as_str()) {
                let position = self.position(l.checkpoint.as_deref(), !l.parents.is_empty());
                self.start_reader(running, &shard, position);
            }
        }
        Ok(())
    }

    /// The `/metrics` text.
    pub fn render(&self) -> String {
        self.telemetry.render()
    }
}

/// Serves `/metrics`, `/healthz` and `/ready` (plain HTTP) until `stop` turns true.
pub async fn serve_metrics(
    relay: Arc<Relay>,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
) {
    use edge_daemon_kit::serve::{serve_http1, text};
    use http::StatusCode;
    serve_http1(listener, stop, "relay admin", move |req, _peer| {
        let relay = relay.clone();
        async move {
            match req.uri().path() {
                "/metrics" => {
                    let mut answer = text(StatusCode::OK, relay.render());
                    answer.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    answer
                }
                "/healthz" => text(StatusCode::OK, "ok\n"),
                "/ready" if relay.ready() => text(StatusCode::OK, "ready\n"),
                "/ready" => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the stream has not been listed recently\n",
                ),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(
        id: &str,
        parent: Option<&str>,
        adjacent: Option<&str>,
        ending: Option<&str>,
    ) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parent: parent.map(Into::into),
            adjacent_parent: adjacent.map(Into::into),
            ending: ending.map(Into::into),
        }
    }

    #[test]
    fn a_child_waits_for_its_parents() {
        let parent = shard("p", None, None, Some("90"));
        let other = shard("q", None, None, Some("80"));
        let child = shard("c", Some("p"), None, None);
        let merged = shard("m", Some("p"), Some("q"), None);
        let listed: HashMap<String, ShardInfo> = [&parent, &other, &child, &merged]
            .iter()
            .map(|s| (s.id.clone(), (*s).clone()))
            .collect();
        let mut finished = HashSet::new();
        assert!(ready_to_start(parent.parents(), &listed, &finished));
        assert!(!ready_to_start(child.parents(), &listed, &finished));
        finished.insert("p".to_string());
        assert!(ready_to_start(child.parents(), &listed, &finished));
        assert!(
            !ready_to_start(merged.parents(), &listed, &finished),
            "both parents of a merge"
        );
        finished.insert("q".to_string());
        assert!(ready_to_start(merged.parents(), &listed, &finished));
        // A parent no longer listed has expired.
        assert!(ready_to_start(
            child.parents(),
            &HashMap::new(),
            &HashSet::new()
        ));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(sequence_cmp("9", "10"), Less);
        assert_eq!(
            sequence_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Less
        );
        assert_eq!(sequence_cmp("77", "77"), Equal);
    }
}

//! `edge-gateway relay`: reads the metrics stream from Kinesis and forwards every record,
//! as it is (a snappy `WriteRequest`), to a remote_write target (Amazon Managed
//! Prometheus with SigV4, Mimir, a stock Prometheus).
//!
//! - **Shards**: listed every [`DISCOVER_EVERY`]; each shard this relay owns is read by
//!   its own task, so shards go in parallel and a shard's records in order. A child
//!   shard (after a split or merge) starts only once its parents are finished (see
//!   [`ready_to_start`]), at the start of the child, so a host's samples stay in order
//!   across a reshard.
//! - **Ownership**: with `instance_count` relays, a shard belongs to instance
//!   `fnv1a(shard id) % instance_count`: no coordinator, and every relay computes the
//!   same split.
//! - **At least once**: a shard's checkpoint moves only after the target accepted the
//!   record (or refused it for good with a 4xx other than 429, which is counted and
//!   skipped). A restart resumes after the checkpoint; at most the record in flight is
//!   sent again.
//! - **Kinesis limits**: a shard is polled at most five times a second, once a second
//!   when it is caught up; `ProvisionedThroughputExceeded` backs off; an expired
//!   iterator is acquired again from the checkpoint.

pub mod checkpoint;
mod shard;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use tokio::sync::watch;

use crate::config::{RelayConfig, StartAt};
use crate::sink::remote_write::forward::Forwarder;
use crate::telemetry::Telemetry;
use crate::telemetry::{RELAY_RETRIES_TOTAL, RELAY_SHARDS_READING};
use checkpoint::{Checkpoint, CheckpointStore, FileCheckpoints};

/// How often the shards are listed.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// A parent shard owned by another relay: how long after it is seen closed its
/// children wait, since this relay cannot see the other's checkpoint.
pub const FOREIGN_PARENT_GRACE: Duration = Duration::from_secs(30);

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

/// Whether `shard_id` is this relay's: FNV-1a (64-bit) of the id, modulo the count.
pub fn owns(shard_id: &str, index: u32, count: u32) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shard_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % u64::from(count.max(1)) == u64::from(index)
}

/// Whether `shard` may be read now. Every parent still listed must be finished: one of
/// ours by our checkpoint; one of another relay's (which we cannot see) once it is
/// closed and [`FOREIGN_PARENT_GRACE`] has passed since we first saw it closed, time
/// for its owner, who follows the tip, to read its last records. A parent no longer
/// listed has expired from the stream: nothing of it is left to read.
pub fn ready_to_start(
    shard: &ShardInfo,
    listed: &HashMap<String, ShardInfo>,
    finished: &HashSet<String>,
    mine: &dyn Fn(&str) -> bool,
    closed_since: &HashMap<String, Instant>,
    now: Instant,
) -> bool {
    shard.parents().all(|p| {
        let Some(parent) = listed.get(p) else {
            return true;
        };
        if finished.contains(p) {
            return true;
        }
        if mine(p) || parent.ending.is_none() {
            return false;
        }
        closed_since
            .get(p)
            .is_some_and(|since| now.duration_since(*since) >= FOREIGN_PARENT_GRACE)
    })
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

/// The relay's shared state.
#[derive(Debug)]
pub struct Relay {
    kinesis: Client,
    config: RelayConfig,
    forwarder: Forwarder,
    store: Arc<dyn CheckpointStore>,
    /// Self-metrics.
    pub telemetry: Telemetry,
    /// Closed shards' last sequence numbers, from the latest listing.
    closed: Mutex<HashMap<String, String>>,
    /// When the shards were last listed successfully.
    listed_at: Mutex<Option<Instant>>,
}

impl Relay {
    /// Connects to Kinesis and the target and opens the checkpoints.
    pub async fn new(config: RelayConfig) -> anyhow::Result<Arc<Relay>> {
        let sdk = crate::aws::sdk_config(&config.region, config.endpoint_url.as_deref()).await;
        let store = Arc::new(FileCheckpoints::open(&config.checkpoint, &config.stream)?);
        let telemetry = Telemetry::default();
        crate::telemetry::set_build_info(&telemetry, "relay");
        Ok(Arc::new(Relay {
            kinesis: Client::new(&sdk),
            forwarder: Forwarder::new(&config.target).await?,
            store,
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

    /// Runs until `shutdown` turns true; then stops every shard reader (the record in
    /// flight is not checkpointed, so it is sent again after a restart).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut running: HashMap<String, tokio::task::JoinHandle<shard::End>> = HashMap::new();
        let mut closed_since: HashMap<String, Instant> = HashMap::new();
        let (index, count) = (self.config.instance_index, self.config.instance_count);
        let mine = move |id: &str| owns(id, index, count);
        loop {
            // Reap readers that ended.
            let ended: Vec<String> = running
                .iter()
                .filter(|(_, h)| h.is_finished())
                .map(|(id, _)| id.clone())
                .collect();
            for id in ended {
                if let Some(handle) = running.remove(&id) {
                    match handle.await {
                        // Its checkpoint says so from now on.
                        Ok(shard::End::Finished) => tracing::info!(shard = %id, "shard finished"),
                        Ok(shard::End::Stopped) => {}
                        Err(e) => {
                            tracing::error!(shard = %id, error = %e, "shard reader failed; it restarts")
                        }
                    }
                }
            }
            match self.list_shards().await {
                Ok(shards) => {
                    *self
                        .listed_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                    let now = Instant::now();
                    let listed: HashMap<String, ShardInfo> =
                        shards.iter().map(|s| (s.id.clone(), s.clone())).collect();
                    {
                        let mut closed = self
                            .closed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        closed.clear();
                        for s in &shards {
                            if let Some(end) = &s.ending {
                                closed.insert(s.id.clone(), end.clone());
                                closed_since.entry(s.id.clone()).or_insert(now);
                            }
                        }
                    }
                    let checkpoints = self.store.load().await?;
                    let finished: HashSet<String> = checkpoints
                        .iter()
                        .filter(|(_, c)| **c == Checkpoint::Finished)
                        .map(|(s, _)| s.clone())
                        .collect();
                    for s in &shards {
                        if !mine(&s.id) || running.contains_key(&s.id) || finished.contains(&s.id) {
                            continue;
                        }
                        if !ready_to_start(s, &listed, &finished, &mine, &closed_since, now) {
                            continue;
                        }
                        let position = match checkpoints.get(&s.id) {
                            Some(Checkpoint::After(seq)) => Position::After(seq.clone()),
                            Some(Checkpoint::Finished) => continue,
                            // A child is read from its start: its parents were read.
                            None if s.parents().next().is_some() => Position::TrimHorizon,
                            None => match self.config.start {
                                StartAt::TrimHorizon => Position::TrimHorizon,
                                StartAt::Latest => Position::Latest,
                            },
                        };
                        tracing::info!(shard = %s.id, ?position, "reading shard");
                        let reader = shard::Reader::new(self.clone(), s.id.clone(), position);
                        running.insert(s.id.clone(), tokio::spawn(reader.run(shutdown.clone())));
                    }
                    self.telemetry
                        .set(&RELAY_SHARDS_READING, String::new(), running.len() as f64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the shards; retrying");
                    self.telemetry.add(
                        &RELAY_RETRIES_TOTAL,
                        crate::telemetry::labels(&[("shard", ""), ("reason", "list_shards")]),
                        1.0,
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(DISCOVER_EVERY) => {}
                _ = shutdown.changed() => break,
            }
        }
        for (id, handle) in running {
            match tokio::time::timeout(Duration::from_secs(15), handle).await {
                Ok(_) => {}
                Err(_) => tracing::warn!(shard = %id, "shard reader did not stop in 15 s"),
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
    serve_http1(listener, stop, "relay admin", move |req| {
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
        let now = Instant::now();
        let all_mine = |_: &str| true;
        let none_mine = |_: &str| false;
        let mut finished = HashSet::new();
        let since: HashMap<String, Instant> =
            [("p".to_string(), now), ("q".to_string(), now)].into();

        assert!(ready_to_start(
            &parent, &listed, &finished, &all_mine, &since, now
        ));
        assert!(!ready_to_start(
            &child, &listed, &finished, &all_mine, &since, now
        ));
        finished.insert("p".to_string());
        assert!(ready_to_start(
            &child, &listed, &finished, &all_mine, &since, now
        ));
        assert!(
            !ready_to_start(&merged, &listed, &finished, &all_mine, &since, now),
            "both parents of a merge"
        );
        finished.insert("q".to_string());
        assert!(ready_to_start(
            &merged, &listed, &finished, &all_mine, &since, now
        ));

        // Another relay's parent: closed, then the grace period.
        let finished = HashSet::new();
        assert!(!ready_to_start(
            &child, &listed, &finished, &none_mine, &since, now
        ));
        let later = now + FOREIGN_PARENT_GRACE;
        assert!(ready_to_start(
            &child, &listed, &finished, &none_mine, &since, later
        ));
        // An open foreign parent is never passed.
        let open: HashMap<String, ShardInfo> =
            [("p".to_string(), shard("p", None, None, None))].into();
        assert!(!ready_to_start(
            &child, &open, &finished, &none_mine, &since, later
        ));
        // A parent no longer listed has expired.
        assert!(ready_to_start(
            &child,
            &HashMap::new(),
            &finished,
            &all_mine,
            &since,
            now
        ));
    }

    #[test]
    fn ownership_splits_shards_once_and_roughly_evenly() {
        let ids: Vec<String> = (0..300).map(|i| format!("shardId-{i:012}")).collect();
        let mut per = [0u32; 3];
        for id in &ids {
            let owners: Vec<u32> = (0..3).filter(|i| owns(id, *i, 3)).collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            per[owners[0] as usize] += 1;
        }
        assert!(per.iter().all(|n| (70..=130).contains(n)), "{per:?}");
        assert!(ids.iter().all(|id| owns(id, 0, 1)));
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

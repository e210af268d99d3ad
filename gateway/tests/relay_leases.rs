//! Relays sharing a stream through the DynamoDB lease table, against a real local AWS
//! API server (moto: Kinesis and DynamoDB) and a counting remote_write endpoint that
//! notes which relay sent each sample.
//!
//! Records carry one sample each, `relay_seq_total{host}` = its number `i`, so every
//! sample the endpoint receives names its record; the test knows each record's shard
//! and sequence number from `PutRecords`. Assertions are about counts: every record
//! arrives; duplicates only where the design allows them.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use edge_gateway::relay::ShardInfo;
use edge_gateway::relay::checkpoint::{Checkpoint, CheckpointStore};
use edge_gateway::relay::leases::{self, Lease, LeaseLost, LeaseTable};
use edge_gateway::relay::sequence_cmp;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use edge_tests::gates::metric_sum;
use edge_tests::moto::Moto;
use edge_tests::procs::{Proc, free_port, http_get};
use http_body_util::Full;
use hyper::body::Bytes;
use prost::Message;
use support::AWS_TEST_ENV;

const TABLE: &str = "edge-relay-leases";

/// A sample the endpoint received: from which relay (its URL path), for which record.
#[derive(Clone, Debug)]
struct Got {
    relay: String,
    host: String,
    i: u32,
}

/// A remote_write endpoint that notes every sample, in the order it took them (then
/// answers 2xx, after `delay_ms`). While `hold` is set, requests wait before they are
/// taken (and are counted in `waiting`).
#[derive(Clone)]
struct Target {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    requests: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
    waiting: Arc<AtomicUsize>,
    /// Milliseconds every request is held before it is answered.
    delay_ms: Arc<AtomicUsize>,
}

impl Target {
    async fn start() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let t = Target {
            port: listener.local_addr().expect("addr").port(),
            got: Arc::default(),
            requests: Arc::default(),
            hold: Arc::default(),
            waiting: Arc::default(),
            delay_ms: Arc::default(),
        };
        let server = t.clone();
        tokio::spawn(support::serve_fn(listener, move |parts, body| {
            let t = server.clone();
            async move { Ok(t.answer(parts, body).await) }
        }));
        t
    }

    async fn answer(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> http::Response<Full<Bytes>> {
        let relay = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if self.hold.load(Ordering::SeqCst) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while self.hold.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let decoded = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .ok()
            .and_then(|raw| WriteRequest::decode(raw.as_slice()).ok());
        let Some(request) = decoded else {
            let mut resp = http::Response::new(Full::new(Bytes::from("not a snappy WriteRequest")));
            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
            return resp;
        };
        {
            let mut got = self.got.lock().expect("lock");
            for ts in &request.timeseries {
                let host = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "host")
                    .map(|l| l.value.clone())
                    .unwrap_or_default();
                for s in &ts.samples {
                    got.push(Got {
                        relay: relay.clone(),
                        host: host.clone(),
                        i: s.value as u32,
                    });
                }
            }
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        // Noted before the answer, as a store commits before it answers: a relay killed
        // meanwhile never learns it, and its checkpoint stays before these records.
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::NO_CONTENT;
        resp
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    fn distinct(&self) -> usize {
        self.got()
            .iter()
            .map(|g| g.i)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// A record: a snappy `WriteRequest` with one sample of `relay_seq_total{host}` = `i`.
fn record(host: &str, i: u32) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "relay_seq_total".into(),
                },
                Label {
                    name: "host".into(),
                    value: host.into(),
                },
            ],
            samples: vec![Sample {
                value: f64::from(i),
                timestamp: 1_700_000_000_000 + i64::from(i) * 1000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

/// Where a record went: its shard and sequence number.
type Placed = BTreeMap<u32, (String, String)>;

/// Puts records `from..to` over `hosts` hosts (partition key `game/hN`), `chunk` per
/// `PutRecords`, pausing `gap` between calls.
async fn put(moto: &Moto, from: u32, to: u32, hosts: u32, chunk: u32, gap: Duration) -> Placed {
    let k = moto.kinesis();
    let mut placed = Placed::new();
    let mut i = from;
    while i < to {
        let end = (i + chunk).min(to);
        let entries: Vec<PutRecordsRequestEntry> = (i..end)
            .map(|n| {
                let host = format!("h{}", n % hosts);
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("game/{host}"))
                    .data(Blob::new(record(&host, n)))
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = k
            .put_records()
            .stream_name("metrics")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0), "{out:?}");
        for (n, r) in (i..end).zip(out.records()) {
            placed.insert(
                n,
                (
                    r.shard_id().expect("shard").to_string(),
                    r.sequence_number().expect("seq").to_string(),
                ),
            );
        }
        i = end;
        tokio::time::sleep(gap).await;
    }
    placed
}

fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    dynamodb_at(&moto.url())
}

/// A DynamoDB client for `url`, retrying as the relay's does (the SDK's standard mode).
fn dynamodb_at(url: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Every lease in the table (none before the table exists).
async fn scan(db: &aws_sdk_dynamodb::Client) -> Vec<Lease> {
    match db
        .scan()
        .table_name(TABLE)
        .consistent_read(true)
        .send()
        .await
    {
        Ok(page) => page
            .items()
            .iter()
            .map(|i| leases::parse(i).expect("a lease item"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A relay process and what it is called in the target's URL.
struct RelayProc {
    name: String,
    proc: Proc,
    metrics: u16,
}

impl RelayProc {
    fn start(
        dir: &std::path::Path,
        moto: &Moto,
        target: &Target,
        name: &str,
        timeout: &str,
    ) -> RelayProc {
        let metrics = free_port();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            format!(
                "relay:\n  stream: metrics\n  region: us-east-1\n  endpoint_url: \"{}\"\n  \
                 leases: {{ table: {TABLE}, timeout: {timeout} }}\n  \
                 target: {{ url: \"http://127.0.0.1:{}/write/{name}\" }}\n  \
                 listen: 127.0.0.1:{metrics}\n",
                moto.url(),
                target.port
            ),
        )
        .expect("relay config");
        let proc = Proc::start(
            "edge-gateway",
            &["relay", "--config", &file.display().to_string()],
            AWS_TEST_ENV,
            dir.join(format!("{name}.log")),
        );
        RelayProc {
            name: name.to_string(),
            proc,
            metrics,
        }
    }

    /// Whether `owner` (a lease owner id: host, pid, random) is this relay.
    fn is(&self, owner: &str) -> bool {
        owner.contains(&format!("-{}-", self.proc.id()))
    }

    async fn metric(&self, name: &str, with: &str) -> f64 {
        match http_get(self.metrics, "/metrics").await {
            Ok((200, body)) => metric_sum(&String::from_utf8_lossy(&body), name, with),
            _ => 0.0,
        }
    }
}

fn logs(relays: &[RelayProc]) -> String {
    relays
        .iter()
        .map(|r| format!("--- {}:\n{}", r.name, r.proc.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (generously) for `done`, panicking with `what` and the relays' logs.
async fn wait_until<F, Fut>(what: &str, relays: &[RelayProc], mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 5 minutes; logs:\n{}",
            logs(relays)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether every shard's lease is checkpointed at the last record put into it.
fn all_checkpointed(leases: &[Lease], placed: &Placed) -> bool {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for (shard, seq) in placed.values() {
        let e = last.entry(shard.as_str()).or_insert(seq.as_str());
        if sequence_cmp(seq, e).is_gt() {
            *e = seq.as_str();
        }
    }
    last.iter().all(|(shard, seq)| {
        leases
            .iter()
            .find(|l| l.shard == *shard)
            .and_then(|l| l.checkpoint.as_deref())
            .is_some_and(|c| sequence_cmp(c, seq).is_ge())
    })
}

/// Three relays, four shards, records put while they run; with `kill`, the relay
/// holding the most leases is SIGKILLed mid-stream. Returns nothing: asserts.
async fn three_relays(kill: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    moto.create_stream("metrics", 4).await;
    let db = dynamodb(&moto);
    let target = Target::start().await;
    // Slow enough answers that the killed relay has requests in flight.
    target.delay_ms.store(250, Ordering::SeqCst);
    let mut relays: Vec<RelayProc> = (0..3)
        .map(|n| RelayProc::start(dir.path(), &moto, &target, &format!("r{n}"), "10s"))
        .collect();

    // The table is created on demand; the relays settle at 2, 1, 1.
    wait_until("four leases over three relays", &relays, || async {
        let leases = scan(&db).await;
        let owners: BTreeSet<String> = leases.iter().filter_map(|l| l.owner.clone()).collect();
        leases.len() == 4 && leases.iter().all(|l| l.owner.is_some()) && owners.len() == 3
    })
    .await;

    const N: u32 = 3000;
    let producer = put(&moto, 0, N, 40, 50, Duration::from_millis(100));
    let mut victim: Option<(usize, HashMap<String, Option<String>>)> = None;
    let placed = if kill {
        // Kill once a quarter has arrived, while records are still being put.
        let (placed, ()) = tokio::join!(producer, async {
            wait_until("a quarter of the records", &relays, || async {
                target.distinct() >= (N / 4) as usize
            })
            .await;
            let leases = scan(&db).await;
            let (idx, _) = relays
                .iter()
                .enumerate()
                .map(|(n, r)| {
                    (
                        n,
                        leases
                            .iter()
                            .filter(|l| l.owner.as_deref().is_some_and(|o| r.is(o)))
                            .count(),
                    )
                })
                .max_by_key(|(_, c)| *c)
                .expect("relays");
            relays[idx].proc.kill();
            // Its checkpoints as it left them: nobody takes its leases for 10 s.
            let leases = scan(&db).await;
            let held: HashMap<String, Option<String>> = leases
                .iter()
                .filter(|l| l.owner.as_deref().is_some_and(|o| relays[idx].is(o)))
                .map(|l| (l.shard.clone(), l.checkpoint.clone()))
                .collect();
            assert!(!held.is_empty(), "the killed relay held no lease");
            let at_kill = target.distinct();
            assert!(
                at_kill < N as usize,
                "every record had arrived before the kill ({at_kill})"
            );
            victim = Some((idx, held));
        });
        placed
    } else {
        producer.await
    };
    assert_eq!(placed.len(), N as usize);

    // Everything arrives and every shard is checkpointed at its last record, so nothing
    // more will be sent.
    wait_until(
        "every record forwarded and checkpointed",
        &relays,
        || async { target.distinct() == N as usize && all_checkpointed(&scan(&db).await, &placed) },
    )
    .await;

    let got = target.got();
    let mut times: BTreeMap<u32, usize> = BTreeMap::new();
    for g in &got {
        *times.entry(g.i).or_insert(0) += 1;
    }
    assert_eq!(times.len(), N as usize);
    let duplicated: BTreeSet<u32> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        times.values().all(|n| *n <= 2),
        "a record arrived three times or more"
    );
    match victim {
        None => {
            let senders: Vec<(u32, String, &str)> = got
                .iter()
                .filter(|g| duplicated.contains(&g.i))
                .take(20)
                .map(|g| (g.i, g.relay.clone(), placed[&g.i].0.as_str()))
                .collect();
            assert!(
                duplicated.is_empty(),
                "{} records arrived twice without a kill: {senders:?}; logs:\n{}",
                duplicated.len(),
                logs(&relays)
            );
            for r in &relays {
                assert!(
                    got.iter().any(|g| g.relay == r.name),
                    "{} forwarded nothing; logs:\n{}",
                    r.name,
                    logs(&relays)
                );
            }
        }
        Some((idx, held)) => {
            let name = relays[idx].name.clone();
            // In flight at the kill: what the killed relay delivered past its checkpoints.
            let in_flight: BTreeSet<u32> = got
                .iter()
                .filter(|g| g.relay == name)
                .filter(|g| {
                    let (shard, seq) = &placed[&g.i];
                    match held.get(shard) {
                        Some(Some(cp)) => sequence_cmp(seq, cp).is_gt(),
                        Some(None) => true,
                        None => false,
                    }
                })
                .map(|g| g.i)
                .collect();
            assert!(
                got.iter().any(|g| g.relay == name),
                "the killed relay had forwarded nothing"
            );
            // Each such record with who sent it, its shard and sequence number.
            let unexplained: Vec<(u32, Vec<&str>, &str, &str)> = duplicated
                .difference(&in_flight)
                .take(20)
                .map(|i| {
                    let senders = got
                        .iter()
                        .filter(|g| g.i == *i)
                        .map(|g| g.relay.as_str())
                        .collect();
                    let (shard, seq) = &placed[i];
                    (*i, senders, shard.as_str(), seq.as_str())
                })
                .collect();
            assert!(
                duplicated.is_subset(&in_flight),
                "duplicates that were not in flight at the kill of {name} (record, senders, \
                 shard, sequence): {unexplained:?} (in flight: {}; checkpoints at the kill: \
                 {held:?}); logs:\n{}",
                in_flight.len(),
                logs(&relays)
            );
            eprintln!(
                "killed {name} holding {} leases: {} records in flight, {} duplicated",
                held.len(),
                in_flight.len(),
                duplicated.len()
            );
            // Its leases went to the two others.
            let leases = scan(&db).await;
            for shard in held.keys() {
                let l = leases.iter().find(|l| &l.shard == shard).expect("lease");
                let owner = l.owner.as_deref().unwrap_or_default();
                assert!(
                    relays
                        .iter()
                        .enumerate()
                        .any(|(n, r)| n != idx && r.is(owner)),
                    "{shard} held by {owner:?} after the kill"
                );
            }
            relays.remove(idx);
        }
    }
    let mut held = 0.0;
    for r in &relays {
        held += r.metric("edge_relay_leases_held", "").await;
        assert_eq!(
            r.metric("edge_relay_checkpoint_conflicts_total", "").await,
            0.0
        );
    }
    assert_eq!(held, 4.0, "leases held by the live relays");
    // Merged: far fewer requests than records.
    let requests = target.requests.load(Ordering::SeqCst);
    assert!(
        requests < got.len(),
        "{requests} requests for {} samples",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_four_shards_exactly_once() {
    three_relays(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_costs_at_most_its_records_in_flight() {
    three_relays(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_shard_is_followed_across_relays_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let db = dynamodb(&moto);
    let target = Target::start().await;
    let mut relays: Vec<RelayProc> = (0..2)
        .map(|n| RelayProc::start(dir.path(), &moto, &target, &format!("r{n}"), "3s"))
        .collect();
    wait_until("one lease each", &relays, || async {
        let leases = scan(&db).await;
        let owners: BTreeSet<String> = leases.iter().filter_map(|l| l.owner.clone()).collect();
        leases.len() == 2 && owners.len() == 2
    })
    .await;
    let mut placed = put(&moto, 0, 200, 20, 50, Duration::ZERO).await;
    wait_until("the first records", &relays, || async {
        target.distinct() == 200
    })
    .await;

    let k = moto.kinesis();
    let shards = k
        .list_shards()
        .stream_name("metrics")
        .send()
        .await
        .expect("list");
    let parent = shards.shards()[0].clone();
    let range = parent.hash_key_range().expect("range");
    let lo: u128 = range.starting_hash_key().parse().expect("hash");
    let hi: u128 = range.ending_hash_key().parse().expect("hash");
    k.split_shard()
        .stream_name("metrics")
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .expect("split");
    placed.extend(put(&moto, 200, 400, 20, 50, Duration::ZERO).await);

    // The parent's holder stops (SIGTERM gives its leases back): the other relay
    // finishes the parent and reads the children, only after the parent is finished.
    let parent_holder = scan(&db)
        .await
        .into_iter()
        .find(|l| l.shard == parent.shard_id())
        .and_then(|l| l.owner)
        .expect("the parent is held");
    let idx = relays
        .iter()
        .position(|r| r.is(&parent_holder))
        .expect("held by one of the relays");
    assert!(
        relays[idx].proc.terminate(),
        "the relay did not stop cleanly"
    );
    let stopped = relays.remove(idx);
    placed.extend(put(&moto, 400, 600, 20, 50, Duration::ZERO).await);
    wait_until(
        "every record, and the children checkpointed",
        &relays,
        || async { target.distinct() == 600 && all_checkpointed(&scan(&db).await, &placed) },
    )
    .await;

    let got = target.got();
    assert_eq!(
        got.len(),
        600,
        "exactly once (a clean stop gives its leases back); logs:\n{}\n--- stopped {}:\n{}",
        logs(&relays),
        stopped.name,
        stopped.proc.log()
    );
    // A host's samples arrive in order across the reshard and across the relays.
    let mut last: HashMap<&str, u32> = HashMap::new();
    for g in &got {
        if let Some(prev) = last.insert(&g.host, g.i) {
            assert!(prev < g.i, "{}: {} after {prev}", g.host, g.i);
        }
    }
    let leases = scan(&db).await;
    let children: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.parents.iter().any(|p| p == parent.shard_id()))
        .collect();
    assert_eq!(children.len(), 2, "{leases:?}");
    assert!(
        leases
            .iter()
            .any(|l| l.shard == parent.shard_id() && l.finished),
        "{leases:?}"
    );
    let other = &relays[0];
    for child in children {
        assert!(
            child.owner.as_deref().is_some_and(|o| other.is(o)),
            "{child:?}"
        );
    }
    // The last records went into the children, read by the relay that did not read
    // the parent first.
    let children_records: Vec<&Got> = got
        .iter()
        .filter(|g| g.i >= 400 && placed[&g.i].0 != parent.shard_id())
        .collect();
    assert!(!children_records.is_empty());
    assert!(children_records.iter().all(|g| g.relay == other.name));
    assert!(
        got.iter()
            .any(|g| g.relay == stopped.name && g.i < 200 && placed[&g.i].0 == parent.shard_id())
    );
}

/// The lease table itself: a checkpoint written with a lease counter that moved is
/// refused by DynamoDB and leaves the checkpoint where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_with_a_stale_lease_counter_is_refused() {
    let moto = Moto::start();
    let db = dynamodb(&moto);
    let table = LeaseTable::open(
        db.clone(),
        TABLE,
        "metrics",
        "relay-a",
        Duration::from_secs(10),
    )
    .await
    .expect("the table is created on demand");
    let shard = ShardInfo {
        id: "shardId-000000000000".into(),
        parent: None,
        adjacent_parent: None,
        ending: None,
    };
    table
        .sync(std::slice::from_ref(&shard), &[])
        .await
        .expect("sync");
    let leases = table.scan().await.expect("scan");
    assert_eq!(leases.len(), 1);
    let taken = table.take(&leases[0]).await.expect("take").expect("free");
    assert_eq!(taken.owner.as_deref(), Some("relay-a"));
    // A second take with the counter seen before fails: someone wrote first.
    assert!(table.take(&leases[0]).await.expect("take").is_none());
    table
        .save(&shard.id, Checkpoint::After("100".into()))
        .await
        .expect("checkpoint while holding the lease");
    assert!(table.renew().await.conflicts.is_empty());

    // Another relay steals: owner and counter move.
    db.update_item()
        .table_name(TABLE)
        .key(leases::KEY, AttributeValue::S(shard.id.clone()))
        .update_expression("SET #o = :thief, #c = #c + :one")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_names("#c", "counter")
        .expression_attribute_values(":thief", AttributeValue::S("relay-b".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .expect("steal");
    let err = table
        .save(&shard.id, Checkpoint::After("200".into()))
        .await
        .expect_err("the conditional write must fail");
    assert!(err.is::<LeaseLost>(), "{err}");
    let now = table.scan().await.expect("scan");
    assert_eq!(
        now[0].checkpoint.as_deref(),
        Some("100"),
        "the checkpoint moved"
    );
    assert_eq!(now[0].owner.as_deref(), Some("relay-b"));
    // Given up: no more writes, and the renewal reports nothing to renew.
    table.forget(&shard.id);
    assert!(table.held().is_empty());
    let loaded = table.load().await.expect("load");
    assert_eq!(
        loaded.get(&shard.id),
        Some(&Checkpoint::After("100".into()))
    );

    // A table holding another stream's leases is refused.
    let other = LeaseTable::open(
        db.clone(),
        TABLE,
        "other",
        "relay-c",
        Duration::from_secs(10),
    )
    .await
    .expect("open");
    let err = other.scan().await.expect_err("another stream's table");
    assert!(err.to_string().contains("\"other\""), "{err}");
}

/// What the lease protocol rests on: of relays taking the same free lease at once,
/// exactly one wins (DynamoDB's conditional writes are atomic), and the table names it.
/// Relays starting together race like this for every shard. A store that let two win
/// would have both read the shard, and the loser forward a request before its first
/// checkpoint is refused: duplicates from relays nobody killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_taking_one_free_lease_at_once_have_one_winner() {
    const RACERS: usize = 3; // as many as the `join!` below
    const ROUNDS: usize = 100;
    let moto = Moto::start();
    let mut tables = Vec::new();
    for n in 0..RACERS {
        // A client each: each relay has its own connections.
        tables.push(
            LeaseTable::open(
                dynamodb(&moto),
                TABLE,
                "metrics",
                &format!("relay-{n}"),
                Duration::from_secs(10),
            )
            .await
            .expect("open"),
        );
    }
    let mut won: Vec<(String, Vec<String>)> = Vec::new();
    for round in 0..ROUNDS {
        let shard = ShardInfo {
            id: format!("shardId-{round:012}"),
            parent: None,
            adjacent_parent: None,
            ending: None,
        };
        tables[0]
            .sync(std::slice::from_ref(&shard), &[])
            .await
            .expect("sync");
        // As every relay scans it: new, free, counter 0.
        let lease = Lease {
            shard: shard.id.clone(),
            owner: None,
            counter: 0,
            checkpoint: None,
            parents: Vec::new(),
            finished: false,
            handoff: None,
        };
        let (a, b, c) = tokio::join!(
            tables[0].take(&lease),
            tables[1].take(&lease),
            tables[2].take(&lease)
        );
        let winners: Vec<String> = [a, b, c]
            .into_iter()
            .map(|t| t.expect("take"))
            .filter_map(|t| t.and_then(|l| l.owner))
            .collect();
        won.push((shard.id, winners));
    }
    let leases = tables[0].scan().await.expect("scan");
    let mut doubles = Vec::new();
    for (shard, winners) in won {
        let now = leases.iter().find(|l| l.shard == shard).expect("the lease");
        if winners.len() != 1 || now.owner.as_ref() != winners.first() || now.counter != 1 {
            doubles.push((shard, winners, now.owner.clone(), now.counter));
        }
    }
    assert!(
        doubles.is_empty(),
        "{} of {ROUNDS} rounds did not have exactly one winner named by the table \
         (shard, winners, owner, counter): {doubles:?}",
        doubles.len()
    );
}

/// A proxy in front of moto: while `lose` is above zero, a DynamoDB `UpdateItem` goes
/// through to moto and is applied, and then its connection is closed without the
/// answer (a network that lost it). Its port.
async fn answer_losing_proxy(moto: u16, lose: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(support::serve_fn(listener, move |parts, body| {
        let lose = lose.clone();
        async move {
            let update = support::amz_target(&parts).ends_with(".UpdateItem");
            let answer = support::forward(moto, parts, body.to_vec()).await;
            if update
                && lose
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err("the answer is lost (test)".to_string());
            }
            Ok(answer)
        }
    }));
    port
}

/// A renewal and a checkpoint that DynamoDB applied but whose answers were lost: the
/// SDK sends each again, and the retry's condition fails on the relay's own write. The
/// relay keeps its lease (a relay that gave it up would take it back from its
/// checkpoint and send its request in flight again, with nobody killed), and the
/// checkpoint is where it wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_write_applied_whose_answer_was_lost_keeps_the_lease() {
    let moto = Moto::start();
    let lose = Arc::new(AtomicUsize::new(0));
    let proxy = answer_losing_proxy(moto.port, lose.clone()).await;
    let table = LeaseTable::open(
        dynamodb_at(&format!("http://127.0.0.1:{proxy}")),
        TABLE,
        "metrics",
        "relay-a",
        Duration::from_secs(10),
    )
    .await
    .expect("open");
    let shard = ShardInfo {
        id: "shardId-000000000000".into(),
        parent: None,
        adjacent_parent: None,
        ending: None,
    };
    table
        .sync(std::slice::from_ref(&shard), &[])
        .await
        .expect("sync");
    let leases = table.scan().await.expect("scan");
    table.take(&leases[0]).await.expect("take").expect("free");

    lose.store(1, Ordering::SeqCst);
    let renewed = table.renew().await;
    assert_eq!(lose.load(Ordering::SeqCst), 0, "no answer was lost");
    assert!(
        renewed.conflicts.is_empty() && renewed.unrenewed.is_empty(),
        "{renewed:?}"
    );
    assert!(table.held().contains(&shard.id), "the lease was given up");

    lose.store(1, Ordering::SeqCst);
    table
        .save(&shard.id, Checkpoint::After("100".into()))
        .await
        .expect("the checkpoint is saved");
    assert_eq!(lose.load(Ordering::SeqCst), 0, "no answer was lost");
    let renewed = table.renew().await;
    assert!(renewed.conflicts.is_empty(), "{renewed:?}");
    let lease = table.scan().await.expect("scan").remove(0);
    assert_eq!(lease.owner.as_deref(), Some("relay-a"));
    assert_eq!(lease.checkpoint.as_deref(), Some("100"));
}

/// A forced steal under a running relay: its lease counter is bumped in DynamoDB while
/// a request is in flight. The relay's checkpoint is refused, it gives the shard up and
/// forwards nothing more of it while the thief holds it; once the thief stops renewing,
/// the relay takes the lease back and delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_lease_was_stolen_cannot_move_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    moto.create_stream("metrics", 1).await;
    let db = dynamodb(&moto);
    let target = Target::start().await;
    let relays = vec![RelayProc::start(dir.path(), &moto, &target, "r0", "3s")];
    let mut placed = put(&moto, 0, 50, 5, 50, Duration::ZERO).await;
    wait_until("the first records checkpointed", &relays, || async {
        target.distinct() == 50 && all_checkpointed(&scan(&db).await, &placed)
    })
    .await;

    // Hold the target, so the next request is in flight when the lease is stolen.
    target.hold.store(true, Ordering::SeqCst);
    placed.extend(put(&moto, 50, 60, 5, 10, Duration::ZERO).await);
    wait_until("a request held", &relays, || async {
        target.waiting.load(Ordering::SeqCst) > 0
    })
    .await;
    let shard = placed[&0].0.clone();
    let before = loop {
        let lease = scan(&db)
            .await
            .into_iter()
            .find(|l| l.shard == shard)
            .expect("lease");
        let stolen = db
            .update_item()
            .table_name(TABLE)
            .key(leases::KEY, AttributeValue::S(shard.clone()))
            .update_expression("SET #o = :thief, #c = #c + :one")
            .condition_expression("#c = :seen")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":thief", AttributeValue::S("thief".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":seen", AttributeValue::N(lease.counter.to_string()))
            .send()
            .await;
        if stolen.is_ok() {
            break lease.checkpoint;
        }
    };
    target.hold.store(false, Ordering::SeqCst);

    // The thief renews while the relay should give up.
    let renewing = Arc::new(AtomicBool::new(true));
    let thief = {
        let db = db.clone();
        let shard = shard.clone();
        let renewing = renewing.clone();
        tokio::spawn(async move {
            while renewing.load(Ordering::SeqCst) {
                let _ = db
                    .update_item()
                    .table_name(TABLE)
                    .key(leases::KEY, AttributeValue::S(shard.clone()))
                    .update_expression("SET #c = #c + :one")
                    .expression_attribute_names("#c", "counter")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let r = &relays[0];
    wait_until("the relay gives the shard up", &relays, || async {
        r.metric("edge_relay_leases_held", "").await == 0.0
            && r.metric("edge_relay_checkpoint_conflicts_total", "").await
                + r.metric("edge_relay_leases_lost_total", "").await
                >= 1.0
    })
    .await;
    let forwarded = target.got().len();
    // More records while the thief holds the lease: not forwarded, and the
    // checkpoint stays where the steal found it.
    placed.extend(put(&moto, 60, 80, 5, 20, Duration::ZERO).await);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let lease = scan(&db)
        .await
        .into_iter()
        .find(|l| l.shard == shard)
        .expect("lease");
    assert_eq!(lease.owner.as_deref(), Some("thief"));
    assert_eq!(
        lease.checkpoint, before,
        "a relay without the lease moved the checkpoint"
    );
    assert_eq!(target.got().len(), forwarded, "forwarded without the lease");

    // The thief goes quiet: its lease expires and the relay takes it back.
    renewing.store(false, Ordering::SeqCst);
    thief.await.expect("thief");
    wait_until(
        "every record, after the lease came back",
        &relays,
        || async { target.distinct() == 80 && all_checkpointed(&scan(&db).await, &placed) },
    )
    .await;
    // Only the request in flight at the steal came twice.
    let got = target.got();
    let duplicates = got.len() - 80;
    assert!(duplicates <= 10, "{duplicates} duplicates");
    for g in &got {
        assert!(g.i < 80);
    }
}

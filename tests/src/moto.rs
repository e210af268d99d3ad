//! A local AWS API server (moto's `moto_server`, from PyPI) for one test, on a free
//! port, stopped on drop; and a Kinesis client pointed at it.
//!
//! moto 5 differs from Kinesis at `SplitShard` in two ways a reshard test would trip
//! on: its key lookup does not skip closed shards (Kinesis never writes to one), and it
//! moves the parent's records into the children (Kinesis keeps them in the parent, so
//! moto's children would hold every parent record a second time). The server is started
//! through a few lines of Python that wrap moto's lookup to skip closed shards and its
//! split to leave the parent's records where they are, then run moto's own server entry
//! point; nothing else changes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;

/// The environment a daemon needs to reach moto: static test credentials, no IMDS.
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A running `moto_server`.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs moto's server with closed shards skipped when routing a record, and with its
/// DynamoDB requests one at a time. Fails loudly if moto's layout changed.
///
/// DynamoDB evaluates a conditional write and applies it atomically; moto's server (5.x)
/// checks the condition and applies the update as separate steps on a thread per
/// request, so two conditional writes on one item can both pass (measured: 13 of 100
/// rounds of three relays taking one free lease had two winners, see `relay_leases`).
/// The relay's leases rest on that atomicity, as the Kinesis Client Library's do.
const LAUNCHER: &str = r#"
import hashlib, sys, threading
from moto.dynamodb import responses as dynamodb_responses
dynamodb_call = dynamodb_responses.DynamoHandler.call_action
dynamodb_one_at_a_time = threading.Lock()
def dynamodb_call_atomically(self):
    with dynamodb_one_at_a_time:
        return dynamodb_call(self)
dynamodb_responses.DynamoHandler.call_action = dynamodb_call_atomically
from moto.kinesis import models
original = models.Stream.get_shard_for_key
def open_shard_for_key(self, partition_key, explicit_hash_key):
    shard = original(self, partition_key, explicit_hash_key)
    if shard is None or shard.is_open:
        return shard
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)
    for s in self.shards.values():
        if s.is_open and s.starting_hash <= key <= s.ending_hash:
            return s
    return None
models.Stream.get_shard_for_key = open_shard_for_key
original_split = models.Stream.split_shard
def split_keeping_records(self, shard_to_split, new_starting_hash_key):
    shard = self.shards.get(shard_to_split)
    if shard is None:
        return original_split(self, shard_to_split, new_starting_hash_key)
    kept = shard.records
    shard.records = type(kept)()
    try:
        original_split(self, shard_to_split, new_starting_hash_key)
    finally:
        shard.records = kept
models.Stream.split_shard = split_keeping_records
from moto.server import main
sys.argv[0] = "moto_server"
main(sys.argv[1:])
"#;

/// A Python interpreter that has moto: `EDGE_MOTO_PYTHON`, else the first of
/// `python3` and `python` that can import it (checked once per test process).
fn moto_python() -> String {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let candidates = std::env::var("EDGE_MOTO_PYTHON")
                .map(|p| vec![p])
                .unwrap_or_else(|_| vec!["python3".into(), "python".into()]);
            candidates.into_iter().find(|python| {
                Command::new(python)
                    .args(["-c", "import moto.server, moto.kinesis.models"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "no Python with moto found (tried EDGE_MOTO_PYTHON, python3, python): install \
                 the local AWS API server with `pip install 'moto[server]'` (scripts/test does)"
            )
        })
}

impl Moto {
    /// Starts `moto_server` and waits until it listens. Panics with what to install
    /// when it is missing.
    pub fn start() -> Moto {
        let port = crate::procs::free_port();
        let python = moto_python();
        let child = Command::new(&python)
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto's server with {python} ({e}): install the local AWS \
                     API server with `pip install 'moto[server]'` (scripts/test does)"
                )
            });
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto's server exited ({status}) before listening; run `{python} -c` with the launcher in tests/src/moto.rs to see why"
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Its endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A Kinesis client for it.
    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
    }

    /// Creates stream `name` with `shards` shards.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        self.kinesis()
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("create the stream in moto");
    }

    /// Every record of stream `name`, shard by shard, each shard's in sequence order.
    pub async fn read_stream(&self, name: &str) -> Result<Vec<StreamRecord>, String> {
        let k = self.kinesis();
        let shards = k
            .list_shards()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| format!("ListShards {name}: {e}"))?;
        let mut out = Vec::new();
        for shard in shards.shards() {
            let mut iterator = k
                .get_shard_iterator()
                .stream_name(name)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| format!("GetShardIterator {}: {e}", shard.shard_id()))?
                .shard_iterator
                .ok_or("GetShardIterator gave no iterator")?;
            loop {
                let got = k
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(10_000)
                    .send()
                    .await
                    .map_err(|e| format!("GetRecords {}: {e}", shard.shard_id()))?;
                if got.records().is_empty() {
                    break;
                }
                for r in got.records() {
                    out.push(StreamRecord {
                        shard: shard.shard_id().to_string(),
                        key: r.partition_key().to_string(),
                        arrival_ms: r
                            .approximate_arrival_timestamp()
                            .and_then(|t| t.to_millis().ok())
                            .unwrap_or(0),
                        data: r.data().as_ref().to_vec(),
                    });
                }
                match got.next_shard_iterator {
                    Some(next) => iterator = next,
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// A record read back from a stream.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    /// The shard it is in.
    pub shard: String,
    /// Its partition key.
    pub key: String,
    /// When the stream took it (ms since the epoch).
    pub arrival_ms: i64,
    /// Its data, as put.
    pub data: Vec<u8>,
}

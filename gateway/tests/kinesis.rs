//! The Kinesis sink against a real local AWS API server (moto): what the gateway
//! accepts is read back with GetRecords and compared, and a server that fails half the
//! records of a call (a proxy wrapping moto) ends with every record in the stream once.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;
use support::{
    AWS_TEST_ENV, Client, Gateway, KINESIS_PUT, Moto, Pki, free_port, half_failing_proxy, series,
    tls_config,
};

/// Every record in the stream: (partition key, decoded request).
async fn read_stream(moto: &Moto, name: &str) -> Vec<(String, WriteRequest)> {
    moto.read_stream(name)
        .await
        .expect("read the stream")
        .into_iter()
        .map(|r| {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&r.data)
                .expect("a snappy record");
            let req = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest record");
            (r.key, req)
        })
        .collect()
}

fn gateway_config(dir: &std::path::Path, port: u16, endpoint: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         sinks:\n  metrics: {{ kind: kinesis, stream: metrics, region: us-east-1, endpoint_url: \"{endpoint}\" }}\n  \
         logs: {{ kind: file, dir: {d}/spool }}\n",
        d = dir.display()
    )
}

/// Pushes `per_host` requests of 3 series from each of `hosts` hosts, concurrently.
async fn push_from_hosts(
    pki: &Pki,
    port: u16,
    hosts: usize,
    per_host: usize,
) -> BTreeMap<String, Vec<String>> {
    let mut tasks = Vec::new();
    for h in 0..hosts {
        let cert = pki.client(
            "x",
            Some(&format!("spiffe://obs.internal/tenant/game/gs-{h}")),
        );
        let tls = tls_config(&pki.ca_der, Some(&cert));
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(port, tls).await.expect("connect");
            let mut sent = Vec::new();
            for r in 0..per_host {
                let names: Vec<String> = (0..3)
                    .map(|i| format!("edge_k_{h}_{r}_{i}_total"))
                    .collect();
                let req = WriteRequest {
                    timeseries: names
                        .iter()
                        .map(|n| series(n, &[("region", "eu")], 1.0))
                        .collect(),
                    ..Default::default()
                };
                let a = c.push(&req, &[]).await;
                assert_eq!(a.status, 204, "{}", a.body);
                sent.extend(names);
            }
            (format!("game/gs-{h}"), sent)
        }));
    }
    let mut out = BTreeMap::new();
    for t in tasks {
        let (k, v) = t.await.expect("host");
        out.insert(k, v);
    }
    out
}

fn received(records: &[(String, WriteRequest)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, req) in records {
        for s in &req.timeseries {
            let name = s
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            out.entry(key.clone()).or_default().push(name);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_accepts_is_in_the_stream_once_keyed_by_tenant_and_host() {
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let _gw = Gateway::start_with_env(
        dir.path(),
        port,
        &gateway_config(dir.path(), port, &moto.url()),
        AWS_TEST_ENV,
    );
    let sent = push_from_hosts(&pki, port, 4, 3).await;
    let records = read_stream(&moto, "metrics").await;
    let got = received(&records);
    assert_eq!(got, sent, "every series exactly once, in order per host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_half_the_records_of_a_call_ends_with_every_record_once() {
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let proxy_port = free_port();
    let failing_calls = Arc::new(AtomicU32::new(4));
    let injected = Arc::new(AtomicU32::new(0));
    tokio::spawn(half_failing_proxy(
        proxy_port,
        moto.port,
        KINESIS_PUT,
        failing_calls.clone(),
        injected.clone(),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let gw = Gateway::start_with_env(
        dir.path(),
        port,
        &gateway_config(dir.path(), port, &proxy),
        AWS_TEST_ENV,
    );
    let sent = push_from_hosts(&pki, port, 6, 2).await;
    assert!(
        injected.load(Ordering::Relaxed) > 0,
        "the proxy failed no record: {}",
        gw.log_text()
    );
    let got = received(&read_stream(&moto, "metrics").await);
    assert_eq!(
        got, sent,
        "every record committed exactly once after the retries"
    );
}

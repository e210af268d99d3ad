//! Shard leases in DynamoDB, shared by every relay of a stream (as the Kinesis Client
//! Library keeps them): which relay reads which shard, and how far each shard was
//! forwarded.
//!
//! One item per shard (hash key `shard`): `owner` (a relay's id, absent when free),
//! `counter` (the lease counter), `checkpoint` (the last sequence number the target
//! accepted), `parents`, `finished` and `stream`. Every write that changes who holds a
//! lease or moves its checkpoint is conditional on the counter and bumps it:
//!
//! - **take** (a free or expired lease): `owner = me, counter + 1` if the counter is
//!   still the one seen;
//! - **steal** (from the live relay holding the most): `handoff = me` if the counter is
//!   still the one seen and no handoff is pending. The holder sees it at its next
//!   renewal, lets its reader finish the request in flight and checkpoint it, then
//!   writes `owner = thief, counter + 1` (conditional, as a renewal): a steal sends
//!   nothing twice. A holder that died never hands over: its lease expires instead;
//! - **renew**, every third of the timeout: `counter + 1` if `owner = me` and the
//!   counter is the one this relay last wrote;
//! - **checkpoint**: the same condition, so a relay that lost its lease can never move
//!   a checkpoint: its write is refused and it gives the shard up. A renewal or
//!   checkpoint refused on the relay's own earlier write (applied, its answer lost, sent
//!   again by the SDK) is recognised from the item the refusal returns, and not a loss.
//!
//! All of this rests on DynamoDB applying each conditional write atomically.
//!
//! A lease is expired for a relay when its counter has not moved for the timeout on
//! that relay's own clock (no clock is compared across hosts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};

use super::ShardInfo;
use super::checkpoint::{Checkpoint, CheckpointStore};
use crate::sink::BoxFuture;

/// The table's hash key.
pub const KEY: &str = "shard";

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub shard: String,
    /// The relay holding it, if any.
    pub owner: Option<String>,
    /// Bumped by every take, renewal and checkpoint.
    pub counter: u64,
    /// The last sequence number the target accepted.
    pub checkpoint: Option<String>,
    /// The shards it was split or merged from.
    pub parents: Vec<String>,
    /// Closed and read to its end: its children may start.
    pub finished: bool,
    /// A relay that asked for this lease (a steal): the holder hands it over.
    pub handoff: Option<String>,
}

/// A checkpoint or renewal refused because the lease is no longer this relay's.
#[derive(Debug, thiserror::Error)]
#[error("the lease of {shard} is no longer this relay's (another relay took it)")]
pub struct LeaseLost {
    /// The shard.
    pub shard: String,
}

/// What this relay knows of a lease it holds.
#[derive(Debug)]
struct Held {
    /// The counter as this relay last wrote it.
    counter: u64,
    /// When a write of ours last succeeded.
    renewed: Instant,
    /// Set once a conditional write failed: nothing more is written.
    lost: bool,
    /// Handed over or given back: no longer renewed (not a loss).
    gone: bool,
}

/// A lease's owner and counter as last scanned, and since when they are unchanged.
type Seen = (Option<String>, u64, Instant);

/// What a renewal round found.
#[derive(Debug, Default)]
pub struct Renewed {
    /// Leases another relay took (a conditional write failed).
    pub conflicts: Vec<String>,
    /// Leases not renewed within the timeout (DynamoDB unreachable): given up, since
    /// another relay may have taken them.
    pub unrenewed: Vec<String>,
    /// Leases another relay asked for: `(shard, that relay)`. Stop their readers, then
    /// [`LeaseTable::hand_over`].
    pub handoffs: Vec<(String, String)>,
}

/// The lease table, as one relay sees it.
#[derive(Debug)]
pub struct LeaseTable {
    client: Client,
    table: String,
    stream: String,
    me: String,
    timeout: Duration,
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Held>>>>,
    /// Every lease's owner and counter as last scanned, and since when unchanged.
    observed: Mutex<HashMap<String, Seen>>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn is_conflict<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl LeaseTable {
    /// The table `table` for `stream`, as relay `me`; creates the table if it is
    /// missing (and says what to do if that is not allowed).
    pub async fn open(
        client: Client,
        table: &str,
        stream: &str,
        me: &str,
        timeout: Duration,
    ) -> anyhow::Result<LeaseTable> {
        let t = LeaseTable {
            client,
            table: table.to_string(),
            stream: stream.to_string(),
            me: me.to_string(),
            timeout,
            held: Mutex::new(HashMap::new()),
            observed: Mutex::new(HashMap::new()),
        };
        t.ensure_table().await?;
        Ok(t)
    }

    /// This relay's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The lease timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn ensure_table(&self) -> anyhow::Result<()> {
        let status = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(d) => d.table().and_then(|t| t.table_status().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                tracing::info!(table = %self.table, "creating the relay lease table");
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(KEY)
                            .key_type(KeyType::Hash)
                            .build()?,
                    )
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await;
                match created {
                    Ok(c) => c
                        .table_description()
                        .and_then(|t| t.table_status().cloned()),
                    // Another relay created it meanwhile.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_in_use_exception()) =>
                    {
                        None
                    }
                    Err(e) => anyhow::bail!(
                        "relay.leases: the DynamoDB table {:?} does not exist and cannot be \
                         created ({}); create it (hash key `{KEY}`, a string; on-demand \
                         capacity) or allow this relay dynamodb:CreateTable",
                        self.table,
                        DisplayErrorContext(e)
                    ),
                }
            }
            Err(e) => anyhow::bail!(
                "relay.leases: cannot read the DynamoDB table {:?}: {}",
                self.table,
                DisplayErrorContext(e)
            ),
        };
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        // Creating: wait for it (on-demand tables take seconds).
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "relay.leases: DescribeTable {}: {}",
                        self.table,
                        DisplayErrorContext(e)
                    )
                })?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "relay.leases: the DynamoDB table {:?} is not active after 2 minutes",
                self.table
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Adds an item for every listed shard that has none (free, no checkpoint).
    pub async fn sync(&self, shards: &[ShardInfo], known: &[Lease]) -> anyhow::Result<()> {
        let known: HashSet<&str> = known.iter().map(|l| l.shard.as_str()).collect();
        for shard in shards.iter().filter(|s| !known.contains(s.id.as_str())) {
            let parents: Vec<AttributeValue> = shard.parents().map(s).collect();
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, s(&shard.id))
                .item("stream", s(&self.stream))
                .item("counter", n(0))
                .item("finished", AttributeValue::Bool(false))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY);
            if !parents.is_empty() {
                put = put.item("parents", AttributeValue::L(parents));
            }
            match put.send().await {
                Ok(_) => tracing::info!(shard = %shard.id, "lease created"),
                Err(e) if is_conflict(&e) => {}
                Err(e) => anyhow::bail!(
                    "PutItem {} into {}: {}",
                    shard.id,
                    self.table,
                    DisplayErrorContext(e)
                ),
            }
        }
        Ok(())
    }

    /// Every lease of this stream (a consistent read). A lease of another stream in the
    /// table is an error: two streams' relays would take each other's shards.
    pub async fn scan(&self) -> anyhow::Result<Vec<Lease>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("Scan {}: {}", self.table, DisplayErrorContext(e)))?;
            for item in page.items() {
                let lease = parse(item).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: an item that is not a relay lease: {item:?}",
                        self.table
                    )
                })?;
                let stream = item.get("stream").and_then(|v| v.as_s().ok());
                anyhow::ensure!(
                    stream.map(String::as_str) == Some(self.stream.as_str()),
                    "{}: holds leases of stream {stream:?}, not {:?}; give each stream its own \
                     relay.leases.table",
                    self.table,
                    self.stream
                );
                out.push(lease);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        self.observe(&out);
        Ok(out)
    }

    fn observe(&self, leases: &[Lease]) {
        let now = Instant::now();
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for l in leases {
            let entry = observed
                .entry(l.shard.clone())
                .or_insert_with(|| (l.owner.clone(), l.counter, now));
            if entry.0 != l.owner || entry.1 != l.counter {
                *entry = (l.owner.clone(), l.counter, now);
            }
        }
    }

    /// Whether `lease` may be taken: free, or its counter has not moved for the
    /// timeout since this relay first saw it.
    pub fn expired(&self, lease: &Lease) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&lease.shard)
            .is_some_and(|(owner, counter, since)| {
                *owner == lease.owner
                    && *counter == lease.counter
                    && since.elapsed() >= self.timeout
            })
    }

    /// The shards this relay holds.
    pub fn held(&self) -> HashSet<String> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn handle(&self, shard: &str) -> Option<Arc<tokio::sync::Mutex<Held>>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(shard)
            .cloned()
    }

    /// Forgets a lease (finished, or lost): no more renewals.
    pub fn forget(&self, shard: &str) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(shard);
    }

    /// Takes `lease` as it was scanned: the lease taken (with its checkpoint), or `None`
    /// if another relay wrote it first.
    pub async fn take(&self, lease: &Lease) -> anyhow::Result<Option<Lease>> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.shard))
            .update_expression("SET #o = :me, #c = #c + :one REMOVE handoff")
            .condition_expression("#c = :seen AND #f = :false")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#f", "finished")
            .expression_attribute_values(":me", s(&self.me))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":seen", n(lease.counter))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match answer {
            Ok(out) => {
                let taken = out.attributes().and_then(parse).ok_or_else(|| {
                    anyhow::anyhow!("UpdateItem {}: no item in the answer", lease.shard)
                })?;
                self.held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(
                        lease.shard.clone(),
                        Arc::new(tokio::sync::Mutex::new(Held {
                            counter: taken.counter,
                            renewed: Instant::now(),
                            lost: false,
                            gone: false,
                        })),
                    );
                Ok(Some(taken))
            }
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => anyhow::bail!(
                "UpdateItem {} (take): {}",
                lease.shard,
                DisplayErrorContext(e)
            ),
        }
    }

    /// A conditional write on a held lease: `update` (which must bump `#c`) if the
    /// lease is still ours at the counter we wrote last.
    async fn write_held(
        &self,
        shard: &str,
        update: &str,
        values: &[(&str, AttributeValue)],
    ) -> anyhow::Result<Option<Lease>> {
        let Some(handle) = self.handle(shard) else {
            return Err(LeaseLost {
                shard: shard.to_string(),
            }
            .into());
        };
        let mut held = handle.lock().await;
        if held.lost || held.gone {
            return Err(LeaseLost {
                shard: shard.to_string(),
            }
            .into());
        }
        // A write of ours applied whose answer was lost (the connection dropped) is
        // sent again by the SDK's retry, and the retry's condition fails on our own
        // write. The refusal carries the item as it is: still ours, one write past the
        // counter we knew, is that write (only the owner bumps the counter of a lease
        // it owns; a take by another relay changes the owner; asking for a handoff
        // does not bump it). Then the counter is ours again, and the write is sent
        // again with it (a renewal or the same checkpoint twice moves nothing back).
        let mut resynced = 0;
        loop {
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, s(shard))
                .update_expression(update)
                .condition_expression("#o = :me AND #c = :held")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":me", s(&self.me))
                .expression_attribute_values(":held", n(held.counter))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            for (name, value) in values {
                request = request.expression_attribute_values(*name, value.clone());
            }
            match request.send().await {
                Ok(out) => {
                    held.counter += 1;
                    held.renewed = Instant::now();
                    return Ok(out.attributes().and_then(parse));
                }
                Err(e) if is_conflict(&e) => {
                    let now = e
                        .as_service_error()
                        .and_then(|e| match e {
                            UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                            _ => None,
                        })
                        .and_then(parse);
                    // Still held by this relay's current holding: a lease forgotten
                    // meanwhile (and perhaps taken again by this relay, a write of ours
                    // too) is not resumed by a write of the old holding.
                    let current = self.handle(shard).is_some_and(|h| Arc::ptr_eq(&h, &handle));
                    let ours_applied = current
                        && now.as_ref().is_some_and(|l| {
                            l.owner.as_deref() == Some(self.me.as_str())
                                && l.counter == held.counter + 1
                        });
                    if ours_applied && resynced < 3 {
                        resynced += 1;
                        tracing::info!(shard = %shard, counter = held.counter + 1, "a lease write of ours was applied but its answer lost; resuming from its counter");
                        held.counter += 1;
                        held.renewed = Instant::now();
                        continue;
                    }
                    held.lost = true;
                    return Err(LeaseLost {
                        shard: shard.to_string(),
                    }
                    .into());
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "UpdateItem {shard}: {}",
                        DisplayErrorContext(e)
                    ));
                }
            }
        }
    }

    /// Renews every held lease. Leases another relay took, and leases not renewed
    /// within the timeout, are forgotten and returned: their readers must stop.
    pub async fn renew(&self) -> Renewed {
        let mut out = Renewed::default();
        let mut shards: Vec<String> = self.held().into_iter().collect();
        shards.sort();
        for shard in shards {
            // Handed over or given back meanwhile: nothing to renew, nothing lost.
            let Some(handle) = self.handle(&shard) else {
                continue;
            };
            if handle.lock().await.gone {
                continue;
            }
            match self.write_held(&shard, "SET #c = #c + :one", &[]).await {
                Ok(lease) => {
                    if let Some(to) = lease.and_then(|l| l.handoff).filter(|to| *to != self.me) {
                        out.handoffs.push((shard, to));
                    }
                }
                Err(e) if e.is::<LeaseLost>() => {
                    if self
                        .handle(&shard)
                        .is_none_or(|h| h.try_lock().is_ok_and(|h| h.gone))
                    {
                        continue;
                    }
                    tracing::warn!(shard = %shard, "lease taken by another relay; giving the shard up");
                    self.forget(&shard);
                    out.conflicts.push(shard);
                }
                Err(e) => {
                    let stale = match self.handle(&shard) {
                        Some(h) => h.lock().await.renewed.elapsed() >= self.timeout,
                        None => false,
                    };
                    tracing::warn!(shard = %shard, error = %e, stale, "cannot renew the lease");
                    if stale {
                        self.forget(&shard);
                        out.unrenewed.push(shard);
                    }
                }
            }
        }
        out
    }

    /// Gives a held lease back (shutdown): free for the next relay at once.
    pub async fn release(&self, shard: &str) -> anyhow::Result<()> {
        let result = self
            .write_held(shard, "REMOVE #o, handoff SET #c = #c + :one", &[])
            .await;
        self.let_go(shard).await;
        result.map(drop)
    }

    /// Marks a lease no longer ours without a loss, and forgets it.
    async fn let_go(&self, shard: &str) {
        if let Some(h) = self.handle(shard) {
            h.lock().await.gone = true;
        }
        self.forget(shard);
    }

    /// Hands a held lease to the relay that asked for it (its reader has stopped, its
    /// last request checkpointed).
    pub async fn hand_over(&self, shard: &str, to: &str) -> anyhow::Result<()> {
        let result = self
            .write_held(
                shard,
                "SET #o = :to, #c = #c + :one REMOVE handoff",
                &[(":to", s(to))],
            )
            .await;
        self.let_go(shard).await;
        result.map(drop)
    }

    /// Asks the holder of `lease` (as scanned) for it: it hands the lease over once its
    /// reader stopped. False if the lease changed meanwhile or a handoff is pending.
    pub async fn request(&self, lease: &Lease) -> anyhow::Result<bool> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.shard))
            .update_expression("SET handoff = :me")
            .condition_expression("#c = :seen AND attribute_not_exists(handoff)")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":me", s(&self.me))
            .expression_attribute_values(":seen", n(lease.counter))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => anyhow::bail!(
                "UpdateItem {} (handoff): {}",
                lease.shard,
                DisplayErrorContext(e)
            ),
        }
    }
}

/// An item as a [`Lease`]; `None` if it is not one.
pub fn parse(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(Lease {
        shard: text(KEY)?,
        owner: text("owner"),
        counter: item.get("counter")?.as_n().ok()?.parse().ok()?,
        checkpoint: text("checkpoint"),
        parents: match item.get("parents") {
            Some(AttributeValue::L(list)) => {
                list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
            }
            _ => Vec::new(),
        },
        finished: matches!(item.get("finished"), Some(AttributeValue::Bool(true))),
        handoff: text("handoff"),
    })
}

impl CheckpointStore for LeaseTable {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, Checkpoint>>> {
        Box::pin(async move {
            let leases = self.scan().await?;
            Ok(leases
                .into_iter()
                .filter_map(|l| {
                    let at = if l.finished {
                        Checkpoint::Finished
                    } else {
                        Checkpoint::After(l.checkpoint?)
                    };
                    Some((l.shard, at))
                })
                .collect())
        })
    }

    /// Moves the checkpoint if, and only if, the lease is still this relay's at the
    /// counter it wrote last; otherwise fails with [`LeaseLost`].
    fn save<'a>(&'a self, shard: &'a str, at: Checkpoint) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match at {
                Checkpoint::After(seq) => self
                    .write_held(
                        shard,
                        "SET #c = #c + :one, checkpoint = :seq",
                        &[(":seq", s(&seq))],
                    )
                    .await
                    .map(drop),
                Checkpoint::Finished => self
                    .write_held(
                        shard,
                        "SET #c = #c + :one, finished = :true",
                        &[(":true", AttributeValue::Bool(true))],
                    )
                    .await
                    .map(drop),
            }
        })
    }
}

/// A lease to take this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// Free or expired.
    Free(String),
    /// From the relay holding the most, which is alive.
    Steal {
        /// The shard.
        shard: String,
        /// Its holder.
        from: String,
    },
}

/// What a relay takes this round so that each holds about `active / relays`:
///
/// - the active leases are the unfinished ones whose parents are finished (`ready`);
/// - the relays are the owners of unexpired active leases, and this one;
/// - the target is `ceil(active / relays)`. Below it, this relay takes free or expired
///   leases first; if there are none it steals one lease from the relay holding the
///   most, if that one holds more than the target, or the target while this relay
///   needs more than one (so 4 shards over 3 relays settle at 2, 1, 1).
pub fn plan(
    me: &str,
    leases: &[Lease],
    held: &HashSet<String>,
    expired: &dyn Fn(&Lease) -> bool,
    ready: &dyn Fn(&Lease) -> bool,
) -> Vec<Take> {
    let active: Vec<&Lease> = leases.iter().filter(|l| !l.finished && ready(l)).collect();
    // Handed to this relay (or left in its name): taken like a free one.
    let handed: Vec<Take> = active
        .iter()
        .filter(|l| !held.contains(&l.shard) && !expired(l) && l.owner.as_deref() == Some(me))
        .map(|l| Take::Free(l.shard.clone()))
        .collect();
    if !handed.is_empty() {
        return handed;
    }
    // Whose a lease is for balancing: the relay it is being handed to, else its owner.
    let mut per_owner: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    let mut coming = 0;
    for l in &active {
        if held.contains(&l.shard) || expired(l) {
            continue;
        }
        match l.handoff.as_deref().or(l.owner.as_deref()) {
            Some(o) if o == me => coming += 1,
            Some(o) => per_owner.entry(o).or_default().push(l),
            None => {}
        }
    }
    let relays = per_owner.len() + 1;
    let target = active.len().div_ceil(relays);
    let mine = active.iter().filter(|l| held.contains(&l.shard)).count() + coming;
    let need = target.saturating_sub(mine);
    if need == 0 {
        return Vec::new();
    }
    let mut free: Vec<&Lease> = active
        .iter()
        .filter(|l| !held.contains(&l.shard) && expired(l))
        .copied()
        .collect();

    if !free.is_empty() {
        // Relays starting together should not all race for the same leases.
        fastrand::shuffle(&mut free);
        return free
            .into_iter()
            .take(need)
            .map(|l| Take::Free(l.shard.clone()))
            .collect();
    }
    let Some((owner, theirs)) = per_owner
        .iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
    else {
        return Vec::new();
    };
    let candidates: Vec<&&Lease> = theirs.iter().filter(|l| l.handoff.is_none()).collect();
    if !candidates.is_empty() && (theirs.len() > target || (theirs.len() == target && need > 1)) {
        let pick = candidates[fastrand::usize(..candidates.len())];
        return vec![Take::Steal {
            shard: pick.shard.clone(),
            from: owner.to_string(),
        }];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(shard: &str, owner: Option<&str>) -> Lease {
        Lease {
            shard: shard.into(),
            owner: owner.map(Into::into),
            counter: 1,
            checkpoint: None,
            parents: Vec::new(),
            finished: false,
            handoff: None,
        }
    }

    /// Runs rounds of `plan` for `relays` until nothing changes; the holdings.
    fn settle(relays: &[&str], leases: &mut [Lease]) -> BTreeMap<String, usize> {
        for _ in 0..50 {
            let mut changed = false;
            for me in relays {
                let held: HashSet<String> = leases
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(*me))
                    .map(|l| l.shard.clone())
                    .collect();
                for take in plan(me, leases, &held, &|l| l.owner.is_none(), &|_| true) {
                    let shard = match take {
                        Take::Free(s) => s,
                        Take::Steal { shard, .. } => shard,
                    };
                    let l = leases.iter_mut().find(|l| l.shard == shard).expect("lease");
                    l.owner = Some(me.to_string());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut out = BTreeMap::new();
        for l in leases.iter() {
            *out.entry(l.owner.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        out
    }

    #[test]
    fn relays_balance_leases_and_settle() {
        // One relay first takes everything; two more join and take their share.
        let mut leases: Vec<Lease> = (0..4).map(|i| lease(&format!("s{i}"), None)).collect();
        assert_eq!(settle(&["a"], &mut leases)["a"], 4);
        let mut counts: Vec<usize> = settle(&["a", "b", "c"], &mut leases)
            .into_values()
            .collect();
        counts.sort();
        assert_eq!(counts, [1, 1, 2]);

        let mut leases: Vec<Lease> = (0..10).map(|i| lease(&format!("s{i}"), None)).collect();
        settle(&["a"], &mut leases);
        let mut counts: Vec<usize> = settle(&["a", "b", "c"], &mut leases)
            .into_values()
            .collect();
        counts.sort();
        assert_eq!(counts, [3, 3, 4]);
    }

    #[test]
    fn at_most_one_steal_a_round_and_expired_leases_before_steals() {
        let leases: Vec<Lease> = (0..6).map(|i| lease(&format!("s{i}"), Some("a"))).collect();
        let none = HashSet::new();
        let takes = plan("b", &leases, &none, &|_| false, &|_| true);
        assert!(
            matches!(&takes[..], [Take::Steal { from, .. }] if from == "a"),
            "{takes:?}"
        );
        // Two of a's leases expired: taken, no steal.
        let takes = plan(
            "b",
            &leases,
            &none,
            &|l| l.shard == "s0" || l.shard == "s1",
            &|_| true,
        );
        let mut shards: Vec<&Take> = takes.iter().collect();
        shards.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(shards, [&Take::Free("s0".into()), &Take::Free("s1".into())]);
    }

    #[test]
    fn finished_and_unready_leases_are_not_taken() {
        let mut parent = lease("p", Some("a"));
        parent.finished = true;
        let child = Lease {
            parents: vec!["p".into()],
            ..lease("c", None)
        };
        let waiting = Lease {
            parents: vec!["q".into()],
            ..lease("w", None)
        };
        let leases = vec![parent, child, waiting];
        let takes = plan(
            "b",
            &leases,
            &HashSet::new(),
            &|l| l.owner.is_none(),
            &|l| l.parents.iter().all(|p| p == "p"),
        );
        assert_eq!(takes, [Take::Free("c".into())]);
    }

    #[test]
    fn items_parse() {
        let item: HashMap<String, AttributeValue> = [
            (KEY.to_string(), s("shardId-1")),
            ("owner".to_string(), s("relay-a")),
            ("counter".to_string(), n(7)),
            ("checkpoint".to_string(), s("4959")),
            (
                "parents".to_string(),
                AttributeValue::L(vec![s("shardId-0")]),
            ),
            ("finished".to_string(), AttributeValue::Bool(false)),
        ]
        .into();
        let l = parse(&item).expect("lease");
        assert_eq!(l.owner.as_deref(), Some("relay-a"));
        assert_eq!(l.counter, 7);
        assert_eq!(l.parents, ["shardId-0"]);
        assert!(parse(&HashMap::new()).is_none());
    }
}

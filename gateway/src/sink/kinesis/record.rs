//! How a Kinesis record is bundled: the records of each key, in order, concatenated
//! (repeated fields concatenate into one valid `WriteRequest`) and compressed once
//! with snappy, while the result stays under Kinesis's 1 MiB.

use std::collections::{HashMap, VecDeque};

use super::MAX_RECORD_BYTES;
use crate::sink::{Record, SinkError};

/// One Kinesis record and the commits (indexes into the flush) it carries.
pub(super) struct Outgoing {
    pub(super) key: String,
    pub(super) data: Vec<u8>,
    pub(super) owners: Vec<usize>,
}

fn too_big(key: &str) -> SinkError {
    SinkError::Refused(format!(
        "a request for {key} compresses to more than a Kinesis record holds (1 MiB)"
    ))
}

/// Bundles the records of each key, in order, into compressed Kinesis records ≤ 1 MiB.
/// A request that alone compresses past the limit fails its commit.
pub(super) fn bundle(
    commits: &[Vec<Record>],
    failed: &mut [Option<SinkError>],
) -> VecDeque<Outgoing> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, Vec<(usize, &[u8])>> = HashMap::new();
    for (i, records) in commits.iter().enumerate() {
        for r in records {
            by_key
                .entry(r.key.clone())
                .or_insert_with(|| {
                    order.push(r.key.clone());
                    Vec::new()
                })
                .push((i, r.data.as_slice()));
        }
    }
    let mut out = VecDeque::new();
    let mut encoder = snap::raw::Encoder::new();
    for key in order {
        let limit = MAX_RECORD_BYTES.saturating_sub(key.len());
        let mut raw: Vec<u8> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        let mut compressed: Option<Vec<u8>> = None;
        for (owner, data) in by_key.remove(&key).unwrap_or_default() {
            let mut candidate = raw.clone();
            candidate.extend_from_slice(data);
            // Cheap bound first; compress only when it might not fit.
            let fits = if snap::raw::max_compress_len(candidate.len()) <= limit {
                None
            } else {
                match encoder.compress_vec(&candidate) {
                    Ok(c) if c.len() <= limit => Some(c),
                    _ => {
                        if raw.is_empty() {
                            failed[owner] = Some(too_big(&key));
                            continue;
                        }
                        // Flush what fits, start over with this one.
                        let done = compressed
                            .take()
                            .or_else(|| encoder.compress_vec(&raw).ok())
                            .unwrap_or_default();
                        out.push_back(Outgoing {
                            key: key.clone(),
                            data: done,
                            owners: std::mem::take(&mut owners),
                        });
                        raw.clear();
                        let alone = data.to_vec();
                        match encoder.compress_vec(&alone) {
                            Ok(c) if c.len() <= limit => {
                                raw = alone;
                                owners.push(owner);
                                compressed = Some(c);
                            }
                            _ => {
                                failed[owner] = Some(too_big(&key));
                            }
                        }
                        continue;
                    }
                }
            };
            raw = candidate;
            compressed = fits;
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        if !raw.is_empty() {
            let data = compressed
                .or_else(|| encoder.compress_vec(&raw).ok())
                .unwrap_or_default();
            out.push_back(Outgoing { key, data, owners });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(records: Vec<(&str, Vec<u8>)>) -> Vec<Record> {
        records
            .into_iter()
            .map(|(k, d)| Record {
                key: k.into(),
                data: d,
            })
            .collect()
    }

    #[test]
    fn bundles_per_key_in_order_under_a_megabyte() {
        let flush = vec![
            commit(vec![("game/a", vec![1; 1000])]),
            commit(vec![("game/b", vec![2; 1000])]),
            commit(vec![("game/a", vec![3; 1000])]),
        ];
        let mut failed: Vec<Option<SinkError>> = (0..3).map(|_| None).collect();
        let out = bundle(&flush, &mut failed);
        assert_eq!(out.len(), 2, "one record per key");
        assert_eq!(out[0].key, "game/a");
        assert_eq!(out[0].owners, [0, 2]);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&out[0].data)
            .expect("snappy");
        assert_eq!(raw.len(), 2000);
        assert_eq!(raw[0], 1);
        assert_eq!(raw[1999], 3, "in order");
        assert!(failed.iter().all(Option::is_none));
    }

    #[test]
    fn incompressible_data_splits_and_a_huge_request_fails_alone() {
        let noise = |n: usize, seed: u64| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>()
        };
        let flush = vec![
            commit(vec![("k", noise(700_000, 1))]),
            commit(vec![("k", noise(700_000, 2))]),
            commit(vec![("k", noise(1_200_000, 3))]),
        ];
        let mut failed: Vec<Option<SinkError>> = (0..3).map(|_| None).collect();
        let out = bundle(&flush, &mut failed);
        assert_eq!(out.len(), 2, "two 700 KB requests do not fit one record");
        assert!(
            out.iter()
                .all(|o| o.data.len() + o.key.len() <= MAX_RECORD_BYTES)
        );
        assert!(failed[2].is_some(), "1.2 MB of noise can never fit");
        assert!(failed[0].is_none() && failed[1].is_none());
    }
}

//! PII in spans, for the agent's traces path and for the gateway's spans that arrive
//! without an agent: every free-text string of a span (its name, status message, event names,
//! and every attribute value of the span, its events and its links, nested key-value
//! lists and arrays included) and of its resource and scope goes through the logs
//! path's [`Tokenizer`], with the same detectors, actions and key.
//!
//! A span's strings are gathered into one record for the tokenizer (the span name as the message,
//! each string value under its attribute key) and scrubbed in one call, so an attribute
//! whose key names a configured detector (`player_id`) is tokenized whole exactly as a
//! log attribute would be. Attribute keys are scrubbed as text. Byte values that are
//! UTF-8 are scrubbed as text; others cannot be read and pass. A detector whose action
//! is `drop` drops the whole span.

use edge_schema::proto::otlp::trace::{ResourceSpans, Span};
use edge_schema::proto::otlp::{AnyValue, KeyValue, any_value};

use crate::{Tokenizer, Verdict};

/// What scrubbing a `ResourceSpans` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scrubbed {
    /// Spans kept.
    pub kept: u64,
    /// Spans dropped by a `drop` detector.
    pub dropped: u64,
    /// The detector that dropped the first dropped span.
    pub first_drop: Option<String>,
    /// Values replaced (tokenized or redacted).
    pub replaced: u64,
}

/// Visits the string leaves under `kvs` in a fixed order, with the key they sit under
/// (an array's elements sit under the array's key).
fn visit_kvs(kvs: &mut [KeyValue], f: &mut impl FnMut(&str, &mut String)) {
    for kv in kvs {
        let KeyValue { key, value } = kv;
        if let Some(v) = value {
            visit_value(key, v, f);
        }
    }
}

fn visit_value(key: &str, value: &mut AnyValue, f: &mut impl FnMut(&str, &mut String)) {
    match &mut value.value {
        Some(any_value::Value::StringValue(s)) => f(key, s),
        Some(any_value::Value::KvlistValue(list)) => visit_kvs(&mut list.values, f),
        Some(any_value::Value::ArrayValue(array)) => {
            for v in &mut array.values {
                visit_value(key, v, f);
            }
        }
        _ => {}
    }
}

/// Visits every attribute key (nested ones too).
fn visit_keys(kvs: &mut [KeyValue], f: &mut impl FnMut(&mut String)) {
    for kv in kvs {
        f(&mut kv.key);
        visit_value_keys(kv.value.as_mut(), f);
    }
}

fn visit_value_keys(value: Option<&mut AnyValue>, f: &mut impl FnMut(&mut String)) {
    match value.and_then(|v| v.value.as_mut()) {
        Some(any_value::Value::KvlistValue(list)) => visit_keys(&mut list.values, f),
        Some(any_value::Value::ArrayValue(array)) => {
            for v in &mut array.values {
                visit_value_keys(Some(v), f);
            }
        }
        _ => {}
    }
}

/// Visits the byte values under `kvs`.
fn visit_bytes(kvs: &mut [KeyValue], f: &mut impl FnMut(&mut Vec<u8>)) {
    fn value(v: &mut AnyValue, f: &mut impl FnMut(&mut Vec<u8>)) {
        match &mut v.value {
            Some(any_value::Value::BytesValue(b)) => f(b),
            Some(any_value::Value::KvlistValue(list)) => visit_bytes(&mut list.values, f),
            Some(any_value::Value::ArrayValue(array)) => {
                for v in &mut array.values {
                    value(v, f);
                }
            }
            _ => {}
        }
    }
    for kv in kvs {
        if let Some(v) = &mut kv.value {
            value(v, f);
        }
    }
}

/// Every attribute list of a span: its own, its events', its links'.
fn span_attribute_lists(span: &mut Span) -> Vec<&mut Vec<KeyValue>> {
    let mut lists = vec![&mut span.attributes];
    lists.extend(span.events.iter_mut().map(|e| &mut e.attributes));
    lists.extend(span.links.iter_mut().map(|l| &mut l.attributes));
    lists
}

/// Scrubs the keys and byte values of `lists` as text; `Err` names a drop detector.
fn scrub_keys_and_bytes(
    tokenizer: &Tokenizer,
    lists: &mut [&mut Vec<KeyValue>],
    replaced: &mut u64,
) -> Result<(), String> {
    let mut failed: Option<String> = None;
    for list in lists.iter_mut() {
        visit_keys(list, &mut |key| {
            if failed.is_some() {
                return;
            }
            match tokenizer.scrub_text(key) {
                Ok(std::borrow::Cow::Owned(new)) => {
                    *key = new;
                    *replaced += 1;
                }
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Err(detector) => failed = Some(detector),
            }
        });
        visit_bytes(list, &mut |bytes| {
            if failed.is_some() {
                return;
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            match tokenizer.scrub_text(text) {
                Ok(std::borrow::Cow::Owned(new)) => {
                    *bytes = new.into_bytes();
                    *replaced += 1;
                }
                Ok(std::borrow::Cow::Borrowed(_)) => {}
                Err(detector) => failed = Some(detector),
            }
        });
    }
    failed.map_or(Ok(()), Err)
}

/// Scrubs `message` and the string leaves of `lists` in one record; `Err` names a drop
/// detector.
fn scrub_strings(
    tokenizer: &Tokenizer,
    message: &mut String,
    extra: &mut [&mut String],
    lists: &mut [&mut Vec<KeyValue>],
    replaced: &mut u64,
) -> Result<(), String> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    for text in extra.iter_mut() {
        attributes.push((String::new(), std::mem::take(*text)));
    }
    for list in lists.iter_mut() {
        visit_kvs(list, &mut |key, value| {
            attributes.push((key.to_string(), std::mem::take(value)));
        });
    }
    let verdict = tokenizer.scrub_fields(message, None, &mut attributes);
    // The values go back where they came from, in the same order.
    let mut values = attributes.into_iter().map(|(_, v)| v);
    for text in extra.iter_mut() {
        **text = values.next().unwrap_or_default();
    }
    for list in lists.iter_mut() {
        visit_kvs(list, &mut |_, value| {
            *value = values.next().unwrap_or_default();
        });
    }
    match verdict {
        Verdict::Keep { replaced: n } => {
            *replaced += n as u64;
            Ok(())
        }
        Verdict::Drop { detector } => Err(detector),
    }
}

/// Scrubs one span in place; `Err` names the drop detector that matched.
pub fn scrub_span(
    tokenizer: &Tokenizer,
    span: &mut Span,
    replaced: &mut u64,
) -> Result<(), String> {
    let mut name = std::mem::take(&mut span.name);
    let mut status_message = span
        .status
        .as_mut()
        .map(|s| std::mem::take(&mut s.message))
        .unwrap_or_default();
    let mut event_names: Vec<String> = span
        .events
        .iter_mut()
        .map(|e| std::mem::take(&mut e.name))
        .collect();
    let result = {
        let mut extra: Vec<&mut String> = vec![&mut status_message];
        extra.extend(event_names.iter_mut());
        let mut lists = span_attribute_lists(span);
        scrub_strings(tokenizer, &mut name, &mut extra, &mut lists, replaced)
            .and_then(|()| scrub_keys_and_bytes(tokenizer, &mut lists, replaced))
    };
    span.name = name;
    if let Some(s) = span.status.as_mut() {
        s.message = status_message;
    }
    for (e, n) in span.events.iter_mut().zip(event_names) {
        e.name = n;
    }
    result
}

/// Scrubs a `ResourceSpans` in place: its resource and scope attributes, and every span
/// (a span a drop detector matches is removed).
pub fn scrub_resource_spans(tokenizer: &Tokenizer, rs: &mut ResourceSpans) -> Scrubbed {
    let mut out = Scrubbed::default();
    let total: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
    // Resource and scope attributes: a drop there drops every span under them.
    let mut empty = String::new();
    let mut lists: Vec<&mut Vec<KeyValue>> = Vec::new();
    if let Some(r) = rs.resource.as_mut() {
        lists.push(&mut r.attributes);
    }
    for s in &mut rs.scope_spans {
        if let Some(scope) = s.scope.as_mut() {
            lists.push(&mut scope.attributes);
        }
    }
    let head = scrub_strings(
        tokenizer,
        &mut empty,
        &mut [],
        &mut lists,
        &mut out.replaced,
    )
    .and_then(|()| scrub_keys_and_bytes(tokenizer, &mut lists, &mut out.replaced));
    if let Err(detector) = head {
        for s in &mut rs.scope_spans {
            s.spans.clear();
        }
        out.dropped = total;
        out.first_drop = (total > 0).then_some(detector);
        return out;
    }
    for s in &mut rs.scope_spans {
        s.spans.retain_mut(
            |span| match scrub_span(tokenizer, span, &mut out.replaced) {
                Ok(()) => {
                    out.kept += 1;
                    true
                }
                Err(detector) => {
                    out.dropped += 1;
                    out.first_drop.get_or_insert(detector);
                    false
                }
            },
        );
    }
    rs.scope_spans.retain(|s| !s.spans.is_empty());
    out
}

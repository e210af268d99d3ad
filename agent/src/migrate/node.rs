//! YAML read as a tree whose every key and value knows its line, so that a setting that
//! cannot be translated is reported where it is.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML value.
#[derive(Clone, Debug)]
pub enum Node {
    /// `~`, `null` or nothing.
    Null,
    /// A string, number or boolean, as text.
    Scalar(String),
    /// A sequence.
    Seq(Vec<Item>),
    /// A mapping, in file order.
    Map(Vec<(Item, Item)>),
}

/// A value and its line.
#[derive(Clone, Debug)]
pub struct Item {
    /// The value.
    pub node: Node,
    /// Its line, from 1.
    pub line: usize,
}

impl Item {
    /// The text of a scalar (`None` for anything else).
    pub fn text(&self) -> Option<&str> {
        match &self.node {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.entries()
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(_, v)| v)
    }

    /// The entries of a mapping (empty for anything else).
    pub fn entries(&self) -> &[(Item, Item)] {
        match &self.node {
            Node::Map(m) => m,
            _ => &[],
        }
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self) -> &[Item] {
        match &self.node {
            Node::Seq(s) => s,
            _ => &[],
        }
    }

    /// The key's text of a mapping entry (keys that are not scalars read as `?`).
    pub fn key_text(&self) -> &str {
        self.text().unwrap_or("?")
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Node>::deserialize(d)?;
        Ok(Item {
            node: spanned.value,
            line: usize::try_from(spanned.referenced.line()).unwrap_or(0),
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Item, Item>()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

/// Reads YAML text into a tree with lines.
pub fn parse(text: &str) -> Result<Item, String> {
    serde_saphyr::from_str::<Item>(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept() {
        let root = parse("a: 1\nb:\n  - x\n  - { c: d }\n").expect("parses");
        assert_eq!(root.get("a").and_then(Item::text), Some("1"));
        let b = root.get("b").expect("b");
        assert_eq!(b.items().len(), 2);
        assert_eq!(b.items()[0].line, 3);
        let c = b.items()[1].get("c").expect("c");
        assert_eq!((c.text(), c.line), (Some("d"), 4));
    }
}

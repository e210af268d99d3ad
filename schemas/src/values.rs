//! Label values that should never be label values: personal data (emails, IP
//! addresses) and unbounded identifiers or free text.
//!
//! One copy for every daemon, so `label-lint` in CI, the exporter and the agent at their
//! gate, and the gateway per request agree on what a suspicious value is. The checks are
//! deliberately simple and fast (no regex): one pass over the value's bytes decides
//! whether any detailed check can match, so an ordinary value (`eu-west-1`, `ranked`)
//! costs a few nanoseconds; they run on every label value of a request.

/// What a suspicious label value looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspect {
    /// An email address.
    Email,
    /// An IPv4 address (optionally with a port or prefix length).
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// A UUID.
    Uuid,
    /// A long number or hex string, or a token with many digits: an id of something.
    Identifier,
    /// Several words of text.
    FreeText,
}

impl Suspect {
    /// Whether this is personal data (as opposed to merely unbounded).
    pub fn is_pii(self) -> bool {
        matches!(self, Suspect::Email | Suspect::Ipv4 | Suspect::Ipv6)
    }

    /// A short description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Suspect::Email => "an email address",
            Suspect::Ipv4 => "an IPv4 address",
            Suspect::Ipv6 => "an IPv6 address",
            Suspect::Uuid => "a UUID",
            Suspect::Identifier => "an identifier (long number, hex string or id token)",
            Suspect::FreeText => "free text",
        }
    }
}

/// Classifies a label value. `bounded_label` says the label is known to take few values
/// per host (a host label such as `build_id`), in which case only personal data counts.
pub fn classify(value: &str, bounded_label: bool) -> Option<Suspect> {
    if !Shape::of(value).may_be_suspect(bounded_label) {
        return None;
    }
    classify_in_detail(value, bounded_label)
}

/// Every check, without the one-pass shortcut.
fn classify_in_detail(value: &str, bounded_label: bool) -> Option<Suspect> {
    if looks_like_email(value) {
        return Some(Suspect::Email);
    }
    if looks_like_ipv4(value) {
        return Some(Suspect::Ipv4);
    }
    if looks_like_ipv6(value) {
        return Some(Suspect::Ipv6);
    }
    if bounded_label {
        return None;
    }
    if looks_like_uuid(value) {
        return Some(Suspect::Uuid);
    }
    if looks_like_identifier(value) {
        return Some(Suspect::Identifier);
    }
    if looks_like_free_text(value) {
        return Some(Suspect::FreeText);
    }
    None
}

/// The label a value belongs to says whether to look at it at all: `le` and `quantile`
/// carry numbers, and a label whose values the catalog lists is already bounded.
pub fn is_checked_label(name: &str) -> bool {
    !matches!(name, "__name__" | "le" | "quantile")
}

/// What one pass over a value's bytes says about it: enough to rule out every check
/// below for an ordinary value.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    at: bool,
    colon: bool,
    whitespace: bool,
    digits: usize,
    all_hex: bool,
    len: usize,
}

impl Shape {
    fn of(v: &str) -> Self {
        let mut shape = Shape {
            all_hex: true,
            len: v.len(),
            ..Shape::default()
        };
        for b in v.bytes() {
            match b {
                b'0'..=b'9' => shape.digits += 1,
                b'@' => shape.at = true,
                b':' => shape.colon = true,
                // Any non-ASCII byte may start a Unicode space: let the word count decide.
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x80.. => shape.whitespace = true,
                _ => {}
            }
            shape.all_hex &= b.is_ascii_hexdigit();
        }
        shape
    }

    /// Whether any check could match: an email needs `@`, IPv6 a `:`, IPv4 four digits,
    /// a UUID 36 characters, an identifier six digits or sixteen hex characters, free
    /// text a space.
    fn may_be_suspect(self, bounded_label: bool) -> bool {
        self.at
            || self.colon
            || self.digits >= 4
            || (!bounded_label && (self.whitespace || self.all_hex || self.len == 36))
    }
}

fn looks_like_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// Dotted quad, each part 0–255, optionally followed by `:port` or `/prefix`.
fn looks_like_ipv4(v: &str) -> bool {
    let addr = v.split([':', '/']).next().unwrap_or(v);
    let mut parts = 0;
    for part in addr.split('.') {
        parts += 1;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if part.parse::<u16>().map_or(true, |n| n > 255) {
            return false;
        }
    }
    parts == 4
}

/// Parsed by the standard library, with brackets, a zone or a port stripped; mapped and
/// compressed forms included.
fn looks_like_ipv6(v: &str) -> bool {
    let mut s = v;
    if let Some(rest) = s.strip_prefix('[') {
        s = rest.split(']').next().unwrap_or(rest);
    }
    let s = s.split(['%', '/']).next().unwrap_or(s);
    s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn looks_like_uuid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Long all-digit strings (≥ 6 digits), long hex strings (≥ 16 characters with a digit),
/// and tokens with a run of 7+ digits (`plr-123456789`; an ASN such as `asn-64500` has
/// at most 10 digits and usually 5).
fn looks_like_identifier(v: &str) -> bool {
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    if v.len() >= 6 && digits == v.len() {
        return true;
    }
    if v.len() >= 16 && digits > 0 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    longest_digit_run(v) >= 7
        && !v.contains(char::is_whitespace)
        && !looks_numeric(v)
        && !looks_like_version(v)
}

fn longest_digit_run(v: &str) -> usize {
    v.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Dotted versions (`2026.11.3`, `1.42.0`): bounded per host, like `build_id`.
fn looks_like_version(v: &str) -> bool {
    v.contains('.') && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Plain numbers (`0.25`, `1e-3`) are values of things like `le` or `quantile`.
fn looks_numeric(v: &str) -> bool {
    v.parse::<f64>().is_ok()
}

/// Three or more words, or anything over 64 characters with a space.
fn looks_like_free_text(v: &str) -> bool {
    let words = v.split_whitespace().count();
    words >= 3 || (words >= 2 && v.len() > 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data() {
        assert_eq!(classify("jane@example.com", false), Some(Suspect::Email));
        assert_eq!(classify("198.51.100.7", false), Some(Suspect::Ipv4));
        assert_eq!(classify("198.51.100.7:7777", true), Some(Suspect::Ipv4));
        assert_eq!(classify("2001:db8::1", false), Some(Suspect::Ipv6));
        assert_eq!(classify("::ffff:192.0.2.1", false), Some(Suspect::Ipv6));
        assert_eq!(classify("[fe80::1%eth0]:80", false), Some(Suspect::Ipv6));
        assert_eq!(
            classify("2001:0db8:0000:0000:0000:ff00:0042:8329", false),
            Some(Suspect::Ipv6)
        );
    }

    #[test]
    fn unbounded_values() {
        assert_eq!(
            classify("3f2504e0-4f89-11d3-9a0c-0305e82c3301", false),
            Some(Suspect::Uuid)
        );
        assert_eq!(classify("123456789", false), Some(Suspect::Identifier));
        assert_eq!(classify("plr-123456789", false), Some(Suspect::Identifier));
        assert_eq!(
            classify("a3f9c2d17e5b4a60", false),
            Some(Suspect::Identifier)
        );
        assert_eq!(
            classify("player left the match early", false),
            Some(Suspect::FreeText)
        );
    }

    #[test]
    fn ordinary_values_pass() {
        for v in [
            "eu-west-1",
            "eu-west-1a",
            "c6i.2xlarge",
            "ranked",
            "17",
            "0.005",
            "+Inf",
            "1.2.3",
            "2026.11.3",
            "v1.42.0",
            "nvme0n1",
            "idle",
            "asn-64500",
            "12:30",
            "",
        ] {
            assert_eq!(classify(v, false), None, "{v}");
        }
    }

    #[test]
    fn the_one_pass_shortcut_never_hides_what_the_detailed_checks_find() {
        // Every string of up to 5 symbols over an alphabet that reaches every check, and
        // longer ones built from the same pieces (uuid, hex, dotted quad, words, email).
        let alphabet = ["a", "f", "z", "0", "7", "9", ".", ":", "@", "-", " ", "é"];
        let mut values: Vec<String> = vec![String::new()];
        let mut frontier = values.clone();
        for _ in 0..5 {
            let mut next = Vec::new();
            for v in &frontier {
                for a in alphabet {
                    next.push(format!("{v}{a}"));
                }
            }
            values.extend(next.iter().cloned());
            frontier = next;
        }
        for piece in [
            "abcdefabcdefabcd",
            "abcdefab-abcd-abcd-abcd-abcdefabcdef",
            "10.0.0.1",
            "jane@example.com",
            "1234567",
            "one two three",
            "a\u{a0}b\u{a0}c",
        ] {
            values.push(piece.to_string());
            values.push(format!("x{piece}"));
        }
        for v in &values {
            for bounded in [false, true] {
                assert_eq!(
                    classify(v, bounded),
                    classify_in_detail(v, bounded),
                    "{v:?} (bounded: {bounded})"
                );
            }
        }
    }

    #[test]
    fn bounded_labels_only_check_personal_data() {
        assert_eq!(
            classify("7f3c2a1e9b0d4c8f2a6e1b3d5c7f9a0b2c4e6f8a", true),
            None
        );
        assert_eq!(classify("ops@example.com", true), Some(Suspect::Email));
    }
}

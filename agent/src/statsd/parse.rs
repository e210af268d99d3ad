//! One statsd / DogStatsD line: `name:value[:value…]|type[|@rate][|#tag:v,tag2:v2][|…]`.
//!
//! Types: `c` counter, `g` gauge (`+N`/`-N` is a delta, a bare number sets it), `ms`
//! timer (milliseconds), `h` histogram, `d` distribution, `s` set. Several values packed
//! in one line (`name:1:2:3|d`, DogStatsD 1.1) are several observations. Fields after the
//! tags that DogStatsD added later (`|c:container`, `|T<timestamp>`) are ignored. A line
//! that does not parse is refused with the reason; the listener counts it and goes on.

/// The kind of a statsd metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `c`: adds up.
    Counter,
    /// `g`: the last value (or a delta with a sign).
    Gauge,
    /// `ms`: durations in milliseconds, exported in seconds.
    Timer,
    /// `h` and `d`: observations.
    Histogram,
    /// `s`: distinct values per cycle.
    Set,
}

/// One value of a line.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// A number.
    Number(f64),
    /// A gauge delta (`+N` / `-N`).
    Delta(f64),
    /// A set member, as written.
    Member(&'a str),
}

/// A parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line<'a> {
    /// The metric name as sent (dots and all).
    pub name: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// One or more values.
    pub values: Vec<Value<'a>>,
    /// The sample rate (`@0.1`: each value stands for 10), 1 without one.
    pub rate: f64,
    /// DogStatsD tags, `(name, value)`; a tag without `:` has an empty value.
    pub tags: Vec<(&'a str, &'a str)>,
}

/// Parses one line (without its newline).
pub fn parse(line: &str) -> Result<Line<'_>, String> {
    let line = line.trim_end_matches('\r');
    let (head, rest) = line
        .split_once('|')
        .ok_or_else(|| "no `|type` after the value".to_string())?;
    let (name, values) = head
        .split_once(':')
        .ok_or_else(|| "no `:` between the name and the value".to_string())?;
    if name.is_empty() {
        return Err("an empty metric name".into());
    }
    let mut fields = rest.split('|');
    let kind = match fields.next().unwrap_or("") {
        "c" => Kind::Counter,
        "g" => Kind::Gauge,
        "ms" => Kind::Timer,
        "h" | "d" => Kind::Histogram,
        "s" => Kind::Set,
        other => return Err(format!("unknown type `{other}`")),
    };
    let mut parsed = Vec::new();
    for v in values.split(':') {
        parsed.push(value(kind, v)?);
    }
    let mut rate = 1.0;
    let mut tags = Vec::new();
    for field in fields {
        if let Some(r) = field.strip_prefix('@') {
            rate = r
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && *r <= 1.0)
                .ok_or_else(|| format!("sample rate `{r}` is not in (0, 1]"))?;
        } else if let Some(t) = field.strip_prefix('#') {
            tags.extend(
                t.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.split_once(':').unwrap_or((t, ""))),
            );
        }
    }
    Ok(Line {
        name,
        kind,
        values: parsed,
        rate,
        tags,
    })
}

fn value(kind: Kind, v: &str) -> Result<Value<'_>, String> {
    if kind == Kind::Set {
        return if v.is_empty() {
            Err("an empty set member".into())
        } else {
            Ok(Value::Member(v))
        };
    }
    let number = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("value `{v}` is not a finite number"))
    };
    if kind == Kind::Gauge && (v.starts_with('+') || v.starts_with('-')) {
        return number(v).map(Value::Delta);
    }
    let n = number(v)?;
    // A counter never goes down, and a duration or observation here is a magnitude.
    if kind != Kind::Gauge && n < 0.0 {
        return Err(format!("value `{v}` is negative"));
    }
    Ok(Value::Number(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_rates_tags_and_packed_values() {
        let l = parse("game.kills:3|c|@0.5|#map:dust,mode:duel").expect("counter");
        assert_eq!(l.name, "game.kills");
        assert_eq!(l.kind, Kind::Counter);
        assert_eq!(l.values, [Value::Number(3.0)]);
        assert_eq!(l.rate, 0.5);
        assert_eq!(l.tags, [("map", "dust"), ("mode", "duel")]);
        assert_eq!(parse("q:+4|g").expect("gauge").values, [Value::Delta(4.0)]);
        assert_eq!(parse("q:-4|g").expect("gauge").values, [Value::Delta(-4.0)]);
        assert_eq!(parse("q:7|g").expect("gauge").values, [Value::Number(7.0)]);
        assert_eq!(parse("t:12.5|ms").expect("timer").kind, Kind::Timer);
        let d = parse("lat:1:2:3|d|#az").expect("packed");
        assert_eq!(d.values.len(), 3);
        assert_eq!(d.tags, [("az", "")]);
        assert_eq!(
            parse("u:p-1|s").expect("set").values,
            [Value::Member("p-1")]
        );
        // Later DogStatsD fields are ignored.
        assert!(parse("x:1|c|#a:b|c:container123|T1700000000").is_ok());
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        for (line, why) in [
            ("", "no `|type`"),
            ("noval|c", "no `:`"),
            (":1|c", "empty metric name"),
            ("x:1|z", "unknown type"),
            ("x:abc|c", "not a finite number"),
            ("x:NaN|g", "not a finite number"),
            ("x:1|c|@2", "sample rate"),
            ("x:-3|ms", "negative"),
            ("x:-3|c", "negative"),
            ("\u{0}\u{1}garbage", "no `|type`"),
        ] {
            let err = parse(line).expect_err(line);
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }
}

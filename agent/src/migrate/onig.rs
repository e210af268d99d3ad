//! Fluent Bit's regexes are Onigmo's (Ruby syntax); the agent's are the `regex` crate's.
//! Most patterns mean the same in both. This turns the rest into their equivalent, or
//! says why there is none:
//!
//! | Onigmo | agent |
//! |---|---|
//! | `(?<name>…)`, `(?'name'…)` | `(?P<name>…)` |
//! | `\h`, `\H` (a hex digit, not one) | `[0-9a-fA-F]`, `[^0-9a-fA-F]` |
//! | `(?m)` (Ruby: `.` matches a newline) | `(?s)` |
//! | `\Z` | `\z` (a line has no final newline here) |
//! | `(?>…)` atomic group, `*+` `++` `?+` possessive | `(?:…)`, `*` `+` `?` (noted: backtracking differs) |
//! | `(?#…)` | removed |
//! | `\e` | `\x1B` |
//! | look-around, back-references, `\K`, `\G`, subexpression calls | none: refused |

/// A translated pattern and what changed in meaning (empty: nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The pattern for the agent.
    pub pattern: String,
    /// Differences worth a note.
    pub notes: Vec<String>,
}

/// Translates an Onigmo pattern; `Err` says why it cannot be.
pub fn translate(onig: &str) -> Result<Translated, String> {
    let chars: Vec<char> = onig.chars().collect();
    let mut out = String::with_capacity(onig.len() + 8);
    let mut notes = Vec::new();
    let mut i = 0;
    // Depth of character classes (Onigmo nests them, as the regex crate does).
    let mut class = 0usize;
    // The last thing written was a quantifier (a `+` after it is possessive).
    let mut after_quantifier = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\\' {
            let Some(e) = next else {
                return Err("the pattern ends with a lone backslash".into());
            };
            i += 2;
            after_quantifier = false;
            match e {
                'h' if class > 0 => out.push_str("0-9a-fA-F"),
                'h' => out.push_str("[0-9a-fA-F]"),
                'H' if class == 0 => out.push_str("[^0-9a-fA-F]"),
                'Z' => {
                    out.push_str(r"\z");
                }
                'e' => out.push_str(r"\x1B"),
                '1'..='9' if class == 0 => {
                    return Err(format!(
                        "back-reference \\{e}: the agent's regexes have none"
                    ));
                }
                'k' | 'g' => {
                    return Err(format!(
                        "\\{e}<…> (a back-reference or subexpression call): the agent's regexes have none"
                    ));
                }
                'K' | 'G' | 'X' | 'y' | 'Y' => {
                    return Err(format!("\\{e}: the agent's regexes have no equivalent"));
                }
                'R' => out.push_str(r"(?:\r\n|\n|\r)"),
                _ => {
                    out.push('\\');
                    out.push(e);
                }
            }
            continue;
        }
        if class > 0 {
            match c {
                '[' => class += 1,
                ']' => class -= 1,
                _ => {}
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                class = 1;
                out.push(c);
                // `[]…]` and `[^]…]`: a first `]` is a literal.
                if next == Some('^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                i += 1;
                after_quantifier = false;
            }
            '(' if next == Some('?') => {
                let rest: String = chars[i + 2..].iter().take(3).collect();
                if rest.starts_with('<') && !rest.starts_with("<=") && !rest.starts_with("<!") {
                    out.push_str("(?P<");
                    i += 3;
                } else if let Some(stripped) = rest.strip_prefix('\'') {
                    // (?'name'…)
                    let _ = stripped;
                    let start = i + 3;
                    let Some(end) = chars[start..].iter().position(|&c| c == '\'') else {
                        return Err("an unterminated (?'name' group".into());
                    };
                    let name: String = chars[start..start + end].iter().collect();
                    out.push_str("(?P<");
                    out.push_str(&name);
                    out.push('>');
                    i = start + end + 1;
                } else if rest.starts_with('=')
                    || rest.starts_with('!')
                    || rest.starts_with("<=")
                    || rest.starts_with("<!")
                {
                    return Err(
                        "look-around ((?=…), (?!…), (?<=…), (?<!…)): the agent's regexes have none; rewrite it with the captured parts instead"
                            .into(),
                    );
                } else if rest.starts_with('>') {
                    out.push_str("(?:");
                    notes.push("an atomic group (?>…) became (?:…): it now backtracks".into());
                    i += 3;
                } else if rest.starts_with('#') {
                    let Some(end) = chars[i..].iter().position(|&c| c == ')') else {
                        return Err("an unterminated (?#…) comment".into());
                    };
                    i += end + 1;
                } else if rest.starts_with('~') {
                    return Err("an absence operator (?~…): the agent's regexes have none".into());
                } else {
                    // Inline flags: (?imx-imx) or (?imx-imx:…). Ruby's `m` is `s` here.
                    out.push_str("(?");
                    i += 2;
                    while let Some(&f) = chars.get(i) {
                        match f {
                            'm' => out.push('s'),
                            'i' | 'x' | '-' => out.push(f),
                            ':' | ')' => break,
                            other => {
                                return Err(format!(
                                    "the inline option {other:?}: the agent's regexes have no equivalent"
                                ));
                            }
                        }
                        i += 1;
                    }
                }
                after_quantifier = false;
            }
            '*' | '+' | '?' | '}' => {
                if c == '+' && after_quantifier {
                    if !notes.iter().any(|n: &String| n.starts_with("a possessive")) {
                        notes.push(
                            "a possessive quantifier (*+, ++, ?+) became greedy: it now backtracks"
                                .into(),
                        );
                    }
                    after_quantifier = false;
                    i += 1;
                    continue;
                }
                out.push(c);
                // `x??` is lazy, not possessive; a quantifier directly after `?` (lazy)
                // or `+` ends here.
                after_quantifier = !(c == '?' && after_quantifier);
                i += 1;
            }
            _ => {
                out.push(c);
                after_quantifier = false;
                i += 1;
            }
        }
    }
    if let Err(e) = regex::Regex::new(&out) {
        return Err(format!("the translated pattern does not compile: {e}"));
    }
    Ok(Translated {
        pattern: out,
        notes,
    })
}

/// Renames capture group `from` to `to` in a translated pattern (for a Time_Key the
/// agent does not know by name).
pub fn rename_group(pattern: &str, from: &str, to: &str) -> String {
    pattern.replace(&format!("(?P<{from}>"), &format!("(?P<{to}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(onig: &str) -> String {
        translate(onig).expect("translates").pattern
    }

    #[test]
    fn named_groups_and_onigmo_escapes() {
        assert_eq!(
            ok(r"^(?<time>[^ ]+) (?<level>[A-Z]+) (?<message>.*)$"),
            r"^(?P<time>[^ ]+) (?P<level>[A-Z]+) (?P<message>.*)$"
        );
        assert_eq!(ok(r"(?'id'\h+)"), r"(?P<id>[0-9a-fA-F]+)");
        assert_eq!(ok(r"[\h:]+"), r"[0-9a-fA-F:]+");
        assert_eq!(ok(r"(?m)a.b\Z"), r"(?s)a.b\z");
        assert_eq!(ok(r"a(?#note)b"), "ab");
        assert_eq!(ok(r"[]a]x"), r"[\]a]x");
        assert_eq!(ok(r"\/api\/v1"), r"\/api\/v1");
    }

    #[test]
    fn possessive_and_atomic_are_noted() {
        let t = translate(r"(?>a+)b++c?+d+?").expect("translates");
        assert_eq!(t.pattern, "(?:a+)b+c?d+?");
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
    }

    #[test]
    fn what_has_no_equivalent_is_refused_with_why() {
        for p in [r"(?<=a)b", r"a(?!b)", r"(a)\1", r"\k<x>", r"a\Kb"] {
            let e = translate(p).expect_err(p);
            assert!(
                e.contains("none") || e.contains("no equivalent"),
                "{p}: {e}"
            );
        }
    }
}

//! Reading Fluent Bit configs: classic `.conf` (with `@INCLUDE` and `@SET`) and YAML,
//! into sections of `key value` entries with their file and line.

use super::*;

/// One `key value` setting.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    /// As written (`Read_from_Head`).
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// One `[SECTION]` (or YAML list item) with its settings.
#[derive(Clone, Debug)]
pub(super) struct Section {
    /// `INPUT`, `FILTER`, `OUTPUT`, `SERVICE`, `PARSER`, `MULTILINE_PARSER`, …
    pub(super) kind: String,
    pub(super) file: PathBuf,
    pub(super) line: usize,
    pub(super) entries: Vec<Entry>,
}

impl Section {
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    pub(super) fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|e| e.value.as_str())
    }

    /// The plugin name, lower-case.
    pub(super) fn name(&self) -> String {
        self.value("name").unwrap_or("").to_ascii_lowercase()
    }

    /// How a note names one of its settings: `[INPUT] tail: Path`.
    pub(super) fn setting(&self, key: &str) -> String {
        let name = self.value("name").unwrap_or("");
        if key.is_empty() {
            format!("[{}] {name}", self.kind)
        } else {
            format!("[{}] {name}: {key}", self.kind)
        }
    }
}

/// How many `@INCLUDE` / `includes` levels are followed.
pub(super) const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads a config file and what it includes, classic or YAML (by extension, or by a first
/// setting that is a YAML key).
pub(super) fn load(path: &Path, sections: &mut Vec<Section>, depth: usize) -> anyhow::Result<()> {
    if depth > MAX_INCLUDE_DEPTH {
        anyhow::bail!(
            "{}: includes nest deeper than {MAX_INCLUDE_DEPTH} levels",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading Fluent Bit config {}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        load_yaml(path, &text, sections, depth)
    } else {
        load_classic(path, &text, sections, depth)
    }
}

pub(super) fn load_classic(
    path: &Path,
    text: &str,
    sections: &mut Vec<Section>,
    depth: usize,
) -> anyhow::Result<()> {
    let mut vars: HashMap<String, String> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(rest) = strip_prefix_ci(t, "@INCLUDE") {
            for file in include_files(path, rest.trim())? {
                load(&file, sections, depth + 1)?;
            }
            continue;
        }
        if let Some(rest) = strip_prefix_ci(t, "@SET") {
            if let Some((k, v)) = rest.trim().split_once('=') {
                vars.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            continue;
        }
        if t.starts_with('[') && t.ends_with(']') {
            sections.push(Section {
                kind: t[1..t.len() - 1].trim().to_ascii_uppercase(),
                file: path.to_path_buf(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let (key, value) = match t.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (t, ""),
        };
        let Some(section) = sections.last_mut().filter(|s| s.file == path) else {
            anyhow::bail!(
                "{}:{line}: `{key}` is outside any [SECTION]: is this a Fluent Bit config?",
                path.display()
            );
        };
        section.entries.push(Entry {
            key: key.to_owned(),
            value: substitute(value, &vars),
            line,
        });
    }
    Ok(())
}

pub(super) fn strip_prefix_ci<'a>(t: &'a str, prefix: &str) -> Option<&'a str> {
    let head = t.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &t[prefix.len()..])
        .filter(|rest| rest.starts_with(char::is_whitespace))
}

/// `${name}` of `@SET` variables; environment variables stay as written (the agent
/// expands them in paths too).
pub(super) fn substitute(value: &str, vars: &HashMap<String, String>) -> String {
    let mut out = value.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// The files an include names, relative to the including file; `*` in the file name.
pub(super) fn include_files(from: &Path, pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let base = from.parent().unwrap_or(Path::new("."));
    let full = base.join(pattern);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if !name.contains('*') {
        return Ok(vec![full]);
    }
    let dir = full.parent().unwrap_or(base);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {} for @INCLUDE {pattern}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| wild_match(&name, n))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn load_yaml(
    path: &Path,
    text: &str,
    sections: &mut Vec<Section>,
    depth: usize,
) -> anyhow::Result<()> {
    let root = node::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut vars = HashMap::new();
    if let Some(env) = root.get("env") {
        for (k, v) in env.entries() {
            vars.insert(k.key_text().to_owned(), v.text().unwrap_or("").to_owned());
        }
    }
    let section = |kind: &str, item: &Item| -> Section {
        let mut entries = Vec::new();
        for (k, v) in item.entries() {
            let key = k.key_text();
            if kind == "MULTILINE_PARSER" && key == "rules" {
                for rule in v.items() {
                    let get = |n: &str| rule.get(n).and_then(Item::text).unwrap_or("");
                    entries.push(Entry {
                        key: "rule".into(),
                        value: format!(
                            "\"{}\" \"{}\" \"{}\"",
                            get("state"),
                            get("regex"),
                            get("next_state")
                        ),
                        line: rule.line,
                    });
                }
                continue;
            }
            let value = match &v.node {
                node::Node::Scalar(s) => substitute(s, &vars),
                node::Node::Null => String::new(),
                // Nested settings (processors, …): kept so they are listed.
                _ => "(nested settings)".into(),
            };
            entries.push(Entry {
                key: key.to_owned(),
                value,
                line: k.line,
            });
        }
        Section {
            kind: kind.to_owned(),
            file: path.to_path_buf(),
            line: item.line,
            entries,
        }
    };
    for (k, v) in root.entries() {
        match k.key_text() {
            "env" => {}
            "includes" => {
                for inc in v.items() {
                    if let Some(p) = inc.text() {
                        for file in include_files(path, p)? {
                            load(&file, sections, depth + 1)?;
                        }
                    }
                }
            }
            "service" => sections.push(section("SERVICE", v)),
            "parsers" => sections.extend(v.items().iter().map(|p| section("PARSER", p))),
            "multiline_parsers" => {
                sections.extend(v.items().iter().map(|p| section("MULTILINE_PARSER", p)));
            }
            "pipeline" => {
                for (kind, key) in [
                    ("INPUT", "inputs"),
                    ("FILTER", "filters"),
                    ("OUTPUT", "outputs"),
                ] {
                    if let Some(list) = v.get(key) {
                        sections.extend(list.items().iter().map(|i| section(kind, i)));
                    }
                }
            }
            other => sections.push(Section {
                kind: other.to_ascii_uppercase(),
                file: path.to_path_buf(),
                line: k.line,
                entries: Vec::new(),
            }),
        }
    }
    Ok(())
}

/// Fluent Bit's tag wildcard: `*` matches any run.
pub(super) fn wild_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

//! `edge-agent migrate --from fluent-bit|adot FILE`: turns a Fluent Bit or ADOT / OpenTelemetry
//! Collector config into an `agent.yaml`.
//!
//! The translation is printed on stdout; every setting that could not be translated, or
//! that was translated with a difference worth knowing, is printed on stderr with its file,
//! line and why (`fluent-bit.conf:12: Exclude_Path: …`). The printed config passes
//! `edge-agent validate` (with `GATEWAY_URL` set, or `--gateway URL`).
//!
//! Files: [`fluent_bit`] reads classic `.conf` and YAML Fluent Bit configs and their
//! parsers files, [`adot`] reads collector YAML, [`onig`] turns Fluent Bit's Onigmo
//! regexes into ones the agent's `regex` crate accepts, [`node`] is YAML with positions,
//! and [`emit`] holds the agent config being built and prints it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub mod adot;
pub mod emit;
pub mod fluent_bit;
pub mod node;
pub mod onig;

/// The gateway URL written when none is given: the variable the image's cloud-init sets
/// in `/etc/edge-agent/agent.env` (see `packer/`).
pub const DEFAULT_GATEWAY: &str = "${GATEWAY_URL}";

/// Where the image keeps the agent's mTLS files.
pub const DEFAULT_TLS: [&str; 3] = [
    "/etc/edge-agent/tls/agent.crt",
    "/etc/edge-agent/tls/agent.key",
    "/etc/edge-agent/tls/ca.crt",
];

/// Where the image keeps the tokenization key.
pub const DEFAULT_KEY_FILE: &str = "/etc/edge-agent/tokenize.key";

/// What a note says about a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not translated: the agent has no equivalent, or the value cannot be carried over.
    Untranslated,
    /// Translated, with a difference worth knowing.
    Noted,
}

/// One setting the translation could not carry over as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line, from 1 (0 when unknown).
    pub line: usize,
    /// The setting, as the source config names it (`[INPUT] tail: Exclude_Path`).
    pub setting: String,
    /// Untranslated or noted.
    pub kind: Kind,
    /// Why, and what to do.
    pub why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Untranslated => "not translated",
            Kind::Noted => "note",
        };
        write!(
            f,
            "{}:{}: {kind}: {}: {}",
            self.file.display(),
            self.line,
            self.setting,
            self.why
        )
    }
}

/// The notes of one translation, in the order they were found.
#[derive(Debug, Default)]
pub struct Notes {
    /// Every note.
    pub notes: Vec<Note>,
}

impl Notes {
    /// Records a setting that was not translated.
    pub fn untranslated(
        &mut self,
        file: &Path,
        line: usize,
        setting: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.push(file, line, setting.into(), Kind::Untranslated, why.into());
    }

    /// Records a setting translated with a difference.
    pub fn noted(
        &mut self,
        file: &Path,
        line: usize,
        setting: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.push(file, line, setting.into(), Kind::Noted, why.into());
    }

    fn push(&mut self, file: &Path, line: usize, setting: String, kind: Kind, why: String) {
        self.notes.push(Note {
            file: file.to_path_buf(),
            line,
            setting,
            kind,
            why,
        });
    }
}

/// What to migrate from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// Fluent Bit: classic `.conf` or YAML.
    FluentBit,
    /// The AWS Distro for OpenTelemetry / the OpenTelemetry Collector: YAML.
    Adot,
}

/// `edge-agent migrate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config to translate from.
    #[arg(long, value_enum)]
    pub from: From,
    /// Fluent Bit's parsers file (default: the `Parsers_File` the config names).
    #[arg(long, value_name = "FILE")]
    pub parsers: Option<PathBuf>,
    /// The gateway's base URL (default: `${GATEWAY_URL}`, which the image's cloud-init sets).
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// The config file.
    pub file: PathBuf,
}

/// Translates a config; `Err` when the file cannot be read or is not a config at all.
pub fn translate(args: &Args) -> anyhow::Result<(String, Notes)> {
    let gateway = args.gateway.as_deref().unwrap_or(DEFAULT_GATEWAY);
    let mut notes = Notes::default();
    let agent = match args.from {
        From::FluentBit => {
            fluent_bit::translate(&args.file, args.parsers.as_deref(), gateway, &mut notes)?
        }
        From::Adot => adot::translate(&args.file, gateway, &mut notes)?,
    };
    Ok((agent.render(), notes))
}

/// Runs `edge-agent migrate`: the config on stdout, the notes on stderr. Exit 0 when a
/// config was printed (notes or not), 1 when the file could not be translated at all.
pub fn run(args: &Args) -> ExitCode {
    match translate(args) {
        Ok((text, notes)) => {
            print!("{text}");
            for note in &notes.notes {
                eprintln!("{note}");
            }
            let untranslated = notes
                .notes
                .iter()
                .filter(|n| n.kind == Kind::Untranslated)
                .count();
            eprintln!(
                "edge-agent migrate: {} setting(s) not translated, {} note(s)",
                untranslated,
                notes.notes.len() - untranslated
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-agent migrate: {e:#}");
            ExitCode::from(1)
        }
    }
}

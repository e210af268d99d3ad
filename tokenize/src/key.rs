//! The token key: loaded from its file, reloaded when the file changes, and the HMAC
//! that makes a token of a value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ring::{digest, hmac};

use super::{MIN_KEY_LEN, TokenizeError};

/// A secret key that tokens are made with.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    fingerprint: [u8; 32],
    mac: hmac::Key,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Reads a key file: raw bytes, surrounding whitespace trimmed, at least
    /// [`MIN_KEY_LEN`] bytes left.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TokenKey, TokenizeError> {
        let path = path.as_ref();
        let raw = std::fs::read(path).map_err(|source| TokenizeError::KeyRead {
            path: path.to_path_buf(),
            source,
        })?;
        TokenKey::build(&raw, || format!("token key file {}", path.display()))
    }

    /// A key from bytes already in memory, with the same rules as [`TokenKey::from_file`].
    pub fn from_bytes(raw: &[u8]) -> Result<TokenKey, TokenizeError> {
        TokenKey::build(raw, || "token key given in memory".to_owned())
    }

    fn build(raw: &[u8], origin: impl FnOnce() -> String) -> Result<TokenKey, TokenizeError> {
        let key = raw.trim_ascii();
        if key.len() < MIN_KEY_LEN {
            return Err(TokenizeError::KeyTooShort {
                origin: origin(),
                len: key.len(),
            });
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, key).as_ref());
        let mut id = String::with_capacity(8);
        push_hex(&mut id, &fingerprint[..4]);
        Ok(TokenKey {
            id,
            fingerprint,
            mac: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// The key id: the first 4 bytes of SHA-256 of the key, as 8 lower-case hex characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn write_token(&self, out: &mut String, value: &str) {
        let tag = hmac::sign(&self.mac, value.as_bytes());
        out.push_str("tok_");
        out.push_str(&self.id);
        out.push('_');
        push_hex(out, tag.as_ref().get(..8).unwrap_or_default());
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// (modification time, length) of a file, as a cheap "has it changed" check.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

/// A key file and the key it held when last loaded, reloaded when the file changes.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    key: TokenKey,
    stamp: Stamp,
}

impl KeyFile {
    /// Loads the key file once; an error here should stop the agent at startup.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyFile, TokenizeError> {
        let path = path.into();
        // Stamped before reading: a write racing the read shows as a change next time.
        let stamp = stamp(&path);
        let key = TokenKey::from_file(&path)?;
        Ok(KeyFile { path, key, stamp })
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key in force.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Looks at the file's modification time and length, and reloads it if they changed.
    /// `Ok(true)` when the key is now a different one (hand it to
    /// [`Tokenizer::set_key`]). A changed file that does not load (missing, half
    /// written, too short) leaves the previous key in force and returns the error; the
    /// next call tries again.
    pub fn reload_if_changed(&mut self) -> Result<bool, TokenizeError> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return Ok(false);
        }
        let key = TokenKey::from_file(&self.path)?;
        self.stamp = now;
        if key.fingerprint == self.key.fingerprint {
            return Ok(false);
        }
        tracing::info!(
            path = %self.path.display(),
            old_key_id = %self.key.id,
            key_id = %key.id,
            "token key reloaded"
        );
        self.key = key;
        Ok(true)
    }
}

//! Named tokens with scopes: the tokens file (`--tokens-file`), which holds for each token its name,
//! the SHA-256 of the token (never the token), its scope and an optional expiry; the check of a
//! presented token; and `cpe-config token create`, which adds one.

use anyhow::{bail, Context, Result};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every GET: status, listings, search.
    Read,
    /// Create, cancel, retry and the bulk actions, and what `read` may.
    Operate,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }
}

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    /// Hex of the token's SHA-256.
    pub sha256: String,
    pub scope: Scope,
    /// Unix seconds after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

/// Who presented a token, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub scope: Scope,
}

/// The tokens in force: `--api-token` (an `admin` token named `default`) and the file's, re-read
/// when the file changes.
pub struct Tokens {
    default: Option<[u8; 32]>,
    file: Option<PathBuf>,
    entries: RwLock<(Option<SystemTime>, Arc<Vec<Entry>>)>,
}

impl Tokens {
    /// Refuses a tokens file that is not valid, or that others than its owner may read.
    pub fn open(api_token: Option<&str>, file: Option<&Path>) -> Result<Self> {
        let (modified, entries) = match file {
            Some(path) => {
                let (modified, entries) = read(path)?;
                (Some(modified), entries)
            }
            None => (None, Vec::new()),
        };
        Ok(Self {
            default: api_token.map(sha256),
            file: file.map(Path::to_owned),
            entries: RwLock::new((modified, Arc::new(entries))),
        })
    }

    /// Whether any token is configured: then every task route needs one.
    pub fn required(&self) -> bool {
        self.default.is_some() || self.file.is_some()
    }

    /// The holder of `presented`, if it is a token in force. Every entry is compared, in constant
    /// time, so the time taken says nothing about which matched or how much.
    pub fn check(&self, presented: &str) -> Option<Holder> {
        let given = sha256(presented);
        let now = unix_now();
        let mut found = None;
        if self.default.is_some_and(|default| constant_time_eq(&given, &default)) {
            found = Some(Holder {
                name: "default".into(),
                scope: Scope::Admin,
            });
        }
        for entry in self.current().iter() {
            let Some(hash) = from_hex(&entry.sha256) else { continue };
            let live = entry.expires.is_none_or(|expires| now < expires);
            if constant_time_eq(&given, &hash) && live && found.is_none() {
                found = Some(Holder {
                    name: entry.name.clone(),
                    scope: entry.scope,
                });
            }
        }
        found
    }

    fn current(&self) -> Arc<Vec<Entry>> {
        self.entries.read().expect("tokens lock").1.clone()
    }

    /// Re-reads the file when it changed since the last read; a file that became invalid (or
    /// readable by others) is refused with a log line, and the tokens read before stay in force.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == self.entries.read().expect("tokens lock").0 {
            return;
        }
        match read(path) {
            Ok((modified, entries)) => {
                tracing::info!(path = %path.display(), tokens = entries.len(), "tokens file read again");
                *self.entries.write().expect("tokens lock") = (Some(modified), Arc::new(entries));
            }
            Err(error) => {
                tracing::error!(path = %path.display(), error = %format!("{error:#}"), "tokens file refused; the tokens read before stay in force");
                self.entries.write().expect("tokens lock").0 = modified;
            }
        }
    }

    /// Looks at the file every `every` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.file.as_ref()?;
        let tokens = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let tokens = tokens.clone();
                let _ = tokio::task::spawn_blocking(move || tokens.reload_if_changed()).await;
            }
        }))
    }
}

/// The file's entries and when it was last changed; refused when others than its owner may read
/// it, or when it is not a valid tokens file.
fn read(path: &Path) -> Result<(SystemTime, Vec<Entry>)> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read the tokens file {}", path.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        bail!(
            "the tokens file {} may be read by others than its owner: chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read(path).with_context(|| format!("cannot read the tokens file {}", path.display()))?;
    let file: File = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a tokens file ({{\"tokens\": [...]}})", path.display()))?;
    for entry in &file.tokens {
        if from_hex(&entry.sha256).is_none() {
            bail!(
                "{}: token `{}` has no valid sha256 (64 hex digits)",
                path.display(),
                entry.name
            );
        }
        if !valid_name(&entry.name) {
            bail!(
                "{}: `{}` is not a token name (1 to 64 letters, digits, - _ .)",
                path.display(),
                entry.name
            );
        }
    }
    Ok((metadata.modified()?, file.tokens))
}

/// Adds a new token named `name` to the file (created, owner-only, when missing) and returns the
/// token, which is shown once and kept nowhere.
pub fn create(path: &Path, name: &str, scope: Scope, valid_for: Option<Duration>) -> Result<String> {
    if !valid_name(name) {
        bail!("`{name}` is not a token name: 1 to 64 letters, digits, - _ .");
    }
    let mut file = if path.exists() {
        let (_, tokens) = read(path)?;
        File { tokens }
    } else {
        File::default()
    };
    if file.tokens.iter().any(|entry| entry.name == name) {
        bail!(
            "a token named `{name}` is in {} already: remove its entry first",
            path.display()
        );
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let token = format!("cpe_{}", hex(&secret));
    file.tokens.push(Entry {
        name: name.to_owned(),
        sha256: hex(&sha256(&token)),
        scope,
        expires: valid_for.map(|d| unix_now() + d.as_secs()),
    });
    write(path, &file)?;
    Ok(token)
}

/// The file's tokens as lines of name, scope and expiry (never a digest).
pub fn list(path: &Path) -> Result<Vec<String>> {
    let (_, tokens) = read(path)?;
    let now = unix_now();
    Ok(tokens
        .iter()
        .map(|entry| {
            let expiry = match entry.expires {
                None => "never expires".to_owned(),
                Some(at) if at <= now => format!("expired {}s ago", now - at),
                Some(at) => format!(
                    "expires in {}",
                    crate::duration::format_duration(Duration::from_secs(at - now))
                ),
            };
            format!("{}\t{}\t{expiry}", entry.name, entry.scope.name())
        })
        .collect())
}

/// Removes the token named `name`; a running instance refuses it within seconds.
pub fn remove(path: &Path, name: &str) -> Result<()> {
    let (_, mut tokens) = read(path)?;
    let before = tokens.len();
    tokens.retain(|entry| entry.name != name);
    if tokens.len() == before {
        bail!("no token named `{name}` in {}", path.display());
    }
    write(path, &File { tokens })
}

/// Written beside, then renamed: a running instance never reads half a file.
fn write(path: &Path, file: &File) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    serde_json::to_writer_pretty(&mut out, file)?;
    std::io::Write::write_all(&mut out, b"\n")?;
    out.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn sha256(text: &str) -> [u8; 32] {
    digest(&SHA256, text.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Compares without an early exit: the time taken does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;

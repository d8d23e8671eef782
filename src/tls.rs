//! TLS material: a self-signed pair generated on first start, the server config, and the client trust.

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";
const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// One crypto provider for the whole process (ring); safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join(CERT_FILE)
}

/// Makes sure `dir` holds a certificate pair: keeps an existing one, generates one when both are missing.
/// Returns true when it generated.
pub fn ensure_pair(dir: &Path) -> Result<bool> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(false),
        (false, false) => {
            generate_pair(dir, false)?;
            Ok(true)
        }
        (true, false) => bail!(
            "{} exists but {} is missing: add the key, or remove the certificate to generate a new pair",
            cert.display(),
            key.display()
        ),
        (false, true) => bail!(
            "{} exists but {} is missing: add the certificate, or remove the key to generate a new pair",
            key.display(),
            cert.display()
        ),
    }
}

/// Writes a new self-signed pair for localhost, 127.0.0.1 and ::1. The key file is created with mode 0600.
pub fn generate_pair(dir: &Path, replace: bool) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the certificates directory {}", dir.display()))?;
    let names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    let pair = rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
    write_file(
        &dir.join(KEY_FILE),
        pair.signing_key.serialize_pem().as_bytes(),
        0o600,
        replace,
    )?;
    write_file(&dir.join(CERT_FILE), pair.cert.pem().as_bytes(), 0o644, replace)?;
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if replace {
        let _ = std::fs::remove_file(path);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The served certificate (the first of the chain in `dir`): which names Service B answers to.
pub fn leaf_certificate(dir: &Path) -> Result<CertificateDer<'static>> {
    let cert_file = dir.join(CERT_FILE);
    CertificateDer::pem_file_iter(&cert_file)
        .with_context(|| format!("cannot read {}", cert_file.display()))?
        .next()
        .with_context(|| format!("{} holds no certificate", cert_file.display()))?
        .with_context(|| format!("{} is not a PEM certificate file", cert_file.display()))
}

/// The server side: the pair in `dir`, HTTP/2 and HTTP/1.1 offered through ALPN.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let cert_file = dir.join(CERT_FILE);
    let key_file = dir.join(KEY_FILE);
    let chain = CertificateDer::pem_file_iter(&cert_file)
        .with_context(|| format!("cannot read {}", cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", cert_file.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .with_context(|| format!("{} holds no readable PEM private key", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "{} does not match {} or is not usable",
                key_file.display(),
                cert_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate workers trust when calling Service A.
pub fn client_trust(dir: &Path) -> Result<reqwest::Certificate> {
    let path = cert_path(dir);
    let pem = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    reqwest::Certificate::from_pem(&pem).with_context(|| format!("{} is not a PEM certificate", path.display()))
}

#[cfg(test)]
mod tests;

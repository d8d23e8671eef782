//! Unit tests of `tls.rs`.

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cpe-tls-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn generates_a_usable_pair_with_a_private_key_file() {
    install_crypto_provider();
    let dir = temp_dir("gen");
    assert!(ensure_pair(&dir).unwrap());
    assert!(!ensure_pair(&dir).unwrap(), "an existing pair is kept");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    server_config(&dir).unwrap();
    client_trust(&dir).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_half_pair_or_garbage_is_a_clear_error() {
    install_crypto_provider();
    let dir = temp_dir("bad");
    std::fs::write(dir.join(CERT_FILE), "not a certificate").unwrap();
    assert!(ensure_pair(&dir)
        .unwrap_err()
        .to_string()
        .contains("key.pem is missing"));
    std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
    let error = format!("{:#}", server_config(&dir).unwrap_err());
    assert!(error.contains("cert.pem"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

//! Named tokens with scopes (issue 17): made by `cpe-config token create`, taken by a running
//! instance without a restart, refused once expired or removed; a `read` token cannot write.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn create_token(file: &Path, name: &str, scope: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .args(["token", "create", name, "--scope", scope])
        .args(extra)
        .arg(format!("--tokens-file={}", file.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `cpe-config token ARGS --tokens-file=FILE`; its standard output.
fn token_cli(file: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .arg("token")
        .args(args)
        .arg(format!("--tokens-file={}", file.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn tokens_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cpe-tokens-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tokens.json")
}

async fn create_with(b: Option<std::net::SocketAddr>, token: &str) -> (u16, serde_json::Value) {
    let post = client()
        .post(url(b, "/api/v1/equipment/cpe/tok00001"))
        .bearer_auth(token)
        .body(EXAMPLE);
    send(post).await
}

#[tokio::test]
async fn a_token_made_by_the_cli_works_at_once_within_its_scope_and_not_after_it_ends() {
    let file = tokens_file();
    let reader = create_token(&file, "wall-screen", "read", &[]);
    let app = start(&[&format!("--tokens-file={}", file.display())]).await;
    let b = app.service_b_addr;

    let (code, answer) = create_with(b, &reader).await;
    assert_eq!(code, 403, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("scope read"), "{answer}");
    let (code, _) = send(client().get(url(b, "/api/v1/tasks")).bearer_auth(&reader)).await;
    assert_eq!(code, 200, "a read token reads");
    assert_eq!(
        send(client().get(url(b, "/api/v1/tasks"))).await.0,
        401,
        "no token, no answer"
    );
    // The dashboard learns the scope, and that it may not write.
    let (_, mode) = send(client().get(url(b, "/api/v1/dashboard")).bearer_auth(&reader)).await;
    assert_eq!(
        (mode["scope"].as_str(), mode["writable"].as_bool()),
        (Some("read"), Some(false)),
        "{mode}"
    );

    // Made while the instance runs: taken within seconds, no restart.
    let operator = create_token(&file, "provisioning", "operate", &[]);
    let created = eventually(Duration::from_secs(10), "the new token is taken", || async {
        let (code, answer) = create_with(b, &operator).await;
        (code == 200).then_some(answer)
    })
    .await;
    assert!(created["taskId"].is_string(), "{created}");

    // Expired: refused like an unknown token.
    let brief = create_token(&file, "brief", "operate", &["--expires=1s"]);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(create_with(b, &brief).await.0, 401, "expired");

    // Listed by name, scope and expiry, never by token; removed by the CLI: refused within seconds.
    let listed = token_cli(&file, &["list"]);
    assert!(listed.contains("provisioning\toperate\tnever expires"), "{listed}");
    assert!(listed.contains("brief\toperate\texpired"), "{listed}");
    assert!(!listed.contains(&operator) && !listed.contains("sha256"), "{listed}");
    token_cli(&file, &["remove", "provisioning"]);
    eventually(Duration::from_secs(10), "the removed token is refused", || async {
        (create_with(b, &operator).await.0 == 401).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[tokio::test]
async fn a_tokens_file_others_may_read_stops_the_start_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let file = tokens_file();
    create_token(&file, "ops", "operate", &[]);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = ["--store=memory".to_owned(), format!("--tokens-file={}", file.display())];
    let refused = cpe_test_support::start_app(&certs_dir(), args)
        .await
        .err()
        .expect("refused");
    assert!(format!("{refused:#}").contains("chmod 600"), "{refused:#}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

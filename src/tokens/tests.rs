//! Unit tests of `tokens.rs`.

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cpe-tokens-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tokens.json")
}

#[test]
fn a_created_token_is_known_by_name_and_scope_and_only_its_hash_is_kept() {
    let path = scratch("create");
    let token = create(&path, "wall-screen", Scope::Read, None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&token), "the token itself is never written");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let tokens = Tokens::open(None, Some(&path)).unwrap();
    assert!(tokens.required());
    assert_eq!(
        tokens.check(&token),
        Some(Holder {
            name: "wall-screen".into(),
            scope: Scope::Read
        })
    );
    assert_eq!(tokens.check("cpe_not-a-token"), None);
    assert!(create(&path, "wall-screen", Scope::Admin, None)
        .unwrap_err()
        .to_string()
        .contains("already"));
    assert!(create(&path, "bad name", Scope::Admin, None).is_err());
}

#[test]
fn a_token_added_or_removed_meanwhile_counts_after_a_reload_and_an_expired_one_never() {
    let path = scratch("reload");
    let first = create(&path, "first", Scope::Operate, None).unwrap();
    let tokens = Tokens::open(Some("the-api-token-0123456789"), Some(&path)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let second = create(&path, "second", Scope::Admin, None).unwrap();
    assert_eq!(tokens.check(&second), None, "not before the file is read again");
    tokens.reload_if_changed();
    assert_eq!(tokens.check(&second).map(|h| h.scope), Some(Scope::Admin));
    assert_eq!(tokens.check(&first).map(|h| h.name), Some("first".to_owned()));
    assert_eq!(
        tokens.check("the-api-token-0123456789"),
        Some(Holder {
            name: "default".into(),
            scope: Scope::Admin
        })
    );

    // Removed: the file written again without it.
    let mut file: File = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file.tokens.retain(|entry| entry.name != "first");
    file.tokens[0].expires = Some(unix_now() - 1);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    tokens.reload_if_changed();
    assert_eq!(tokens.check(&first), None, "removed");
    assert_eq!(tokens.check(&second), None, "expired");
}

#[test]
fn a_file_others_may_read_is_refused_with_the_fix_and_a_bad_reload_keeps_the_tokens_in_force() {
    let path = scratch("mode");
    let token = create(&path, "ops", Scope::Operate, Some(Duration::from_secs(3600))).unwrap();
    let tokens = Tokens::open(None, Some(&path)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Tokens::open(None, Some(&path)).err().unwrap().to_string();
    assert!(refused.contains("chmod 600"), "{refused}");
    tokens.reload_if_changed();
    assert_eq!(tokens.check(&token).map(|h| h.scope), Some(Scope::Operate));
    let missing = Tokens::open(None, Some(&path.with_file_name("none.json")))
        .err()
        .unwrap();
    assert!(
        format!("{missing:#}").contains("cannot read the tokens file"),
        "{missing:#}"
    );
}

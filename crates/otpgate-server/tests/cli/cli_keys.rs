//! `otpgate keys api-key` (issue 16 item 1: the sample config ships no key, this makes one):
//! a fresh key each run, and an `api_keys` entry that is the SHA-256 of that key.
#![allow(clippy::expect_used, missing_docs)]

use std::process::Command;

use sha2::Digest as _;

fn api_key() -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(["keys", "api-key"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no {label} in {text}"))
    };
    (field("api key:"), field("api_keys entry:"))
}

#[test]
fn api_key_prints_a_fresh_key_and_its_digest_entry() {
    let (key, entry) = api_key();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert_eq!(
        entry,
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        )
    );
    let (again, _) = api_key();
    assert_ne!(key, again);
}

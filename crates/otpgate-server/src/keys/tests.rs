//! Tests of the key ring, rotation and revocation.

use std::collections::HashMap;
use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use otpgate_core::code::Code;
use otpgate_core::receipt::{Claims, Expectations, Jwks, verify};

use super::rotation::rotate_at;
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn claims() -> Claims {
    Claims {
        iss: "https://otp.example".into(),
        aud: "shop".into(),
        sub: "v_1".into(),
        jti: "v_1".into(),
        phone_number: "+14155550123".into(),
        phone_number_verified: true,
        iat: 1000,
        exp: 1600,
    }
}

fn expect() -> Expectations<'static> {
    Expectations {
        audience: "shop",
        issuer: "https://otp.example",
        now: 1200,
        leeway: 0,
    }
}

#[test]
fn keys_persist_across_loads_with_private_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = KeyRing::load_with(dir.path(), &no_env, 1_000).expect("create");
    let b = KeyRing::load_with(dir.path(), &no_env, 2_000).expect("load");
    assert_eq!(a.receipt_kid(), b.receipt_kid());
    assert_eq!(a.jwks(), b.jwks());
    assert_eq!(a.code_key().id(), b.code_key().id());
    assert_eq!(a.pow_key(), b.pow_key());
    assert_eq!(a.pseudonym_key(), b.pseudonym_key());
    assert!(a.pow_key().len() >= 32 && a.pow_key() != a.pseudonym_key());
    let jwt = a.sign_receipt(&claims());
    assert_eq!(verify(&jwt, &b.jwks(), &expect()), Ok(claims()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for entry in fs::read_dir(dir.path().join("keys")).expect("dir") {
            let entry = entry.expect("entry");
            let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", entry.file_name());
            assert!(!entry.file_name().to_string_lossy().ends_with(".tmp"));
        }
    }
}

#[test]
fn rotation_keeps_the_old_kid_verifiable_and_old_codes_checkable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = KeyRing::load_with(dir.path(), &no_env, 1_000).expect("create");
    let old_jwt = old.sign_receipt(&claims());
    let code = Code::new("123456");
    let old_digest = old.code_key().digest("v_1", &code);

    let r = rotate_at(dir.path(), 2_000).expect("rotate");
    let new = KeyRing::load_with(dir.path(), &no_env, 3_000).expect("load");
    assert_eq!(new.receipt_kid(), r.receipt_kid);
    assert_ne!(new.receipt_kid(), old.receipt_kid());
    assert_eq!(new.jwks().keys.len(), 2);
    assert_eq!(new.jwks().keys[0].kid, r.receipt_kid, "current key first");
    // A receipt signed before the rotation still verifies, and a new one too.
    assert_eq!(verify(&old_jwt, &new.jwks(), &expect()), Ok(claims()));
    assert_eq!(
        verify(&new.sign_receipt(&claims()), &new.jwks(), &expect()),
        Ok(claims())
    );
    // The old code key still checks codes issued before the rotation.
    assert_ne!(new.code_key().id(), old.code_key().id());
    let k = new
        .code_key_by_id(old.code_key().id())
        .expect("old code key kept");
    assert!(k.matches("v_1", &code, &old_digest));
    assert!(new.code_key_by_id("nope").is_none());
    // PoW and pseudonym keys do not rotate (pseudonyms stay comparable).
    assert_eq!(new.pseudonym_key(), old.pseudonym_key());

    // After the retention, the old key leaves the JWKS, and the next rotation deletes it.
    let later = 2_000 + RECEIPT_KEY_RETENTION_MS + 1;
    let aged = KeyRing::load_with(dir.path(), &no_env, later).expect("load");
    assert_eq!(aged.jwks().keys.len(), 1);
    assert!(aged.code_key_by_id(old.code_key().id()).is_none());
    let r2 = rotate_at(dir.path(), later).expect("rotate");
    assert!(r2.pruned.contains(&old.receipt_kid().to_owned()));
    assert!(
        !dir.path()
            .join("keys")
            .join(format!("receipt-{}.pem", old.receipt_kid()))
            .exists()
    );
}

#[test]
fn a_revoked_key_leaves_the_jwks_and_the_current_one_cannot_be_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = KeyRing::load_with(dir.path(), &no_env, 1_000).expect("create");
    let old_jwt = old.sign_receipt(&claims());
    let current = revoke(dir.path(), old.receipt_kid()).expect_err("current");
    assert!(current.to_string().contains("rotate"), "{current}");
    assert!(revoke(dir.path(), "r_nope").is_err(), "unknown id");

    rotate_at(dir.path(), 2_000).expect("rotate");
    assert_eq!(
        revoke(dir.path(), old.receipt_kid()).expect("revoke"),
        "receipt"
    );
    assert_eq!(
        revoke(dir.path(), old.code_key().id()).expect("revoke"),
        "code"
    );
    let new = KeyRing::load_with(dir.path(), &no_env, 3_000).expect("load");
    assert_eq!(new.jwks().keys.len(), 1, "only the new key is published");
    assert!(
        verify(&old_jwt, &new.jwks(), &expect()).is_err(),
        "a receipt of the revoked key no longer verifies"
    );
    assert!(new.code_key_by_id(old.code_key().id()).is_none());
    let keys = dir.path().join("keys");
    assert!(
        !keys
            .join(format!("receipt-{}.pem", old.receipt_kid()))
            .exists()
    );
    assert!(
        !keys
            .join(format!("code-{}.key", old.code_key().id()))
            .exists()
    );
    assert!(revoke(dir.path(), old.receipt_kid()).is_err(), "gone");
}

#[test]
fn environment_overrides_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signing = SigningKey::from_bytes(&[7; 32]);
    let pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem")
        .to_string();
    let pem_file = dir.path().join("receipt.pem");
    fs::write(&pem_file, &pem).expect("write");
    let mut env = HashMap::new();
    env.insert("OTPGATE_RECEIPT_KEY_FILE", pem_file.display().to_string());
    env.insert("OTPGATE_CODE_KEY", STANDARD.encode([1u8; 32]));
    env.insert("OTPGATE_POW_KEY", STANDARD.encode([2u8; 32]));
    env.insert("OTPGATE_PSEUDONYM_KEY", STANDARD.encode([3u8; 32]));
    env.insert("OTPGATE_AUDIT_KEY", STANDARD.encode([4u8; 32]));
    let get = |k: &str| env.get(k).cloned();
    let data = dir.path().join("data");
    let a = KeyRing::load_with(&data, &get, 0).expect("load");
    let b = KeyRing::load_with(&data, &get, 0).expect("load");
    assert!(!data.exists(), "all keys from env: nothing written");
    assert_eq!(
        a.jwks().keys[0].x,
        URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes())
    );
    assert_eq!(
        a.receipt_kid(),
        b.receipt_kid(),
        "ids derived, shared by instances"
    );
    assert_eq!(a.code_key().id(), b.code_key().id());
    assert_eq!(a.pow_key(), &[2u8; 32]);
    assert_eq!(a.pseudonym_key(), &[3u8; 32]);
    assert_eq!(a.sources()["code"], "$OTPGATE_CODE_KEY");
    assert_eq!(a.audit_key().id(), b.audit_key().id(), "derived, shared");
    assert_eq!(a.audit_keys().len(), 1);
    assert_eq!(a.sources()["audit"], "$OTPGATE_AUDIT_KEY");

    // Only one key from env: the others come from files.
    let mut partial = HashMap::new();
    partial.insert("OTPGATE_POW_KEY", STANDARD.encode([9u8; 32]));
    let get = |k: &str| partial.get(k).cloned();
    let c = KeyRing::load_with(&data, &get, 0).expect("load");
    assert_eq!(c.pow_key(), &[9u8; 32]);
    assert!(data.join("keys").join("manifest.json").exists());
}

#[test]
fn bad_keys_are_clear_errors_naming_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = KeyRing::load_with(dir.path(), &no_env, 0).expect("create");
    let pem = dir
        .path()
        .join("keys")
        .join(format!("receipt-{}.pem", ring.receipt_kid()));
    fs::write(
        &pem,
        "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let err = format!(
        "{:#}",
        KeyRing::load_with(dir.path(), &no_env, 0).expect_err("bad pem")
    );
    assert!(err.contains(&pem.display().to_string()), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    KeyRing::load_with(dir.path(), &no_env, 0).expect("create");
    let pow = dir.path().join("keys").join("pow.key");
    fs::write(&pow, STANDARD.encode([1u8; 8])).expect("write");
    let err = format!(
        "{:#}",
        KeyRing::load_with(dir.path(), &no_env, 0).expect_err("short")
    );
    assert!(
        err.contains("pow.key") && err.contains("too short"),
        "{err}"
    );

    let env = |k: &str| (k == "OTPGATE_CODE_KEY").then(|| "not base64!".to_owned());
    let err = format!(
        "{:#}",
        KeyRing::load_with(dir.path(), &env, 0).expect_err("bad env")
    );
    assert!(err.contains("$OTPGATE_CODE_KEY"), "{err}");
    let env = |k: &str| (k == "OTPGATE_RECEIPT_KEY_FILE").then(|| "/nonexistent/r.pem".to_owned());
    let err = format!(
        "{:#}",
        KeyRing::load_with(dir.path(), &env, 0).expect_err("missing file")
    );
    assert!(err.contains("/nonexistent/r.pem"), "{err}");
}

#[test]
fn concurrent_first_starts_agree_on_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || KeyRing::load_with(&p, &no_env, 0).expect("load").jwks())
        })
        .collect();
    let sets: Vec<Jwks> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(sets.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn debug_redacts() {
    let ring = KeyRing::ephemeral();
    let s = format!("{ring:?}");
    assert!(s.contains("[redacted]"));
    assert!(!s.contains(&hex::encode(ring.pow_key())));
    assert_ne!(KeyRing::ephemeral().receipt_kid(), ring.receipt_kid());
}

#[test]
fn audit_keys_rotate_and_retired_ones_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = KeyRing::load_with(dir.path(), &no_env, 1_000).expect("create");
    let a1 = first.audit_key().id().to_owned();
    assert!(a1.starts_with('a'), "{a1}");
    let r = rotate_at(dir.path(), 2_000).expect("rotate");
    // Long after every other retention: the old audit key still verifies its lines.
    let later = 2_000 + RECEIPT_KEY_RETENTION_MS * 100;
    rotate_at(dir.path(), later).expect("rotate again");
    let ring = KeyRing::load_with(dir.path(), &no_env, later).expect("load");
    let ids: Vec<&str> = ring.audit_keys().iter().map(|k| k.id()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[1], r.audit_key_id, "retired, newest first");
    assert_eq!(ids[2], a1);
    assert_eq!(
        audit_keys_for_verify(Some(dir.path())).expect("keys").len(),
        3
    );
    // The current audit key cannot be revoked; a retired one can.
    let current = ring.audit_key().id().to_owned();
    let err = revoke(dir.path(), &current).expect_err("current");
    assert!(err.to_string().contains("current audit key"), "{err}");
    assert_eq!(revoke(dir.path(), &a1).expect("revoke"), "audit");
    let ring = KeyRing::load_with(dir.path(), &no_env, later).expect("load");
    assert_eq!(ring.audit_keys().len(), 2);
    let listing = list(dir.path()).expect("list");
    assert_eq!(listing.keys.iter().filter(|k| k.kind == "audit").count(), 2);
    // Debug never shows the secret.
    let shown = format!("{:?}", ring.audit_key());
    assert!(
        shown.contains("[redacted]") && shown.contains(&current),
        "{shown}"
    );
}

#[test]
fn verifying_reads_audit_keys_without_creating_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = audit_keys_for_verify(Some(dir.path())).expect_err("none");
    assert!(err.to_string().contains("no audit key found"), "{err}");
    assert!(!dir.path().join("keys").exists(), "nothing created");
}

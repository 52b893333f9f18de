//! Key material: read from the environment (value or `_FILE`), decoded, checked, or made up.

use std::fs;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::MIN_SECRET_LEN;

/// Reads one variable of the environment (injected so tests do not touch the process env).
pub(super) type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret from `NAME` or the file named by `NAME_FILE`, with a description of its source.
pub(super) fn env_secret(
    env: EnvFn<'_>,
    name: &str,
) -> anyhow::Result<Option<(Zeroizing<String>, String)>> {
    if let Some(v) = env(name) {
        return Ok(Some((Zeroizing::new(v), format!("${name}"))));
    }
    let file_var = format!("{name}_FILE");
    if let Some(path) = env(&file_var) {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read {path} (named by ${file_var})"))?;
        return Ok(Some((Zeroizing::new(text), path)));
    }
    Ok(None)
}

pub(super) fn decode_secret(text: &str, source: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
            .map_err(|_| anyhow::anyhow!("{source}: not valid base64"))?,
    );
    if bytes.len() < MIN_SECRET_LEN {
        bail!(
            "{source}: key too short ({} bytes, at least {MIN_SECRET_LEN} needed)",
            bytes.len()
        );
    }
    Ok(bytes)
}

pub(super) fn parse_pem(text: &str, source: &str) -> anyhow::Result<SigningKey> {
    SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|e| anyhow::anyhow!("{source}: not an Ed25519 PKCS#8 PEM private key ({e})"))
}

/// A stable id for a key given by the environment: a short hash of its public part.
pub(super) fn derived_id(prefix: &str, material: &[u8]) -> String {
    let h = Sha256::digest(material);
    format!("{prefix}{}", hex::encode(&h[..6]))
}

pub(super) fn random_bytes(n: usize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(crate::random::bytes(n).map_err(|_| {
        anyhow::anyhow!("the OS random source failed")
    })?))
}

pub(super) fn random_id(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}{}", hex::encode(&random_bytes(6)?[..])))
}

pub(super) fn new_signing_key() -> anyhow::Result<SigningKey> {
    let seed = random_bytes(32)?;
    let mut arr = Zeroizing::new([0u8; 32]);
    arr.copy_from_slice(&seed);
    Ok(SigningKey::from_bytes(&arr))
}

pub(super) fn check_id(id: &str, what: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("{what}: bad key id {id:?}");
    }
    Ok(())
}

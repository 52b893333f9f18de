//! Rotation and revocation of the receipt and code keys under `DATA_DIR/keys/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::dir::{KeyDir, ManifestEntry};
use super::files::write_atomic;
use super::secrets::{new_signing_key, process_env, random_bytes, random_id};
use super::{CODE_KEY_RETENTION_MS, RECEIPT_KEY_RETENTION_MS};
use crate::clock::{Clock as _, SystemClock};

/// What [`rotate`] did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Rotated {
    /// The new current receipt key id.
    pub receipt_kid: String,
    /// The new current code key id.
    pub code_key_id: String,
    /// The new current audit chain key id.
    pub audit_key_id: String,
    /// Key ids dropped because their retention was over.
    pub pruned: Vec<String>,
}

/// Makes a new receipt key, code key and audit chain key current under `DATA_DIR/keys/`;
/// retired receipt and code keys stay published / usable for their retention, older ones are
/// deleted; retired audit keys are kept (they verify old audit lines).
///
/// # Errors
/// I/O failures, an unreadable manifest.
pub fn rotate(data_dir: &Path) -> anyhow::Result<Rotated> {
    rotate_at(data_dir, SystemClock.now_ms())
}

pub(super) fn rotate_at(data_dir: &Path, now_ms: i64) -> anyhow::Result<Rotated> {
    let d = KeyDir::open(data_dir)?;
    let mut m = d.manifest_or_create(now_ms)?;
    let kid = random_id("r")?;
    let cid = random_id("c")?;
    d.write_receipt(&kid, &new_signing_key()?)?;
    d.write_code(&cid, &random_bytes(32)?)?;
    let mut pruned = Vec::new();
    for (list, retention, path_of) in [
        (
            &mut m.receipt,
            RECEIPT_KEY_RETENTION_MS,
            &(|id: &str| d.receipt_path(id)) as &dyn Fn(&str) -> PathBuf,
        ),
        (&mut m.code, CODE_KEY_RETENTION_MS, &|id: &str| {
            d.code_path(id)
        }),
    ] {
        for e in list.iter_mut() {
            e.retired_at_ms.get_or_insert(now_ms);
        }
        list.retain(|e| {
            let keep = e
                .retired_at_ms
                .is_some_and(|r| now_ms < r.saturating_add(retention));
            if !keep {
                let _ = fs::remove_file(path_of(&e.id));
                pruned.push(e.id.clone());
            }
            keep
        });
    }
    m.receipt.push(ManifestEntry {
        id: kid.clone(),
        created_at_ms: now_ms,
        retired_at_ms: None,
    });
    m.code.push(ManifestEntry {
        id: cid.clone(),
        created_at_ms: now_ms,
        retired_at_ms: None,
    });
    write_atomic(&d.manifest_path(), &serde_json::to_vec_pretty(&m)?)?;
    let mut am = d.audit_manifest_or_create(now_ms)?;
    let aid = random_id("a")?;
    d.write_audit(&aid, &random_bytes(32)?)?;
    for e in &mut am.audit {
        e.retired_at_ms.get_or_insert(now_ms);
    }
    am.audit.push(ManifestEntry {
        id: aid.clone(),
        created_at_ms: now_ms,
        retired_at_ms: None,
    });
    write_atomic(&d.audit_manifest_path(), &serde_json::to_vec_pretty(&am)?)?;
    Ok(Rotated {
        receipt_kid: kid,
        code_key_id: cid,
        audit_key_id: aid,
        pruned,
    })
}

/// Removes the retired receipt, code or audit key `id` from `DATA_DIR/keys/` (manifest entry
/// and file) before its retention ends; returns its kind (`receipt`, `code` or `audit`). The
/// audit lines a revoked audit key sealed no longer verify.
///
/// # Errors
/// `id` is unknown or current (rotate first), or I/O failures.
pub fn revoke(data_dir: &Path, id: &str) -> anyhow::Result<&'static str> {
    let d = KeyDir::open(data_dir)?;
    if let Some(mut am) = d.read_audit_manifest()?
        && am.audit.iter().any(|e| e.id == id)
    {
        if am
            .audit
            .iter()
            .any(|e| e.id == id && e.retired_at_ms.is_none())
        {
            bail!(
                "`{id}` is the current audit key: run `otpgate keys rotate` first, then revoke it"
            );
        }
        am.audit.retain(|e| e.id != id);
        write_atomic(&d.audit_manifest_path(), &serde_json::to_vec_pretty(&am)?)?;
        remove_key_file(&d.audit_path(id))?;
        return Ok("audit");
    }
    let Some(mut m) = d.read_manifest()? else {
        bail!("no key manifest in {}", d.dir.display());
    };
    let (kind, list, path) = if m.receipt.iter().any(|e| e.id == id) {
        ("receipt", &mut m.receipt, d.receipt_path(id))
    } else if m.code.iter().any(|e| e.id == id) {
        ("code", &mut m.code, d.code_path(id))
    } else {
        bail!(
            "no key `{id}` in {} (see `otpgate keys list`)",
            d.dir.display()
        );
    };
    if list.iter().any(|e| e.id == id && e.retired_at_ms.is_none()) {
        bail!("`{id}` is the current {kind} key: run `otpgate keys rotate` first, then revoke it");
    }
    list.retain(|e| e.id != id);
    // The manifest first: a key file without an entry is never loaded.
    write_atomic(&d.manifest_path(), &serde_json::to_vec_pretty(&m)?)?;
    remove_key_file(&path)?;
    Ok(kind)
}

fn remove_key_file(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot delete {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The variables among `OTPGATE_RECEIPT_KEY`, `OTPGATE_CODE_KEY` and `OTPGATE_AUDIT_KEY` set
/// in the process
/// environment (directly or through `_FILE`): they take precedence over the key files that
/// [`rotate`] writes.
pub fn env_overrides() -> Vec<&'static str> {
    [
        "OTPGATE_RECEIPT_KEY",
        "OTPGATE_CODE_KEY",
        "OTPGATE_AUDIT_KEY",
    ]
    .into_iter()
    .filter(|var| process_env(var).is_some() || process_env(&format!("{var}_FILE")).is_some())
    .collect()
}

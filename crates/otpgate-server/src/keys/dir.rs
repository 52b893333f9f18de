//! The key directory `DATA_DIR/keys/`: `manifest.json` (ids, creation and retirement times)
//! and one file per key.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use otpgate_core::code::CodeKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::MANIFEST;
use super::files::{create_exclusive, read_file};
use super::secrets::{
    check_id, decode_secret, new_signing_key, parse_pem, random_bytes, random_id,
};
use crate::audit::AuditKey;

/// The record of the keys kept on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    /// Receipt keys, oldest first; the one without `retired_at_ms` is current.
    pub(super) receipt: Vec<ManifestEntry>,
    /// Code keys, oldest first; the one without `retired_at_ms` is current.
    pub(super) code: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestEntry {
    pub(super) id: String,
    pub(super) created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) retired_at_ms: Option<i64>,
}

impl Manifest {
    pub(super) fn current(list: &[ManifestEntry]) -> Option<&ManifestEntry> {
        list.iter().rev().find(|e| e.retired_at_ms.is_none())
    }
}

/// The record of the audit chain keys (`audit.json`): kept apart from [`Manifest`] so that
/// data directories made before the audit keys existed get one without touching the
/// receipt and code keys. Audit keys are never pruned: a retired one verifies old lines.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditManifest {
    /// Audit keys, oldest first; the one without `retired_at_ms` is current.
    pub(super) audit: Vec<ManifestEntry>,
}

/// The file of [`AuditManifest`].
pub(super) const AUDIT_MANIFEST: &str = "audit.json";

/// The key directory on disk.
pub(super) struct KeyDir {
    pub(super) dir: PathBuf,
}

impl KeyDir {
    pub(super) fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("keys");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        }
        Ok(Self { dir })
    }

    pub(super) fn receipt_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("receipt-{kid}.pem"))
    }

    pub(super) fn code_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("code-{id}.key"))
    }

    pub(super) fn audit_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("audit-{id}.key"))
    }

    pub(super) fn audit_manifest_path(&self) -> PathBuf {
        self.dir.join(AUDIT_MANIFEST)
    }

    pub(super) fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    pub(super) fn read_manifest(&self) -> anyhow::Result<Option<Manifest>> {
        let path = self.manifest_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid key manifest", path.display()))?;
        for e in m.receipt.iter().chain(&m.code) {
            check_id(&e.id, &path.display().to_string())?;
        }
        if Manifest::current(&m.receipt).is_none() || Manifest::current(&m.code).is_none() {
            bail!("{}: no current receipt or code key", path.display());
        }
        Ok(Some(m))
    }

    pub(super) fn write_receipt(&self, kid: &str, key: &SigningKey) -> anyhow::Result<()> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
        create_exclusive(&self.receipt_path(kid), pem.as_bytes())?;
        Ok(())
    }

    pub(super) fn write_code(&self, id: &str, secret: &[u8]) -> anyhow::Result<()> {
        let text = Zeroizing::new(STANDARD.encode(secret));
        create_exclusive(&self.code_path(id), text.as_bytes())?;
        Ok(())
    }

    /// The manifest, created with fresh keys if there is none.
    pub(super) fn manifest_or_create(&self, now_ms: i64) -> anyhow::Result<Manifest> {
        if let Some(m) = self.read_manifest()? {
            return Ok(m);
        }
        let kid = random_id("r")?;
        let cid = random_id("c")?;
        self.write_receipt(&kid, &new_signing_key()?)?;
        self.write_code(&cid, &random_bytes(32)?)?;
        let m = Manifest {
            receipt: vec![ManifestEntry {
                id: kid.clone(),
                created_at_ms: now_ms,
                retired_at_ms: None,
            }],
            code: vec![ManifestEntry {
                id: cid.clone(),
                created_at_ms: now_ms,
                retired_at_ms: None,
            }],
        };
        let json = serde_json::to_vec_pretty(&m)?;
        if create_exclusive(&self.manifest_path(), &json)? {
            Ok(m)
        } else {
            // Another instance created the keys first: use theirs.
            let _ = fs::remove_file(self.receipt_path(&kid));
            let _ = fs::remove_file(self.code_path(&cid));
            self.read_manifest()?.context("key manifest vanished")
        }
    }

    pub(super) fn load_receipt(&self, kid: &str) -> anyhow::Result<SigningKey> {
        let path = self.receipt_path(kid);
        parse_pem(&read_file(&path)?, &path.display().to_string())
    }

    pub(super) fn load_code(&self, id: &str) -> anyhow::Result<CodeKey> {
        let path = self.code_path(id);
        let secret = decode_secret(&read_file(&path)?, &path.display().to_string())?;
        Ok(CodeKey::new(id, secret.to_vec()))
    }

    pub(super) fn write_audit(&self, id: &str, secret: &[u8]) -> anyhow::Result<()> {
        let text = Zeroizing::new(STANDARD.encode(secret));
        create_exclusive(&self.audit_path(id), text.as_bytes())?;
        Ok(())
    }

    pub(super) fn load_audit(&self, id: &str) -> anyhow::Result<AuditKey> {
        let path = self.audit_path(id);
        let secret = decode_secret(&read_file(&path)?, &path.display().to_string())?;
        Ok(AuditKey::new(id, secret.to_vec()))
    }

    /// The audit manifest, if there is one.
    pub(super) fn read_audit_manifest(&self) -> anyhow::Result<Option<AuditManifest>> {
        read_audit_manifest(&self.dir)
    }

    /// The audit manifest, created with a fresh key if there is none.
    pub(super) fn audit_manifest_or_create(&self, now_ms: i64) -> anyhow::Result<AuditManifest> {
        if let Some(m) = self.read_audit_manifest()? {
            return Ok(m);
        }
        let id = random_id("a")?;
        self.write_audit(&id, &random_bytes(32)?)?;
        let m = AuditManifest {
            audit: vec![ManifestEntry {
                id: id.clone(),
                created_at_ms: now_ms,
                retired_at_ms: None,
            }],
        };
        if create_exclusive(&self.audit_manifest_path(), &serde_json::to_vec_pretty(&m)?)? {
            Ok(m)
        } else {
            // Another instance created the audit key first: use theirs.
            let _ = fs::remove_file(self.audit_path(&id));
            self.read_audit_manifest()?
                .context("audit key manifest vanished")
        }
    }

    /// Every audit key of the manifest, the current one first, then the retired ones,
    /// newest first.
    pub(super) fn load_audit_keys(&self, m: &AuditManifest) -> anyhow::Result<Vec<AuditKey>> {
        let current = Manifest::current(&m.audit).context("no current audit key")?;
        let mut keys = vec![self.load_audit(&current.id)?];
        for e in m.audit.iter().rev().filter(|e| e.id != current.id) {
            keys.push(self.load_audit(&e.id)?);
        }
        Ok(keys)
    }

    /// A single random key file (`pow.key`, `pseudonym.key`), created when missing.
    pub(super) fn simple_key(&self, name: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let path = self.dir.join(name);
        if !path.exists() {
            let text = Zeroizing::new(STANDARD.encode(&random_bytes(32)?[..]));
            create_exclusive(&path, text.as_bytes())?;
        }
        decode_secret(&read_file(&path)?, &path.display().to_string())
    }
}

/// Reads `keys_dir/audit.json` without creating anything.
pub(super) fn read_audit_manifest(keys_dir: &Path) -> anyhow::Result<Option<AuditManifest>> {
    let path = keys_dir.join(AUDIT_MANIFEST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let m: AuditManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid audit key manifest", path.display()))?;
    for e in &m.audit {
        check_id(&e.id, &path.display().to_string())?;
    }
    if Manifest::current(&m.audit).is_none() {
        bail!("{}: no current audit key", path.display());
    }
    Ok(Some(m))
}

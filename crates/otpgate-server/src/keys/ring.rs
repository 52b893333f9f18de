//! The key ring: the keys an issuer holds, loaded from the environment or `DATA_DIR/keys/`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use otpgate_core::code::CodeKey;
use otpgate_core::receipt::{self, Claims, Jwk, Jwks};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::dir::{KeyDir, Manifest, ManifestEntry, read_audit_manifest};
use super::secrets::{EnvFn, decode_secret, derived_id, env_secret, parse_pem, process_env};
use super::{CODE_KEY_RETENTION_MS, RECEIPT_KEY_RETENTION_MS};
use crate::audit::AuditKey;
use crate::clock::{Clock as _, SystemClock};

/// One receipt signing key.
pub(super) struct ReceiptKey {
    kid: String,
    signing: SigningKey,
}

/// A retired receipt key still published.
pub(super) struct PublishedKey {
    kid: String,
    public: ed25519_dalek::VerifyingKey,
}

pub(super) struct Inner {
    receipt: ReceiptKey,
    previous_receipt: Vec<PublishedKey>,
    /// The current code key first.
    code_keys: Vec<CodeKey>,
    pow: Zeroizing<Vec<u8>>,
    pseudonym: Zeroizing<Vec<u8>>,
    /// The audit chain keys: the current one first, then retired ones, newest first.
    audit: Vec<AuditKey>,
    sources: BTreeMap<&'static str, String>,
}

/// The issuer's keys. Cheap to clone (shared inside); `Debug` prints ids only.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("receipt_kid", &self.inner.receipt.kid)
            .field("code_key_id", &self.code_key().id())
            .field("audit_key_id", &self.audit_key().id())
            .field("secrets", &"[redacted]")
            .finish()
    }
}

impl KeyRing {
    /// Loads keys from env (`OTPGATE_RECEIPT_KEY[_FILE]`: Ed25519 PKCS#8 PEM;
    /// `OTPGATE_CODE_KEY[_FILE]`: base64 ≥ 32 bytes; `OTPGATE_POW_KEY[_FILE]`;
    /// `OTPGATE_PSEUDONYM_KEY[_FILE]`; `OTPGATE_AUDIT_KEY[_FILE]`: base64 ≥ 32 bytes) or from
    /// `DATA_DIR/keys/` (created 0600 on first start,
    /// so several instances sharing the same files or env share keys).
    ///
    /// # Errors
    /// A key that cannot be read or parsed, naming the file or variable.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        Self::load_with(data_dir, &process_env, SystemClock.now_ms())
    }

    pub(super) fn load_with(data_dir: &Path, env: EnvFn<'_>, now_ms: i64) -> anyhow::Result<Self> {
        let mut sources = BTreeMap::new();
        let receipt_env = env_secret(env, "OTPGATE_RECEIPT_KEY")?;
        let code_env = env_secret(env, "OTPGATE_CODE_KEY")?;
        let pow_env = env_secret(env, "OTPGATE_POW_KEY")?;
        let pseudonym_env = env_secret(env, "OTPGATE_PSEUDONYM_KEY")?;
        let audit_env = env_secret(env, "OTPGATE_AUDIT_KEY")?;
        let all_env = receipt_env.is_some()
            && code_env.is_some()
            && pow_env.is_some()
            && pseudonym_env.is_some()
            && audit_env.is_some();
        // Only touch the disk for keys the environment does not give.
        let disk = if all_env {
            None
        } else {
            Some(KeyDir::open(data_dir)?)
        };
        let manifest = match (&disk, receipt_env.is_none() || code_env.is_none()) {
            (Some(d), true) => Some(d.manifest_or_create(now_ms)?),
            _ => None,
        };

        let (receipt, previous_receipt) = if let Some((pem, source)) = receipt_env {
            let signing = parse_pem(&pem, &source)?;
            let kid = derived_id("e", signing.verifying_key().as_bytes());
            sources.insert("receipt", source);
            (ReceiptKey { kid, signing }, Vec::new())
        } else {
            let (d, m) = disk
                .as_ref()
                .zip(manifest.as_ref())
                .context("key directory not opened")?;
            let current = Manifest::current(&m.receipt).context("no current receipt key")?;
            let signing = d.load_receipt(&current.id)?;
            let mut previous = Vec::new();
            for e in &m.receipt {
                let live = e
                    .retired_at_ms
                    .is_some_and(|r| now_ms < r.saturating_add(RECEIPT_KEY_RETENTION_MS));
                if live && e.id != current.id {
                    previous.push(PublishedKey {
                        kid: e.id.clone(),
                        public: d.load_receipt(&e.id)?.verifying_key(),
                    });
                }
            }
            sources.insert("receipt", d.receipt_path(&current.id).display().to_string());
            (
                ReceiptKey {
                    kid: current.id.clone(),
                    signing,
                },
                previous,
            )
        };

        let code_keys = if let Some((text, source)) = code_env {
            let secret = decode_secret(&text, &source)?;
            let id = derived_id("e", &Sha256::digest(&secret[..]));
            sources.insert("code", source);
            vec![CodeKey::new(id, secret.to_vec())]
        } else {
            let (d, m) = disk
                .as_ref()
                .zip(manifest.as_ref())
                .context("key directory not opened")?;
            let current = Manifest::current(&m.code).context("no current code key")?;
            let mut keys = vec![d.load_code(&current.id)?];
            for e in m.code.iter().rev() {
                let live = e
                    .retired_at_ms
                    .is_some_and(|r| now_ms < r.saturating_add(CODE_KEY_RETENTION_MS));
                if live && e.id != current.id {
                    keys.push(d.load_code(&e.id)?);
                }
            }
            sources.insert("code", d.code_path(&current.id).display().to_string());
            keys
        };

        let mut simple =
            |name: &'static str, from_env: Option<(Zeroizing<String>, String)>, file: &str| {
                if let Some((text, source)) = from_env {
                    let key = decode_secret(&text, &source)?;
                    sources.insert(name, source);
                    Ok::<_, anyhow::Error>(key)
                } else {
                    let d = disk.as_ref().context("key directory not opened")?;
                    sources.insert(name, d.dir.join(file).display().to_string());
                    d.simple_key(file)
                }
            };
        let pow = simple("pow", pow_env, "pow.key")?;
        let pseudonym = simple("pseudonym", pseudonym_env, "pseudonym.key")?;

        let audit = if let Some((text, source)) = audit_env {
            let key = env_audit_key(&text, &source)?;
            sources.insert("audit", source);
            // Retired audit keys of the directory, if any, still verify old lines.
            let current = key.id().to_owned();
            let mut keys = vec![key];
            keys.extend(
                disk_audit_keys(data_dir)?
                    .into_iter()
                    .filter(|k| k.id() != current),
            );
            keys
        } else {
            let d = disk.as_ref().context("key directory not opened")?;
            let m = d.audit_manifest_or_create(now_ms)?;
            let keys = d.load_audit_keys(&m)?;
            sources.insert("audit", d.audit_path(keys[0].id()).display().to_string());
            keys
        };

        Ok(Self {
            inner: Arc::new(Inner {
                receipt,
                previous_receipt,
                code_keys,
                pow,
                pseudonym,
                audit,
                sources,
            }),
        })
    }

    /// Fresh random keys held in memory only (tests, throw-away runs).
    pub fn ephemeral() -> Self {
        let mut seed = Zeroizing::new([0u8; 32 * 5]);
        // A failing OS RNG makes every key unusable anyway; fall back to a hash of the time
        // only to keep this test helper infallible (never used for a real deployment).
        if crate::random::bytes(seed.len())
            .map(|b| seed.copy_from_slice(&b))
            .is_err()
        {
            let t = SystemClock.now_ms().to_le_bytes();
            for (i, chunk) in seed.chunks_mut(32).enumerate() {
                chunk.copy_from_slice(&Sha256::digest([&t[..], &[i as u8]].concat()));
            }
        }
        let mut rk = Zeroizing::new([0u8; 32]);
        rk.copy_from_slice(&seed[..32]);
        let signing = SigningKey::from_bytes(&rk);
        let kid = derived_id("t", signing.verifying_key().as_bytes());
        let code = CodeKey::new(
            derived_id("t", &Sha256::digest(&seed[32..64])),
            seed[32..64].to_vec(),
        );
        Self {
            inner: Arc::new(Inner {
                receipt: ReceiptKey { kid, signing },
                previous_receipt: Vec::new(),
                code_keys: vec![code],
                pow: Zeroizing::new(seed[64..96].to_vec()),
                pseudonym: Zeroizing::new(seed[96..128].to_vec()),
                audit: vec![AuditKey::new(
                    derived_id("t", &Sha256::digest(&seed[128..160])),
                    seed[128..160].to_vec(),
                )],
                sources: BTreeMap::new(),
            }),
        }
    }

    /// The current code key (new codes are digested under it).
    pub fn code_key(&self) -> &CodeKey {
        // Invariant: every constructor puts the current key first.
        &self.inner.code_keys[0]
    }

    /// Every code key held: the current one first, then retired ones within their
    /// retention.
    pub fn code_keys(&self) -> &[CodeKey] {
        &self.inner.code_keys
    }

    /// A code key by id, current or retired within its retention (checks of codes issued
    /// before a rotation).
    pub fn code_key_by_id(&self, id: &str) -> Option<&CodeKey> {
        self.inner.code_keys.iter().find(|k| k.id() == id)
    }

    /// Signs a receipt with the current key, naming its `kid`.
    pub fn sign_receipt(&self, claims: &Claims) -> String {
        receipt::sign(&self.inner.receipt.signing, &self.inner.receipt.kid, claims)
    }

    /// The `kid` of the current receipt key.
    pub fn receipt_kid(&self) -> &str {
        &self.inner.receipt.kid
    }

    /// The public keys: the current one first, then the retired ones still published.
    pub fn jwks(&self) -> Jwks {
        let mut keys = vec![Jwk::ed25519(
            &self.inner.receipt.kid,
            &self.inner.receipt.signing.verifying_key(),
        )];
        keys.extend(
            self.inner
                .previous_receipt
                .iter()
                .map(|p| Jwk::ed25519(&p.kid, &p.public)),
        );
        Jwks { keys }
    }

    /// The proof-of-work MAC key.
    pub fn pow_key(&self) -> &[u8] {
        &self.inner.pow
    }

    /// The key of the audit log's phone pseudonyms.
    pub fn pseudonym_key(&self) -> &[u8] {
        &self.inner.pseudonym
    }

    /// The current audit chain key (seals new audit lines and anchors).
    pub fn audit_key(&self) -> &AuditKey {
        // Invariant: every constructor puts the current key first.
        &self.inner.audit[0]
    }

    /// Every audit chain key held: the current one first, then the retired ones (kept
    /// without end: they verify old lines).
    pub fn audit_keys(&self) -> &[AuditKey] {
        &self.inner.audit
    }

    /// Where each key came from (a variable name or a file path, never the key).
    pub fn sources(&self) -> &BTreeMap<&'static str, String> {
        &self.inner.sources
    }
}

/// One key in [`list`]'s answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct KeyInfo {
    /// `receipt`, `code` or `audit`.
    pub kind: &'static str,
    /// The key id.
    pub id: String,
    /// When it was made, Unix ms (from the manifest; `None` for a key the environment gives).
    pub created_at_ms: Option<i64>,
    /// The current key (signs receipts, makes codes); otherwise retired (a receipt key still
    /// published, a code key that still checks codes).
    pub current: bool,
}

/// The keys of a data directory: what `otpgate keys list` shows.
#[derive(Clone, Debug)]
pub struct KeyListing {
    /// Receipt keys, code keys, then audit keys, each current first.
    pub keys: Vec<KeyInfo>,
    /// Where each kind of key came from (file or environment variable).
    pub sources: BTreeMap<&'static str, String>,
}

/// Loads (creating on first use, as the issuer does) the keys of `data_dir` and lists them.
///
/// # Errors
/// A key or the manifest cannot be read or parsed.
pub fn list(data_dir: &Path) -> anyhow::Result<KeyListing> {
    let ring = KeyRing::load_or_create(data_dir)?;
    let manifest = KeyDir::open(data_dir)?.read_manifest()?.unwrap_or_default();
    let created = |list: &[ManifestEntry], id: &str| {
        list.iter().find(|e| e.id == id).map(|e| e.created_at_ms)
    };
    let receipt_ids = std::iter::once(ring.receipt_kid().to_owned())
        .chain(ring.inner.previous_receipt.iter().map(|p| p.kid.clone()));
    let mut keys: Vec<KeyInfo> = receipt_ids
        .enumerate()
        .map(|(i, id)| KeyInfo {
            kind: "receipt",
            created_at_ms: created(&manifest.receipt, &id),
            id,
            current: i == 0,
        })
        .collect();
    keys.extend(
        ring.inner
            .code_keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyInfo {
                kind: "code",
                id: k.id().to_owned(),
                created_at_ms: created(&manifest.code, k.id()),
                current: i == 0,
            }),
    );
    let audit_manifest = KeyDir::open(data_dir)?
        .read_audit_manifest()?
        .unwrap_or_default();
    keys.extend(ring.audit_keys().iter().enumerate().map(|(i, k)| KeyInfo {
        kind: "audit",
        id: k.id().to_owned(),
        created_at_ms: created(&audit_manifest.audit, k.id()),
        current: i == 0,
    }));
    Ok(KeyListing {
        keys,
        sources: ring.sources().clone(),
    })
}

/// An audit key given by the environment (base64, ≥ 32 bytes), its id derived from its hash.
fn env_audit_key(text: &str, source: &str) -> anyhow::Result<AuditKey> {
    let secret = decode_secret(text, source)?;
    Ok(AuditKey::new(
        derived_id("e", &Sha256::digest(&secret[..])),
        secret.to_vec(),
    ))
}

/// The audit keys of `DATA_DIR/keys/` if it has an audit manifest; nothing is created.
fn disk_audit_keys(data_dir: &Path) -> anyhow::Result<Vec<AuditKey>> {
    let d = KeyDir {
        dir: data_dir.join("keys"),
    };
    match read_audit_manifest(&d.dir)? {
        Some(m) => d.load_audit_keys(&m),
        None => Ok(Vec::new()),
    }
}

/// The audit keys that verify a log, read without creating anything: the key of
/// `OTPGATE_AUDIT_KEY[_FILE]` if set, and every audit key (current and retired) of
/// `DATA_DIR/keys/` if `data_dir` is given and has them.
///
/// # Errors
/// A key that cannot be read or parsed, or no key at all (naming where it looked).
pub fn audit_keys_for_verify(data_dir: Option<&Path>) -> anyhow::Result<Vec<AuditKey>> {
    let mut keys = Vec::new();
    if let Some((text, source)) = env_secret(&process_env, "OTPGATE_AUDIT_KEY")? {
        keys.push(env_audit_key(&text, &source)?);
    }
    if let Some(dir) = data_dir {
        for k in disk_audit_keys(dir)? {
            if !keys.iter().any(|have: &AuditKey| have.id() == k.id()) {
                keys.push(k);
            }
        }
    }
    if keys.is_empty() {
        anyhow::bail!(
            "no audit key found{}: give the issuer's data directory (--data-dir or \
             OTPGATE_DATA_DIR; its keys/audit.json lists the audit keys) or set \
             OTPGATE_AUDIT_KEY[_FILE]",
            data_dir.map_or_else(String::new, |d| format!(
                " (looked in {})",
                d.join("keys").display()
            ))
        );
    }
    Ok(keys)
}

//! The issuer's secrets: Ed25519 receipt signing keys (rotated by `kid`, old public keys kept
//! in the JWKS for a retention period), the code HMAC keys (with ids, so a rotation keeps the
//! codes in flight checkable), the proof-of-work MAC key and the audit pseudonym key.
//!
//! # Where the keys come from
//! Each key is taken from the environment when set, otherwise from `DATA_DIR/keys/`:
//!
//! | key | environment (value, or `_FILE` naming a file) | file under `DATA_DIR/keys/` |
//! |---|---|---|
//! | receipt | `OTPGATE_RECEIPT_KEY[_FILE]`: Ed25519 PKCS#8 PEM | `receipt-<kid>.pem` + `manifest.json` |
//! | code | `OTPGATE_CODE_KEY[_FILE]`: base64, ≥ 32 bytes | `code-<id>.key` + `manifest.json` |
//! | PoW | `OTPGATE_POW_KEY[_FILE]`: base64, ≥ 32 bytes | `pow.key` |
//! | pseudonym | `OTPGATE_PSEUDONYM_KEY[_FILE]`: base64, ≥ 32 bytes | `pseudonym.key` |
//!
//! Missing files are created on first start (mode 0600, written to a temporary file then
//! linked into place, so two instances starting together on the same directory end up with
//! the same keys). A key given by the environment gets an id derived from its public part or
//! its hash, so instances sharing the environment agree on ids.
//!
//! # Rotation
//! `otpgate keys rotate` makes a new receipt key and a new code key current. The retired
//! receipt key stays in the JWKS for [`RECEIPT_KEY_RETENTION_MS`]; the retired code key stays
//! usable for checks for [`CODE_KEY_RETENTION_MS`]. Running instances pick the new keys up at
//! their next start.
//!
//! # Security
//! `Debug` never prints a secret; secrets are zeroized when dropped (the signing key by
//! `ed25519-dalek`, the code keys by [`CodeKey`], the others through [`Zeroizing`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use otpgate_core::code::CodeKey;
use otpgate_core::receipt::{self, Claims, Jwk, Jwks};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::clock::{Clock as _, SystemClock, rfc3339};

/// How long a retired receipt key stays published in the JWKS (7 days: receipts live
/// minutes, but verifiers cache the JWKS).
pub const RECEIPT_KEY_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long a retired code key still checks codes (1 day: codes live at most 10 minutes).
pub const CODE_KEY_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// The smallest accepted symmetric key, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const MANIFEST: &str = "manifest.json";

/// One receipt signing key.
struct ReceiptKey {
    kid: String,
    signing: SigningKey,
}

/// A retired receipt key still published.
struct PublishedKey {
    kid: String,
    public: ed25519_dalek::VerifyingKey,
}

struct Inner {
    receipt: ReceiptKey,
    previous_receipt: Vec<PublishedKey>,
    /// The current code key first.
    code_keys: Vec<CodeKey>,
    pow: Zeroizing<Vec<u8>>,
    pseudonym: Zeroizing<Vec<u8>>,
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
            .field("secrets", &"[redacted]")
            .finish()
    }
}

/// The record of the keys kept on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Receipt keys, oldest first; the one without `retired_at_ms` is current.
    receipt: Vec<ManifestEntry>,
    /// Code keys, oldest first; the one without `retired_at_ms` is current.
    code: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    id: String,
    created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at_ms: Option<i64>,
}

impl Manifest {
    fn current(list: &[ManifestEntry]) -> Option<&ManifestEntry> {
        list.iter().rev().find(|e| e.retired_at_ms.is_none())
    }
}

/// Reads one variable of the environment (injected so tests do not touch the process env).
type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret from `NAME` or the file named by `NAME_FILE`, with a description of its source.
fn env_secret(env: EnvFn<'_>, name: &str) -> anyhow::Result<Option<(Zeroizing<String>, String)>> {
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

fn decode_secret(text: &str, source: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
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

fn parse_pem(text: &str, source: &str) -> anyhow::Result<SigningKey> {
    SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|e| anyhow::anyhow!("{source}: not an Ed25519 PKCS#8 PEM private key ({e})"))
}

/// A stable id for a key given by the environment: a short hash of its public part.
fn derived_id(prefix: &str, material: &[u8]) -> String {
    let h = Sha256::digest(material);
    format!("{prefix}{}", hex::encode(&h[..6]))
}

fn random_bytes(n: usize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(crate::random::bytes(n).map_err(|_| {
        anyhow::anyhow!("the OS random source failed")
    })?))
}

fn random_id(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}{}", hex::encode(&random_bytes(6)?[..])))
}

fn new_signing_key() -> anyhow::Result<SigningKey> {
    let seed = random_bytes(32)?;
    let mut arr = Zeroizing::new([0u8; 32]);
    arr.copy_from_slice(&seed);
    Ok(SigningKey::from_bytes(&arr))
}

fn check_id(id: &str, what: &str) -> anyhow::Result<()> {
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

/// Writes `bytes` to a new temporary file in the directory of `path` with mode 0600 and
/// syncs it; returns its path.
fn write_temp(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(&random_bytes(8)?[..])
    ));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    Ok(tmp)
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable on filesystems that need it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Atomically replaces `path` with `bytes` (temporary file + rename), mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Creates `path` with `bytes` unless it exists. Returns `false` when another writer was
/// first (the existing file is kept). Atomic: readers never see a partial file.
fn create_exclusive(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn read_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    Ok(Zeroizing::new(fs::read_to_string(path).with_context(
        || format!("cannot read key file {}", path.display()),
    )?))
}

/// The key directory on disk.
struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("keys");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        }
        Ok(Self { dir })
    }

    fn receipt_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("receipt-{kid}.pem"))
    }

    fn code_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("code-{id}.key"))
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    fn read_manifest(&self) -> anyhow::Result<Option<Manifest>> {
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

    fn write_receipt(&self, kid: &str, key: &SigningKey) -> anyhow::Result<()> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
        create_exclusive(&self.receipt_path(kid), pem.as_bytes())?;
        Ok(())
    }

    fn write_code(&self, id: &str, secret: &[u8]) -> anyhow::Result<()> {
        let text = Zeroizing::new(STANDARD.encode(secret));
        create_exclusive(&self.code_path(id), text.as_bytes())?;
        Ok(())
    }

    /// The manifest, created with fresh keys if there is none.
    fn manifest_or_create(&self, now_ms: i64) -> anyhow::Result<Manifest> {
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

    fn load_receipt(&self, kid: &str) -> anyhow::Result<SigningKey> {
        let path = self.receipt_path(kid);
        parse_pem(&read_file(&path)?, &path.display().to_string())
    }

    fn load_code(&self, id: &str) -> anyhow::Result<CodeKey> {
        let path = self.code_path(id);
        let secret = decode_secret(&read_file(&path)?, &path.display().to_string())?;
        Ok(CodeKey::new(id, secret.to_vec()))
    }

    /// A single random key file (`pow.key`, `pseudonym.key`), created when missing.
    fn simple_key(&self, name: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let path = self.dir.join(name);
        if !path.exists() {
            let text = Zeroizing::new(STANDARD.encode(&random_bytes(32)?[..]));
            create_exclusive(&path, text.as_bytes())?;
        }
        decode_secret(&read_file(&path)?, &path.display().to_string())
    }
}

impl KeyRing {
    /// Loads keys from env (`OTPGATE_RECEIPT_KEY[_FILE]`: Ed25519 PKCS#8 PEM;
    /// `OTPGATE_CODE_KEY[_FILE]`: base64 ≥ 32 bytes; `OTPGATE_POW_KEY[_FILE]`;
    /// `OTPGATE_PSEUDONYM_KEY[_FILE]`) or from `DATA_DIR/keys/` (created 0600 on first start,
    /// so several instances sharing the same files or env share keys).
    ///
    /// # Errors
    /// A key that cannot be read or parsed, naming the file or variable.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        Self::load_with(data_dir, &process_env, SystemClock.now_ms())
    }

    fn load_with(data_dir: &Path, env: EnvFn<'_>, now_ms: i64) -> anyhow::Result<Self> {
        let mut sources = BTreeMap::new();
        let receipt_env = env_secret(env, "OTPGATE_RECEIPT_KEY")?;
        let code_env = env_secret(env, "OTPGATE_CODE_KEY")?;
        let pow_env = env_secret(env, "OTPGATE_POW_KEY")?;
        let pseudonym_env = env_secret(env, "OTPGATE_PSEUDONYM_KEY")?;
        let all_env = receipt_env.is_some()
            && code_env.is_some()
            && pow_env.is_some()
            && pseudonym_env.is_some();
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

        Ok(Self {
            inner: Arc::new(Inner {
                receipt,
                previous_receipt,
                code_keys,
                pow,
                pseudonym,
                sources,
            }),
        })
    }

    /// Fresh random keys held in memory only (tests, throw-away runs).
    pub fn ephemeral() -> Self {
        let mut seed = Zeroizing::new([0u8; 32 * 4]);
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

    /// Where each key came from (a variable name or a file path, never the key).
    pub fn sources(&self) -> &BTreeMap<&'static str, String> {
        &self.inner.sources
    }
}

/// What [`rotate`] did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Rotated {
    /// The new current receipt key id.
    pub receipt_kid: String,
    /// The new current code key id.
    pub code_key_id: String,
    /// Key ids dropped because their retention was over.
    pub pruned: Vec<String>,
}

/// Makes a new receipt key and a new code key current under `DATA_DIR/keys/`; retired keys
/// stay published / usable for their retention, older ones are deleted.
///
/// # Errors
/// I/O failures, an unreadable manifest.
pub fn rotate(data_dir: &Path) -> anyhow::Result<Rotated> {
    rotate_at(data_dir, SystemClock.now_ms())
}

fn rotate_at(data_dir: &Path, now_ms: i64) -> anyhow::Result<Rotated> {
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
    Ok(Rotated {
        receipt_kid: kid,
        code_key_id: cid,
        pruned,
    })
}

/// Removes the retired receipt or code key `id` from `DATA_DIR/keys/` (manifest entry and
/// file) before its retention ends; returns its kind (`receipt` or `code`).
///
/// # Errors
/// `id` is unknown or current (rotate first), or I/O failures.
pub fn revoke(data_dir: &Path, id: &str) -> anyhow::Result<&'static str> {
    let d = KeyDir::open(data_dir)?;
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
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot delete {}", path.display()))?;
        }
        _ => {}
    }
    Ok(kind)
}

/// Runs `otpgate keys ...`.
///
/// # Errors
/// I/O failures, unreadable keys.
pub fn run_cli(cmd: crate::cli::KeysCommand) -> anyhow::Result<()> {
    use crate::cli::KeysCommand;
    match cmd {
        KeysCommand::Rotate(args) => {
            let r = rotate(&args.data_dir)?;
            println!("new receipt key: {}", r.receipt_kid);
            println!("new code key:    {}", r.code_key_id);
            for id in &r.pruned {
                println!("deleted expired key: {id}");
            }
            for var in ["OTPGATE_RECEIPT_KEY", "OTPGATE_CODE_KEY"] {
                if process_env(var).is_some() || process_env(&format!("{var}_FILE")).is_some() {
                    eprintln!("note: ${var} is set and takes precedence over the key files");
                }
            }
            println!("restart the issuer instances to use the new keys");
        }
        KeysCommand::List(args) => {
            let ring = KeyRing::load_or_create(&args.data_dir)?;
            let d = KeyDir::open(&args.data_dir)?;
            let manifest = d.read_manifest()?.unwrap_or_default();
            println!("{:<10} {:<16} {:<22} state", "kind", "id", "created");
            let created = |list: &[ManifestEntry], id: &str| {
                list.iter()
                    .find(|e| e.id == id)
                    .map_or_else(|| "-".to_owned(), |e| rfc3339(e.created_at_ms))
            };
            let receipt_ids = std::iter::once(ring.receipt_kid().to_owned())
                .chain(ring.inner.previous_receipt.iter().map(|p| p.kid.clone()));
            for (i, id) in receipt_ids.enumerate() {
                let state = if i == 0 {
                    "current (signs)"
                } else {
                    "retired (published)"
                };
                println!(
                    "{:<10} {:<16} {:<22} {state}",
                    "receipt",
                    id,
                    created(&manifest.receipt, &id)
                );
            }
            for (i, k) in ring.inner.code_keys.iter().enumerate() {
                let state = if i == 0 {
                    "current"
                } else {
                    "retired (checks only)"
                };
                println!(
                    "{:<10} {:<16} {:<22} {state}",
                    "code",
                    k.id(),
                    created(&manifest.code, k.id())
                );
            }
            for (kind, source) in ring.sources() {
                println!("source     {kind:<16} {source}");
            }
        }
        KeysCommand::Jwks(args) => {
            let ring = KeyRing::load_or_create(&args.data_dir)?;
            println!("{}", serde_json::to_string_pretty(&ring.jwks())?);
        }
        KeysCommand::Revoke(args) => {
            let kind = revoke(&args.keys.data_dir, &args.id)?;
            println!("revoked {kind} key: {}", args.id);
            println!(
                "restart the issuer instances, and tell verifiers that cache the JWKS to refetch it"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use otpgate_core::code::Code;
    use otpgate_core::receipt::{Expectations, verify};

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
            phone_number: "+15551234567".into(),
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
        let env =
            |k: &str| (k == "OTPGATE_RECEIPT_KEY_FILE").then(|| "/nonexistent/r.pem".to_owned());
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
}

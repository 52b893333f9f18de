//! The audit log: append-only JSON lines in a keyed chain, written with group commit.
//!
//! # Format
//! One JSON object per line, fields in this order:
//! `{"seq":N,"at":"2026-11-25T20:19:58Z","kind":"...","request_id":..,"client_request_id":..,
//! "client":"c:9b1e...","verification_id":..,"app":..,"phone":"p:3f9a2c0b1d4e5f60:23",
//! "detail":{..},"prev":"<hex>","kid":"<audit key id>","mac":"<hex>"}`
//!
//! - `request_id` is the server's own id of the request (the response's `X-Request-Id`);
//!   `client_request_id` is the id the client sent, if any, kept apart; `client` is the
//!   client's address pseudonymised (a keyed hash).
//! - `mac` is HMAC-SHA-256, under the audit key `kid` (from the key directory, rotated with
//!   the other keys), of the line without its `mac` field; `prev` is the previous line's
//!   `mac` (the first line's is 64 zeros, [`GENESIS`]). Every MAC thus covers the history
//!   before it, and nobody without the key can edit, drop, insert or re-seal a line
//!   ([`verify_file`]). Details in `chain`.
//! - `phone` is a pseudonym: a keyed hash of the number and its last two digits. A code is
//!   never written: `detail` keys that look like one (`code`, `otp`, `pin`, ...) are dropped
//!   and E.164 numbers inside `detail` are masked.
//!
//! # Retention
//! [`AuditLog::purge_before`] drops the oldest lines (after checking their MACs and links:
//! a purge never launders edited lines) and writes in their place one `checkpoint` line,
//! sealed like the others, carrying the seq and the link (`detail.anchor`) of the last
//! dropped line, so the rest of the chain still verifies. A file may start with a
//! checkpoint only if its MAC verifies.
//!
//! # Anchors
//! Cutting lines off the end leaves a valid shorter chain. [`AuditLog::anchor`] seals the
//! line count and the last link; `serve` exports one every minute to `[audit] anchor`
//! ([`anchor`]), and `otpgate audit verify --anchors` reports a log shorter than, or
//! different from, what an anchor saw ([`verify_with_anchors`]).
//!
//! # Durability and speed
//! One writer thread owns the file. Appends from any number of tasks queue to it; it writes
//! everything queued in one go, `fdatasync`s once, then answers each append: an append
//! resolves only once its line is on disk, and concurrent appends share the fsync. With
//! [`Durability::Process`] ([`AuditLog::open_with`]) it answers after the write and syncs
//! at most [`Durability::PROCESS_SYNC_EVERY`] later (a crash of the process loses no
//! acknowledged line; a power cut may lose that last stretch). A line cut short by a crash
//! (no newline: never acknowledged) is removed when the log is opened again. An anchor is
//! taken only after the lines it covers are synced.
//!
//! # Limits
//! Whoever holds the audit key (the issuer's host) can rewrite and re-seal the log; only
//! anchors exported off the host show that the log changed since they were taken.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use otpgate_core::phone::PhoneNumber;
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::clock::{Clock as _, SystemClock, rfc3339};
use crate::keys::KeyRing;
use crate::store::Durability;

pub mod anchor;
mod chain;

pub use anchor::{Anchor, AnchorSink, read_anchors};
pub use chain::{
    ANCHOR_DOMAIN, AuditKey, ChainError, LINE_DOMAIN, Verified, VerifyError, verify_file,
    verify_with_anchors,
};
use chain::{make_line, parse_line};

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The longest `detail`, serialized, in bytes; longer ones are replaced by a marker.
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Appends written (and fsync'd) together at most.
const MAX_BATCH: usize = 8192;

/// One event of the audit log.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// What happened: `verification.started`, `sms.queued`, `sms.submitted`, `sms.sent`,
    /// `sms.delivered`,
    /// `sms.failed`, `check.approved`, `check.rejected`, `verification.expired`,
    /// `verification.cancelled`, `resend`, `policy.refused`.
    pub kind: &'static str,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The server's own HTTP request id, if the event comes from a request.
    pub request_id: Option<String>,
    /// The `X-Request-Id` the client sent, kept apart from the server's.
    pub client_request_id: Option<String>,
    /// The client's address: written pseudonymised ([`AuditLog::pseudonymize_client`]).
    pub client: Option<std::net::IpAddr>,
    /// The verification concerned.
    pub verification_id: Option<String>,
    /// The app.
    pub app: Option<String>,
    /// The number concerned: written pseudonymised, never in clear.
    pub phone: Option<PhoneNumber>,
    /// Anything else (never a code, never a full number).
    pub detail: Value,
}

impl AuditEvent {
    /// An event of `kind` at `at_ms` with no other field set.
    pub fn new(kind: &'static str, at_ms: i64) -> Self {
        Self {
            kind,
            at_ms,
            request_id: None,
            client_request_id: None,
            client: None,
            verification_id: None,
            app: None,
            phone: None,
            detail: Value::Null,
        }
    }
}

/// Why an append failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Writing or syncing the file failed.
    #[error("audit log write failed: {0}")]
    Io(String),
    /// The writer has stopped (after a fatal error).
    #[error("audit log closed")]
    Closed,
}

impl AuditError {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "audit_io",
            Self::Closed => "audit_closed",
        }
    }
}

enum Cmd {
    Append {
        body: String,
        reply: oneshot::Sender<Result<(), AuditError>>,
    },
    Purge {
        before_ms: i64,
        now_ms: i64,
        reply: oneshot::Sender<Result<u64, AuditError>>,
    },
    /// The head once every line before it is written and synced.
    Head {
        reply: oneshot::Sender<Result<(u64, String), AuditError>>,
    },
}

/// The audit log. `Send + Sync`; share it in an `Arc`.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Cmd>>,
    path: Option<PathBuf>,
    pseudonym_key: Zeroizing<Vec<u8>>,
    /// The key new lines and anchors are sealed with (`None` when disabled).
    key: Option<AuditKey>,
    /// Who else sees each event as it is appended (the operator console), if anyone.
    tap: std::sync::OnceLock<Tap>,
}

/// An audit event as an observer in the process sees it ([`AuditLog::set_tap`]): the number
/// already pseudonymised and `detail` sanitised exactly as in the written line; no client
/// address, no request id.
#[derive(Clone, Debug)]
pub struct TapEvent {
    /// What happened ([`AuditEvent::kind`]).
    pub kind: &'static str,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The verification concerned.
    pub verification_id: Option<String>,
    /// The app.
    pub app: Option<String>,
    /// The number's pseudonym ([`AuditLog::pseudonymize`]).
    pub phone: Option<String>,
    /// The sanitised detail.
    pub detail: Value,
}

/// An observer of appended events. It runs inside [`AuditLog::append`]: keep it quick.
pub type Tap = Box<dyn Fn(TapEvent) + Send + Sync>;

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("pseudonym_key", &"[redacted]")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Keys of `detail` that are never written (a code or a secret could hide there).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    const HARMLESS: &[&str] = &[
        "error_code",
        "code_version",
        "status_code",
        "country_code",
        "reason_code",
        "http_status",
    ];
    if HARMLESS.contains(&k.as_str()) {
        return false;
    }
    k == "code"
        || k == "pin"
        || k.ends_with("_code")
        || k.starts_with("code_")
        || k.contains("otp")
        || k.contains("secret")
        || k.contains("password")
        || k.contains("token")
        || k.contains("receipt")
        || k.contains("digest")
}

/// A string that is (or contains) an international number, separators allowed.
fn looks_like_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'+'
            && b[i + 1..]
                .iter()
                .take_while(|d| d.is_ascii_digit() || matches!(d, b' ' | b'.' | b'-' | b'(' | b')'))
                .filter(|d| d.is_ascii_digit())
                .count()
                >= 7
    })
}

/// Keys whose value is a number (masked whatever it looks like).
fn is_number_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "to" || k.contains("phone") || k.contains("msisdn") || k.ends_with("number")
}

/// Drops secret-looking keys and masks numbers, recursively.
fn sanitize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if is_secret_key(&k) {
                    continue;
                }
                let v = match v {
                    Value::String(s) if is_number_key(&k) && !s.starts_with("p:") => {
                        Value::String(mask(&s))
                    }
                    other => sanitize(other),
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sanitize).collect()),
        Value::String(s) if looks_like_number(&s) => Value::String(mask(&s)),
        other => other,
    }
}

fn mask(s: &str) -> String {
    PhoneNumber::parse(s).map_or_else(|_| "[redacted]".to_owned(), |p| p.masked())
}

/// Parses the `at` field written by [`rfc3339`] (`YYYY-MM-DDTHH:MM:SSZ`) to Unix ms: the
/// core's RFC 3339 parser, holding to the one form this log writes (UTC, whole seconds).
fn parse_at(s: &str) -> Option<i64> {
    otpgate_core::time::parse_rfc3339(s)
        .ok()
        .filter(|&ms| rfc3339(ms) == s)
}

/// Where the chain stands: the last seq and the `prev` the next line must carry (the link
/// of line `seq`).
#[derive(Clone, Debug, Eq, PartialEq)]
struct Head {
    seq: u64,
    next_prev: String,
}

impl Head {
    fn genesis() -> Self {
        Self {
            seq: 0,
            next_prev: GENESIS.to_owned(),
        }
    }
}

/// Reads where the chain of an existing file stands, cutting off a torn last line; also
/// whether the last line is keyed (an empty file counts as keyed).
fn recover_head(file: &mut File, path: &Path) -> anyhow::Result<(Head, bool)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((Head::genesis(), true));
    }
    // Read back enough of the tail to hold the last complete line.
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let mut end = tail.len();
        if tail.last() != Some(&b'\n') {
            // A torn write: never acknowledged, so drop it.
            let keep = tail.iter().rposition(|&b| b == b'\n').map(|p| p + 1);
            match keep {
                Some(p) => {
                    let new_len = start + p as u64;
                    tracing::warn!(path = %path.display(), dropped = len - new_len, "audit log: removing a torn last line");
                    file.set_len(new_len)?;
                    file.sync_all()?;
                    return recover_head(file, path);
                }
                None if start == 0 => {
                    file.set_len(0)?;
                    file.sync_all()?;
                    return Ok((Head::genesis(), true));
                }
                None => {
                    window *= 4;
                    continue;
                }
            }
        }
        end -= 1;
        let line_start = tail[..end].iter().rposition(|&b| b == b'\n').map(|p| p + 1);
        let line_start = match line_start {
            Some(p) => p,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        let line = std::str::from_utf8(&tail[line_start..end])
            .map_err(|_| anyhow::anyhow!("{}: the last line is not UTF-8", path.display()))?;
        let parsed =
            parse_line(line).map_err(|r| anyhow::anyhow!("{}: last line: {r}", path.display()))?;
        let seq = parsed
            .seq()
            .ok_or_else(|| anyhow::anyhow!("{}: last line: no seq", path.display()))?;
        let next_prev = parsed
            .next_prev()
            .map_err(|r| anyhow::anyhow!("{}: last line: {r}", path.display()))?;
        return Ok((Head { seq, next_prev }, parsed.keyed()));
    }
}

/// Creates (or truncates) `path` with mode 0600.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Moves an unkeyed log (its last line has no MAC) to `<stem>.unkeyed-<time>.jsonl` and
/// starts a new one whose first line, `chain.keyed`, seals the old one's name, last seq and
/// head. Returns the new file and its head.
fn set_aside_unkeyed(
    path: &Path,
    file: File,
    old: &Head,
    key: &AuditKey,
) -> anyhow::Result<(File, Head)> {
    drop(file);
    let now = SystemClock.now_ms();
    let stem = path
        .file_stem()
        .map_or_else(|| "audit".to_owned(), |s| s.to_string_lossy().into_owned());
    let stamp = rfc3339(now).replace([':', '-'], "");
    let aside = path.with_file_name(format!("{stem}.unkeyed-{stamp}.jsonl"));
    fs::rename(path, &aside)
        .with_context(|| format!("cannot move the unkeyed audit log to {}", aside.display()))?;
    let name = aside
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let detail = serde_json::json!({
        "unkeyed_log": name,
        "unkeyed_last_seq": old.seq,
        "unkeyed_head": old.next_prev,
    });
    let body = format!(
        "\"at\":\"{}\",\"kind\":\"chain.keyed\",\"request_id\":null,\"verification_id\":null,\"app\":null,\"phone\":null,\"detail\":{detail}",
        rfc3339(now)
    );
    let (line, link) = make_line(1, &body, GENESIS, key);
    let mut f = create_private(path)
        .with_context(|| format!("cannot create the audit log {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()?;
    drop(f);
    tracing::warn!(
        path = %path.display(),
        unkeyed = %aside.display(),
        "audit log: the existing log has no MACs (written before the keyed chain); set it \
         aside and started a keyed log that seals its last line"
    );
    Ok((
        open_append(path)?,
        Head {
            seq: 1,
            next_prev: link,
        },
    ))
}

struct Writer {
    path: PathBuf,
    file: File,
    head: Head,
    durability: Durability,
    /// Under [`Durability::Process`]: lines written since the last sync, and when it was.
    unsynced: bool,
    last_sync: Instant,
    /// Seals new lines.
    key: AuditKey,
    /// Every audit key held (current and retired): the purge checks the lines it drops.
    keys: Vec<AuditKey>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Cmd>) {
        let mut batch = Vec::new();
        loop {
            let first = if self.unsynced {
                let wait = Durability::PROCESS_SYNC_EVERY.saturating_sub(self.last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.background_sync();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            for cmd in batch.drain(..) {
                match cmd {
                    Cmd::Append { body, reply } => appends.push((body, reply)),
                    Cmd::Purge {
                        before_ms,
                        now_ms,
                        reply,
                    } => {
                        self.write_batch(std::mem::take(&mut appends));
                        let _ = reply.send(
                            self.purge(before_ms, now_ms)
                                .map_err(|e| AuditError::Io(format!("{e:#}"))),
                        );
                    }
                    Cmd::Head { reply } => {
                        self.write_batch(std::mem::take(&mut appends));
                        if self.unsynced {
                            self.background_sync();
                        }
                        let _ = reply.send(Ok((self.head.seq, self.head.next_prev.clone())));
                    }
                }
            }
            self.write_batch(appends);
            if self.unsynced && self.last_sync.elapsed() >= Durability::PROCESS_SYNC_EVERY {
                self.background_sync();
            }
        }
        if self.unsynced {
            self.background_sync();
        }
    }

    /// [`Durability::Process`]: syncs the lines already acknowledged.
    fn background_sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            // The acknowledged lines may be lost on a power cut; later appends go on (each
            // one is synced again with the next).
            tracing::error!(path = %self.path.display(), error = %e, "audit log sync failed");
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
    }

    /// Writes the lines, syncs once (under [`Durability::Process`]: later), then answers
    /// every append.
    fn write_batch(&mut self, appends: Vec<(String, oneshot::Sender<Result<(), AuditError>>)>) {
        if appends.is_empty() {
            return;
        }
        let saved = self.head.clone();
        let mut out = String::with_capacity(appends.len() * 400);
        for (body, _) in &appends {
            let (line, link) = make_line(self.head.seq + 1, body, &self.head.next_prev, &self.key);
            self.head = Head {
                seq: self.head.seq + 1,
                next_prev: link,
            };
            out.push_str(&line);
            out.push('\n');
        }
        let before = self.file.metadata().map(|m| m.len());
        let result = self.file.write_all(out.as_bytes()).and_then(|()| {
            if self.durability == Durability::Process {
                self.unsynced = true;
                Ok(())
            } else {
                self.file.sync_data()
            }
        });
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                // Undo a partial write so the chain stays whole, and keep the old head.
                if let Ok(len) = before {
                    let _ = self.file.set_len(len);
                }
                self.head = saved;
                tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
                Err(AuditError::Io(e.kind().to_string()))
            }
        };
        for (_, reply) in appends {
            let _ = reply.send(result.clone());
        }
    }

    /// Drops the lines older than `before_ms` (the longest such prefix), replacing them by
    /// a checkpoint; returns how many were dropped.
    fn purge(&mut self, before_ms: i64, now_ms: i64) -> anyhow::Result<u64> {
        let mut reader = BufReader::new(File::open(&self.path)?);
        let mut line = String::new();
        let mut dropped = 0u64;
        let mut last_dropped: Option<(u64, String)> = None;
        let mut first_kept: Option<String> = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            let l = line.trim_end_matches('\n');
            // Every line dropped, and the first one kept, must verify (MAC and link): a
            // purge must never launder lines someone edited to look old.
            let bad = |r: String| anyhow::anyhow!("line {}: {r}; not purging", dropped + 1);
            let parsed = parse_line(l).map_err(bad)?;
            parsed.check_mac(&self.keys).map_err(bad)?;
            let seq = parsed.seq().ok_or_else(|| bad("no seq".into()))?;
            if let Some((last, link)) = &last_dropped {
                let prev = parsed.obj.get("prev").and_then(Value::as_str);
                if seq != last + 1 || prev != Some(link.as_str()) || parsed.kind() == "checkpoint" {
                    return Err(bad("the chain is broken here".into()));
                }
            }
            let at = parsed
                .obj
                .get("at")
                .and_then(Value::as_str)
                .and_then(parse_at);
            let old = at.is_some_and(|at| at < before_ms);
            if !old {
                first_kept = Some(l.to_owned());
                break;
            }
            last_dropped = Some((seq, parsed.next_prev().map_err(bad)?));
            dropped += 1;
        }
        let Some((seq, anchor)) = last_dropped else {
            return Ok(0);
        };
        let tmp = self.path.with_extension("purge.tmp");
        let mut out =
            std::io::BufWriter::new(create_private(&tmp).context("cannot create temp file")?);
        let detail = serde_json::json!({ "anchor": anchor, "dropped": dropped, "before": rfc3339(before_ms) });
        let body = format!(
            "\"at\":\"{}\",\"kind\":\"checkpoint\",\"request_id\":null,\"verification_id\":null,\"app\":null,\"phone\":null,\"detail\":{}",
            rfc3339(now_ms),
            detail
        );
        out.write_all(make_line(seq, &body, GENESIS, &self.key).0.as_bytes())?;
        out.write_all(b"\n")?;
        if let Some(first) = first_kept {
            out.write_all(first.as_bytes())?;
            out.write_all(b"\n")?;
            std::io::copy(&mut reader, &mut out)?;
        }
        let f = out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = open_append(&self.path)?;
        Ok(dropped)
    }
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log at `path` and starts its writer thread; the
    /// chain continues from the last line. New lines are sealed with the current audit key
    /// of `keys`; phone numbers and client addresses are pseudonymised with its pseudonym
    /// key.
    ///
    /// A log whose last line is unkeyed (written before the keyed chain) is set aside as
    /// `<name>.unkeyed-<time>.jsonl`, and the new log starts with a `chain.keyed` line that
    /// names it and seals its last seq and hash.
    ///
    /// # Errors
    /// The file cannot be opened, or its last line is not an audit line.
    pub fn open(path: &Path, keys: &KeyRing) -> anyhow::Result<Self> {
        Self::open_with(path, keys, Durability::Disk)
    }

    /// [`AuditLog::open`] with a choice of when an append is acknowledged: after the
    /// `fdatasync` of its batch ([`Durability::Disk`]) or after the write, synced within
    /// [`Durability::PROCESS_SYNC_EVERY`] ([`Durability::Process`]).
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub fn open_with(path: &Path, keys: &KeyRing, durability: Durability) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let key = keys.audit_key().clone();
        let mut file = open_append(path)
            .with_context(|| format!("cannot open audit log {}", path.display()))?;
        let (mut head, keyed) = recover_head(&mut file, path)?;
        if !keyed {
            (file, head) = set_aside_unkeyed(path, file, &head, &key)?;
        }
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            path: path.to_owned(),
            file,
            head,
            durability,
            unsynced: false,
            last_sync: Instant::now(),
            key: key.clone(),
            keys: keys.audit_keys().to_vec(),
        };
        std::thread::Builder::new()
            .name("otpgate-audit".into())
            .spawn(move || writer.run(&rx))
            .context("cannot start the audit writer")?;
        Ok(Self {
            tx: Some(tx),
            path: Some(path.to_owned()),
            pseudonym_key: Zeroizing::new(keys.pseudonym_key().to_vec()),
            key: Some(key),
            tap: std::sync::OnceLock::new(),
        })
    }

    /// A log that writes nothing (tests that do not look at it).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            path: None,
            pseudonym_key: Zeroizing::new(b"otpgate-audit-disabled".to_vec()),
            key: None,
            tap: std::sync::OnceLock::new(),
        }
    }

    /// Lets `tap` see every event appended from now on (once; later calls are ignored),
    /// whether or not the log writes a file.
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    /// The line count (the last seq; purged lines included) and the link of the last line,
    /// once every line appended before is written and synced. `None` for a disabled log.
    ///
    /// # Errors
    /// [`AuditError::Closed`] if the writer has stopped.
    pub async fn head(&self) -> Result<Option<(u64, String)>, AuditError> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Cmd::Head { reply })
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?.map(Some)
    }

    /// An anchor of the log as it stands ([`anchor`]): the sealed JSON line (no newline)
    /// to export. `None` for a disabled log.
    ///
    /// # Errors
    /// As [`AuditLog::head`].
    pub async fn anchor(&self, now_ms: i64) -> Result<Option<String>, AuditError> {
        let (Some(key), Some(path)) = (&self.key, &self.path) else {
            return Ok(None);
        };
        let Some((seq, head)) = self.head().await? else {
            return Ok(None);
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Ok(Some(anchor::make_anchor(now_ms, &name, seq, &head, key)))
    }

    /// The file, unless disabled.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// `p:<16 hex of HMAC-SHA-256(pseudonym key, E.164)>:<last two digits>`: the same number
    /// always gives the same pseudonym, which reveals nothing without the key.
    pub fn pseudonymize(&self, phone: &PhoneNumber) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.pseudonym_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(phone.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("p:{}:{}", hex::encode(&tag[..8]), phone.last_two())
    }

    /// `c:<16 hex of HMAC-SHA-256(pseudonym key, "client:" ‖ address)>`: the same address
    /// always gives the same pseudonym (requests from one client can be linked), which
    /// reveals nothing without the key.
    pub fn pseudonymize_client(&self, ip: std::net::IpAddr) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.pseudonym_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"client:");
        mac.update(ip.to_canonical().to_string().as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("c:{}", hex::encode(&tag[..8]))
    }

    fn body(&self, event: AuditEvent) -> String {
        let mut detail = sanitize(event.detail);
        if detail.is_null() {
            detail = Value::Object(Map::new());
        }
        let mut detail = detail.to_string();
        if detail.len() > MAX_DETAIL_BYTES {
            detail = r#"{"truncated":true}"#.to_owned();
        }
        let s = |v: Option<String>| serde_json::to_string(&v).unwrap_or_else(|_| "null".into());
        let phone = event.phone.as_ref().map(|p| self.pseudonymize(p));
        format!(
            "\"at\":\"{}\",\"kind\":{},\"request_id\":{},\"client_request_id\":{},\"client\":{},\"verification_id\":{},\"app\":{},\"phone\":{},\"detail\":{detail}",
            rfc3339(event.at_ms),
            serde_json::to_string(event.kind).unwrap_or_else(|_| "\"\"".into()),
            s(event.request_id),
            s(event.client_request_id),
            s(event.client.map(|ip| self.pseudonymize_client(ip))),
            s(event.verification_id),
            s(event.app),
            s(phone),
        )
    }

    /// Resolves once the line is written: fsync'd (batched with concurrent appends), or
    /// under [`Durability::Process`] written to the OS.
    ///
    /// # Errors
    /// [`AuditError`] when the line could not be written.
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        if let Some(tap) = self.tap.get() {
            tap(TapEvent {
                kind: event.kind,
                at_ms: event.at_ms,
                verification_id: event.verification_id.clone(),
                app: event.app.clone(),
                phone: event.phone.as_ref().map(|p| self.pseudonymize(p)),
                detail: sanitize(event.detail.clone()),
            });
        }
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Cmd::Append {
            body: self.body(event),
            reply,
        })
        .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Drops the lines older than `before_ms` (retention), keeping the chain verifiable
    /// through a `checkpoint` line. Returns how many lines were dropped.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file could not be rewritten (it is then left as it was).
    pub async fn purge_before(&self, before_ms: i64) -> Result<u64, AuditError> {
        let Some(tx) = &self.tx else {
            return Ok(0);
        };
        let (reply, rx) = oneshot::channel();
        let now_ms = SystemClock.now_ms();
        tx.send(Cmd::Purge {
            before_ms,
            now_ms,
            reply,
        })
        .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

/// Runs `otpgate audit ...`: [`crate::cli::audit::run`], kept under this path for callers.
pub use crate::cli::audit::run as run_cli;

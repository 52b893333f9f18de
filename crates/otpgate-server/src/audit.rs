//! The audit log: append-only JSON lines, hash-chained, written with group commit.
//!
//! # Format
//! One JSON object per line, fields in this order:
//! `{"seq":N,"at":"2026-11-25T20:19:58Z","kind":"...","request_id":..,"client_request_id":..,
//! "client":"c:9b1e...","verification_id":..,"app":..,"phone":"p:3f9a2c0b1d4e5f60:23",
//! "detail":{..},"prev":"<hex>","hash":"<hex>"}`
//!
//! - `request_id` is the server's own id of the request (the response's `X-Request-Id`);
//!   `client_request_id` is the id the client sent, if any, kept apart; `client` is the
//!   client's address pseudonymised (a keyed hash). Lines written before these fields existed
//!   lack them and still verify.
//!
//! - `prev` is the hex SHA-256 of the previous line's bytes (without the newline); the first
//!   line's `prev` is 64 zeros ([`GENESIS`]).
//! - `hash` is the hex SHA-256 of the line itself without its `hash` field (the bytes up to
//!   `,"hash"` followed by `}`), so a modified line is named exactly, even the last one.
//! - `phone` is a pseudonym: a keyed hash of the number and its last two digits. A code is
//!   never written: `detail` keys that look like one (`code`, `otp`, `pin`, ...) are dropped
//!   and E.164 numbers inside `detail` are masked.
//!
//! # Retention
//! [`AuditLog::purge_before`] drops the oldest lines and writes in their place one
//! `checkpoint` line carrying the seq and the hash (`detail.anchor`) of the last dropped line,
//! so the rest of the chain still verifies.
//!
//! # Durability and speed
//! One writer thread owns the file. Appends from any number of tasks queue to it; it writes
//! everything queued in one go, `fdatasync`s once, then answers each append: an append
//! resolves only once its line is on disk, and concurrent appends share the fsync. With
//! [`Durability::Process`] ([`AuditLog::open_with`]) it answers after the write and syncs
//! at most [`Durability::PROCESS_SYNC_EVERY`] later (a crash of the process loses no
//! acknowledged line; a power cut may lose that last stretch). A line cut short by a crash
//! (no newline: never acknowledged) is removed when the log is opened again.
//!
//! # Limits
//! The chain proves order and integrity of what is in the file; cutting lines off the end
//! leaves a valid shorter chain, so ship the log off the host (or note its last hash) to
//! detect truncation.

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
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::clock::{Clock as _, SystemClock, rfc3339};
use crate::store::Durability;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The longest `detail`, serialized, in bytes; longer ones are replaced by a marker.
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Appends written (and fsync'd) together at most.
const MAX_BATCH: usize = 8192;
/// `,"hash":"` + 64 hex + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

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
}

/// The audit log. `Send + Sync`; share it in an `Arc`.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Cmd>>,
    path: Option<PathBuf>,
    pseudonym_key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("pseudonym_key", &"[redacted]")
            .finish()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// The line for `body` (`"at":..,"kind":..,...,"detail":..`) at `seq` after `prev`.
fn make_line(seq: u64, body: &str, prev: &str) -> String {
    let mut line = format!("{{\"seq\":{seq},{body},\"prev\":\"{prev}\"}}");
    let hash = sha256_hex(line.as_bytes());
    line.pop();
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}");
    line
}

/// Where the chain stands: the last seq and the `prev` the next line must carry.
#[derive(Clone, Debug, Eq, PartialEq)]
struct Head {
    seq: u64,
    next_prev: String,
}

/// Checks one line's own hash; returns the parsed object.
fn check_line(line: &str) -> Result<Map<String, Value>, String> {
    if line.len() < HASH_SUFFIX_LEN + 2 || !line.ends_with("\"}") {
        return Err("not an audit line (no hash field)".into());
    }
    let cut = line.len() - HASH_SUFFIX_LEN;
    let (content, suffix) = line.split_at(cut);
    let claimed = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or("no hash field at the end")?;
    if sha256_hex(format!("{content}}}").as_bytes()) != claimed {
        return Err("content does not match its hash (line modified)".into());
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("not a JSON object".into()),
    }
}

/// The head after `line` (already checked), given it is the first line or not.
fn head_after(line: &str, obj: &Map<String, Value>) -> Result<Head, String> {
    let seq = obj.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    if obj.get("kind").and_then(Value::as_str) == Some("checkpoint") {
        let anchor = obj
            .get("detail")
            .and_then(|d| d.get("anchor"))
            .and_then(Value::as_str)
            .filter(|a| a.len() == 64)
            .ok_or("checkpoint without anchor")?;
        return Ok(Head {
            seq,
            next_prev: anchor.to_owned(),
        });
    }
    Ok(Head {
        seq,
        next_prev: sha256_hex(line.as_bytes()),
    })
}

/// A broken chain: the 1-based line number and why.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChainError {
    /// The first bad line, 1-based.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Verifies every link of the log at `path`; returns the number of lines.
///
/// # Errors
/// `Err(Ok(ChainError))` for the first broken line, `Err(Err(io))` if the file cannot be
/// read.
pub fn verify_file(path: &Path) -> Result<u64, Result<ChainError, std::io::Error>> {
    let file = File::open(path).map_err(Err)?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut head: Option<Head> = None;
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(Err)?;
        if read == 0 {
            return Ok(n);
        }
        n += 1;
        let fail = |reason: String| Err(Ok(ChainError { line: n, reason }));
        if buf.last() != Some(&b'\n') {
            return fail("incomplete line (no newline at the end)".into());
        }
        buf.pop();
        let Ok(line) = std::str::from_utf8(&buf) else {
            return fail("not UTF-8".into());
        };
        let obj = match check_line(line) {
            Ok(o) => o,
            Err(reason) => return fail(reason),
        };
        let seq = obj.get("seq").and_then(Value::as_u64);
        let prev = obj.get("prev").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        match &head {
            None if kind == "checkpoint" => {}
            None => {
                if seq != Some(1) || prev != GENESIS {
                    return fail(
                        "the first line is neither seq 1 after the genesis nor a checkpoint".into(),
                    );
                }
            }
            Some(h) => {
                if kind == "checkpoint" {
                    return fail("checkpoint in the middle of the log".into());
                }
                if seq != Some(h.seq + 1) {
                    return fail(format!(
                        "seq {} where {} was expected (a line is missing, inserted or out of order)",
                        seq.map_or_else(|| "missing".to_owned(), |s| s.to_string()),
                        h.seq + 1
                    ));
                }
                if prev != h.next_prev {
                    return fail("prev does not match the previous line (a line is missing, inserted or out of order)".into());
                }
            }
        }
        head = Some(match head_after(line, &obj) {
            Ok(h) => h,
            Err(reason) => return fail(reason),
        });
    }
}

/// Reads where the chain of an existing file stands, cutting off a torn last line.
fn recover_head(file: &mut File, path: &Path) -> anyhow::Result<Head> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Head {
            seq: 0,
            next_prev: GENESIS.to_owned(),
        });
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
                    return Ok(Head {
                        seq: 0,
                        next_prev: GENESIS.to_owned(),
                    });
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
        let obj =
            check_line(line).map_err(|r| anyhow::anyhow!("{}: last line: {r}", path.display()))?;
        return head_after(line, &obj)
            .map_err(|r| anyhow::anyhow!("{}: last line: {r}", path.display()));
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

struct Writer {
    path: PathBuf,
    file: File,
    head: Head,
    durability: Durability,
    /// Under [`Durability::Process`]: lines written since the last sync, and when it was.
    unsynced: bool,
    last_sync: Instant,
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
            let line = make_line(self.head.seq + 1, body, &self.head.next_prev);
            self.head = Head {
                seq: self.head.seq + 1,
                next_prev: sha256_hex(line.as_bytes()),
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
            let obj = check_line(l)
                .map_err(|r| anyhow::anyhow!("line {}: {r}; not purging", dropped + 1))?;
            let at = obj.get("at").and_then(Value::as_str).and_then(parse_at);
            let old = at.is_some_and(|at| at < before_ms);
            if !old {
                first_kept = Some(l.to_owned());
                break;
            }
            let head =
                head_after(l, &obj).map_err(|r| anyhow::anyhow!("line {}: {r}", dropped + 1))?;
            last_dropped = Some((head.seq, head.next_prev));
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
        out.write_all(make_line(seq, &body, GENESIS).as_bytes())?;
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
    /// chain continues from the last line.
    ///
    /// # Errors
    /// The file cannot be opened, or its last line is not an audit line.
    pub fn open(path: &Path, pseudonym_key: Vec<u8>) -> anyhow::Result<Self> {
        Self::open_with(path, pseudonym_key, Durability::Disk)
    }

    /// [`AuditLog::open`] with a choice of when an append is acknowledged: after the
    /// `fdatasync` of its batch ([`Durability::Disk`]) or after the write, synced within
    /// [`Durability::PROCESS_SYNC_EVERY`] ([`Durability::Process`]).
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub fn open_with(
        path: &Path,
        pseudonym_key: Vec<u8>,
        durability: Durability,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = open_append(path)
            .with_context(|| format!("cannot open audit log {}", path.display()))?;
        let head = recover_head(&mut file, path)?;
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            path: path.to_owned(),
            file,
            head,
            durability,
            unsynced: false,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name("otpgate-audit".into())
            .spawn(move || writer.run(&rx))
            .context("cannot start the audit writer")?;
        Ok(Self {
            tx: Some(tx),
            path: Some(path.to_owned()),
            pseudonym_key: Zeroizing::new(pseudonym_key),
        })
    }

    /// A log that writes nothing (tests that do not look at it).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            path: None,
            pseudonym_key: Zeroizing::new(b"otpgate-audit-disabled".to_vec()),
        }
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

//! Anchors: what `serve` exports every minute (and at shutdown) so that cutting lines off
//! the end of the audit log, which leaves a valid shorter chain, is still detected.
//!
//! An anchor is one JSON line:
//! `{"at":"2026-11-25T20:19:58Z","log":"audit.jsonl","seq":N,"head":"<link of line N>",
//! "kid":"<audit key id>","mac":"<hex>"}`, where `seq` is the line count (the seq of the
//! last line: lines written since the log began, purged ones included), `head` the last
//! line's link, and `mac` = HMAC-SHA-256(audit key `kid`, [`ANCHOR_DOMAIN`] ‖ the anchor
//! without its `mac` field).
//!
//! The sink ([`AnchorSink`]) should be out of reach of whoever could rewrite the log:
//! another machine, an append-only file, a log collector. `otpgate audit verify --anchors`
//! then reports a log with fewer lines than an anchor saw, or another line at that count.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::chain::{
    ANCHOR_DOMAIN, AuditKey, VerifyError, check_seal, json_str, seal, split_sealed,
};
use crate::clock::rfc3339;

/// One anchor, its MAC checked.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Anchor {
    /// When it was made (RFC 3339).
    pub at: String,
    /// The name of the log file it was taken of.
    pub log: String,
    /// The line count it saw (the last seq).
    pub seq: u64,
    /// The link of the line at `seq` ([`super::GENESIS`] for an empty log).
    pub head: String,
    /// The audit key that sealed it.
    pub kid: String,
}

/// The sealed anchor line (no newline) for `log` at `seq` / `head`, made at `at_ms`.
pub(super) fn make_anchor(at_ms: i64, log: &str, seq: u64, head: &str, key: &AuditKey) -> String {
    let content = format!(
        "{{\"at\":\"{}\",\"log\":{},\"seq\":{seq},\"head\":\"{head}\"}}",
        rfc3339(at_ms),
        json_str(log)
    );
    seal(ANCHOR_DOMAIN, &content, key).0
}

/// Parses one anchor line and checks its MAC.
fn parse_anchor(line: &str, keys: &[AuditKey]) -> Result<Anchor, String> {
    let (covered, mac) = split_sealed(line).ok_or("not an anchor (no mac field at the end)")?;
    let obj = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        _ => return Err("not a JSON object".into()),
    };
    let s = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {k}"))
    };
    let kid = s("kid")?;
    check_seal(ANCHOR_DOMAIN, covered, mac, &kid, keys)
        .map_err(|e| e.replace("the line was edited", "the anchor was edited"))?;
    Ok(Anchor {
        at: s("at")?,
        log: s("log")?,
        seq: obj.get("seq").and_then(Value::as_u64).ok_or("no seq")?,
        head: s("head")?,
        kid,
    })
}

/// Reads every anchor of `path` (blank lines skipped), each with its 1-based line number.
///
/// # Errors
/// [`VerifyError::Io`], or [`VerifyError::BadAnchor`] for the first line that is not a
/// valid anchor (a torn last line included: anchors are written whole and synced).
pub fn read_anchors(path: &Path, keys: &[AuditKey]) -> Result<Vec<(u64, Anchor)>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        let n = i as u64 + 1;
        let bad = |reason: String| VerifyError::BadAnchor { line: n, reason };
        let text = std::str::from_utf8(&line).map_err(|_| bad("not UTF-8".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        out.push((n, parse_anchor(text, keys).map_err(bad)?));
    }
    Ok(out)
}

/// Where `serve` exports anchors (`[audit] anchor`).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum AnchorSink {
    /// `file:/path`: one anchor per line, appended and synced (the file is created 0600).
    File(PathBuf),
    /// `http://...` or `https://...`: each anchor POSTed as `application/json`; any answer
    /// but 2xx is a failure (logged; the next minute's anchor is sent anyway).
    Http(String),
}

impl AnchorSink {
    /// Parses `file:/path`, `http://...` or `https://...`.
    ///
    /// # Errors
    /// Anything else, with what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err("file: needs a path (file:/var/lib/otpgate-anchors.jsonl)".into());
            }
            return Ok(Self::File(PathBuf::from(p)));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return reqwest::Url::parse(s)
                .map(|_| Self::Http(s.to_owned()))
                .map_err(|e| format!("not a valid URL: {e}"));
        }
        Err("expected file:/path, http://... or https://...".into())
    }

    /// Writes one anchor line.
    ///
    /// # Errors
    /// The file cannot be appended to and synced, or the endpoint did not answer 2xx.
    pub async fn write(&self, client: &reqwest::Client, anchor: &str) -> anyhow::Result<()> {
        match self {
            Self::File(path) => {
                let path = path.clone();
                let line = format!("{anchor}\n");
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut opts = std::fs::OpenOptions::new();
                    opts.append(true).create(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt as _;
                        opts.mode(0o600);
                    }
                    let mut f = opts
                        .open(&path)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
                    f.write_all(line.as_bytes())
                        .and_then(|()| f.sync_data())
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
                })
                .await?
            }
            Self::Http(url) => {
                let resp = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(anchor.to_owned())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("anchor POST failed: {}", e.without_url()))?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "anchor POST answered {}",
                    resp.status()
                );
                Ok(())
            }
        }
    }

    /// What to log about the sink (a URL without its query or credentials).
    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => format!("file:{}", p.display()),
            Self::Http(u) => reqwest::Url::parse(u).map_or_else(
                |_| "http".to_owned(),
                |u| {
                    format!(
                        "{}://{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                },
            ),
        }
    }
}

//! The keyed chain: how a line is sealed (HMAC-SHA-256 under an audit key named by `kid`)
//! and how a whole file is checked, optionally against exported anchors.
//!
//! A line is `{"seq":N,...,"prev":"<link of line N-1>","kid":"<key id>","mac":"<hex>"}`,
//! where `mac` = HMAC-SHA-256(key `kid`, [`LINE_DOMAIN`] ‖ the line without its `mac`
//! field). A line's *link* is its `mac`; the next line's `prev` is that link, so every MAC
//! covers the whole history before it. Without the key nobody can seal a line, so an edited,
//! removed, inserted or re-sealed line fails. A `checkpoint` (the retention purge's stand-in
//! for the dropped lines) is sealed the same way; its `detail.anchor` is the link of the last
//! dropped line, which the first kept line's `prev` names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::GENESIS;

/// What an audit line's MAC is computed over, before the line's bytes (domain separation
/// from the anchors' MAC, [`ANCHOR_DOMAIN`]).
pub const LINE_DOMAIN: &[u8] = b"otpgate-audit-line-v1\n";
/// What an anchor's MAC is computed over, before the anchor's bytes.
pub const ANCHOR_DOMAIN: &[u8] = b"otpgate-audit-anchor-v1\n";
/// `,"mac":"` + 64 hex + `"}`.
const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;
/// `,"hash":"` + 64 hex + `"}`: the unkeyed lines written before the keyed chain.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// A key of the audit chain: an id (written on every line as `kid`) and an HMAC-SHA-256
/// secret. `Debug` prints the id only; the secret is zeroized when dropped.
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl AuditKey {
    /// A key named `id` with `secret` (any length; the key directory makes 32 random bytes).
    pub fn new(id: impl Into<String>, secret: Vec<u8>) -> Self {
        Self {
            id: id.into(),
            secret: Zeroizing::new(secret),
        }
    }

    /// The key id, written on each line it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(domain);
        for p in parts {
            mac.update(p);
        }
        mac
    }

    /// The hex tag of `parts` (concatenated) under `domain`.
    pub(super) fn tag_hex(&self, domain: &[u8], parts: &[&[u8]]) -> String {
        hex::encode(self.mac(domain, parts).finalize().into_bytes())
    }

    /// Whether `claimed_hex` is the tag of `parts`; compared in constant time.
    pub(super) fn verifies(&self, domain: &[u8], parts: &[&[u8]], claimed_hex: &str) -> bool {
        let Ok(claimed) = hex::decode(claimed_hex) else {
            return false;
        };
        self.mac(domain, parts).verify_slice(&claimed).is_ok()
    }
}

/// `value` as a JSON string literal.
pub(super) fn json_str(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

/// Seals `content` (a JSON object text ending in `}`): inserts `"kid"` and `"mac"` before
/// the closing brace. Returns the sealed text and the MAC (hex).
pub(super) fn seal(domain: &[u8], content: &str, key: &AuditKey) -> (String, String) {
    let mut out = content.strip_suffix('}').unwrap_or(content).to_owned();
    out.push_str(",\"kid\":");
    out.push_str(&json_str(key.id()));
    let tag = key.tag_hex(domain, &[out.as_bytes(), b"}"]);
    out.push_str(",\"mac\":\"");
    out.push_str(&tag);
    out.push_str("\"}");
    (out, tag)
}

/// Splits a sealed text into what the MAC covers (without the closing brace) and the MAC.
pub(super) fn split_sealed(text: &str) -> Option<(&str, &str)> {
    let cut = text.len().checked_sub(MAC_SUFFIX_LEN)?;
    let suffix = text.get(cut..)?;
    let mac = suffix.strip_prefix(",\"mac\":\"")?.strip_suffix("\"}")?;
    mac.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then(|| (&text[..cut], mac))
}

/// Checks a sealed text's MAC with the key its `kid` names among `keys`.
pub(super) fn check_seal(
    domain: &[u8],
    covered: &str,
    mac: &str,
    kid: &str,
    keys: &[AuditKey],
) -> Result<(), String> {
    let Some(key) = keys.iter().find(|k| k.id() == kid) else {
        return Err(format!(
            "unknown audit key `{kid}` (not among the keys given: the wrong data directory, \
             a revoked key, or a forged line)"
        ));
    };
    if key.verifies(domain, &[covered.as_bytes(), b"}"], mac) {
        Ok(())
    } else {
        Err(format!(
            "MAC does not verify under audit key `{kid}` (the line was edited, or sealed by \
             someone without the key)"
        ))
    }
}

/// The line for `body` (`"at":..,"kind":..,...,"detail":..`) at `seq` after `prev`, sealed
/// with `key`; and its link.
pub(super) fn make_line(seq: u64, body: &str, prev: &str, key: &AuditKey) -> (String, String) {
    seal(
        LINE_DOMAIN,
        &format!("{{\"seq\":{seq},{body},\"prev\":\"{prev}\"}}"),
        key,
    )
}

/// One line, structurally checked (its MAC is checked apart, [`ParsedLine::check_mac`]).
#[derive(Debug)]
pub(super) struct ParsedLine<'a> {
    /// The JSON object.
    pub(super) obj: Map<String, Value>,
    /// For a keyed line: what the MAC covers and the MAC; `None` for an unkeyed (legacy)
    /// line, whose own hash has been checked.
    sealed: Option<(&'a str, &'a str)>,
    /// What the next line's `prev` names: the MAC, or an unkeyed line's SHA-256.
    pub(super) link: String,
}

impl ParsedLine<'_> {
    /// Whether the line carries a MAC.
    pub(super) fn keyed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Checks the MAC with the key the line names.
    pub(super) fn check_mac(&self, keys: &[AuditKey]) -> Result<(), String> {
        let Some((covered, mac)) = self.sealed else {
            return Err(
                "no MAC: an unkeyed line (written by someone without the audit key, \
                 or before otpgate sealed its audit log)"
                    .into(),
            );
        };
        let kid = self
            .obj
            .get("kid")
            .and_then(Value::as_str)
            .ok_or("no kid")?;
        check_seal(LINE_DOMAIN, covered, mac, kid, keys)
    }

    /// The line's `seq`.
    pub(super) fn seq(&self) -> Option<u64> {
        self.obj.get("seq").and_then(Value::as_u64)
    }

    /// The line's `kind`.
    pub(super) fn kind(&self) -> &str {
        self.obj.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// The `prev` the next line must carry: a checkpoint's anchor, or this line's link.
    pub(super) fn next_prev(&self) -> Result<String, String> {
        if self.kind() == "checkpoint" {
            return self
                .obj
                .get("detail")
                .and_then(|d| d.get("anchor"))
                .and_then(Value::as_str)
                .filter(|a| a.len() == 64)
                .map(str::to_owned)
                .ok_or_else(|| "checkpoint without anchor".to_owned());
        }
        Ok(self.link.clone())
    }
}

/// Parses a line (keyed, or unkeyed with a valid own hash) into its object and link.
pub(super) fn parse_line(line: &str) -> Result<ParsedLine<'_>, String> {
    let parse = |line: &str| match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("not a JSON object".to_owned()),
    };
    if let Some((covered, mac)) = split_sealed(line) {
        let obj = parse(line)?;
        if obj.get("mac").and_then(Value::as_str) != Some(mac) {
            return Err("malformed mac field".into());
        }
        return Ok(ParsedLine {
            obj,
            sealed: Some((covered, mac)),
            link: mac.to_owned(),
        });
    }
    let cut = line
        .len()
        .checked_sub(HASH_SUFFIX_LEN)
        .filter(|_| line.ends_with("\"}"))
        .ok_or("not an audit line (no mac field at the end)")?;
    let (content, suffix) = line
        .get(..cut)
        .zip(line.get(cut..))
        .ok_or("not an audit line (no mac field at the end)")?;
    let claimed = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or("not an audit line (no mac field at the end)")?;
    if hex::encode(Sha256::digest(format!("{content}}}").as_bytes())) != claimed {
        return Err("content does not match its hash (line modified)".into());
    }
    Ok(ParsedLine {
        obj: parse(line)?,
        sealed: None,
        link: hex::encode(Sha256::digest(line.as_bytes())),
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

/// Why a log (or its anchors) does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The chain is broken at a line (edited, deleted, inserted, re-sealed, forged
    /// checkpoint, unknown key).
    #[error("chain broken at {0}")]
    Broken(ChainError),
    /// A line of the anchors file is not a valid anchor (bad JSON, or its MAC fails).
    #[error("anchors file, line {line}: {reason}")]
    BadAnchor {
        /// The anchor's line in the anchors file, 1-based.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The log ends before a line an anchor saw: lines were cut off the end.
    #[error(
        "truncated: the log ends at seq {last_seq}, but the anchor of {anchor_at} (anchors \
         file line {anchor_line}) saw {anchor_seq} lines"
    )]
    Truncated {
        /// The anchor's line in the anchors file.
        anchor_line: u64,
        /// When the anchor was made.
        anchor_at: String,
        /// The line count (last seq) the anchor saw.
        anchor_seq: u64,
        /// The last seq of the log.
        last_seq: u64,
    },
    /// The line an anchor saw at its seq is not the one in the log: the log was rewritten
    /// from there on (or truncated, then appended to).
    #[error(
        "rewritten: line seq {seq} is not the one the anchor of {anchor_at} (anchors file \
         line {anchor_line}) saw (the log was cut there and written again, or replaced)"
    )]
    Rewritten {
        /// The anchor's line in the anchors file.
        anchor_line: u64,
        /// When the anchor was made.
        anchor_at: String,
        /// The seq whose link differs.
        seq: u64,
    },
}

impl VerifyError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "audit_io",
            Self::Broken(_) => "audit_chain_broken",
            Self::BadAnchor { .. } => "audit_bad_anchor",
            Self::Truncated { .. } => "audit_truncated",
            Self::Rewritten { .. } => "audit_rewritten",
        }
    }
}

/// What a successful verification saw.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Verified {
    /// Lines in the file.
    pub lines: u64,
    /// The seq of the last line (lines written since the log began, purged ones included);
    /// 0 for an empty log.
    pub last_seq: u64,
    /// The link of the last line ([`GENESIS`] for an empty log).
    pub head: String,
    /// When the file starts with a checkpoint: the seq of the last line it replaces.
    pub purged_through: Option<u64>,
    /// The ids of the audit keys that sealed the lines, in order of first use.
    pub key_ids: Vec<String>,
    /// Anchors checked against the log.
    pub anchors_checked: u64,
    /// Anchors that name lines the retention purge has since dropped (not checkable).
    pub anchors_purged: u64,
    /// The last anchor's time and line count, if anchors were given.
    pub last_anchor: Option<(String, u64)>,
}

/// Walks the chain of `reader`, checking every MAC with `keys`; remembers the links at the
/// seqs in `want`.
fn walk(
    path: &Path,
    reader: impl BufRead,
    keys: &[AuditKey],
    want: &BTreeSet<u64>,
) -> Result<(Verified, BTreeMap<u64, String>), VerifyError> {
    let mut reader = reader;
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut buf = Vec::new();
    let mut head: Option<(u64, String)> = None;
    let mut out = Verified {
        head: GENESIS.to_owned(),
        ..Verified::default()
    };
    let mut links = BTreeMap::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        out.lines += 1;
        let n = out.lines;
        let fail = |reason: String| VerifyError::Broken(ChainError { line: n, reason });
        if buf.last() != Some(&b'\n') {
            return Err(fail("incomplete line (no newline at the end)".into()));
        }
        buf.pop();
        let line = std::str::from_utf8(&buf).map_err(|_| fail("not UTF-8".into()))?;
        let parsed = parse_line(line).map_err(&fail)?;
        parsed.check_mac(keys).map_err(&fail)?;
        let seq = parsed.seq().ok_or_else(|| fail("no seq".into()))?;
        let prev = parsed.obj.get("prev").and_then(Value::as_str).unwrap_or("");
        let checkpoint = parsed.kind() == "checkpoint";
        match &head {
            None if checkpoint => out.purged_through = Some(seq),
            None => {
                if seq != 1 || prev != GENESIS {
                    return Err(fail(
                        "the first line is neither seq 1 after the genesis nor a checkpoint \
                         (lines are missing at the start)"
                            .into(),
                    ));
                }
            }
            Some((last, next_prev)) => {
                if checkpoint {
                    return Err(fail("checkpoint in the middle of the log".into()));
                }
                if seq != last + 1 {
                    return Err(fail(format!(
                        "seq {seq} where {} was expected (a line is missing, inserted or out \
                         of order)",
                        last + 1
                    )));
                }
                if prev != next_prev {
                    return Err(fail(
                        "prev does not match the previous line (a line is missing, inserted \
                         or out of order)"
                            .into(),
                    ));
                }
            }
        }
        if let Some(kid) = parsed.obj.get("kid").and_then(Value::as_str)
            && !out.key_ids.iter().any(|k| k == kid)
        {
            out.key_ids.push(kid.to_owned());
        }
        let next = parsed.next_prev().map_err(&fail)?;
        if want.contains(&seq) {
            links.insert(seq, next.clone());
        }
        head = Some((seq, next));
    }
    if let Some((seq, link)) = head {
        out.last_seq = seq;
        out.head = link;
    }
    Ok((out, links))
}

/// Verifies every line of the log at `path`: each MAC under the key its `kid` names among
/// `keys` (current and retired audit keys), each `seq` and `prev` link.
///
/// # Errors
/// [`VerifyError::Broken`] names the first bad line; [`VerifyError::Io`] when the file
/// cannot be read.
pub fn verify_file(path: &Path, keys: &[AuditKey]) -> Result<Verified, VerifyError> {
    verify_with_anchors(path, keys, None)
}

/// [`verify_file`], then, given an anchors file (what `serve` exported, see
/// [`super::anchor`]), checks every anchor's MAC and that the log still holds, at each
/// anchor's line count, the line the anchor saw: fewer lines is truncation, another line is
/// a rewrite.
///
/// # Errors
/// As [`verify_file`], and [`VerifyError::BadAnchor`], [`VerifyError::Truncated`],
/// [`VerifyError::Rewritten`].
pub fn verify_with_anchors(
    path: &Path,
    keys: &[AuditKey],
    anchors: Option<&Path>,
) -> Result<Verified, VerifyError> {
    let anchors = match anchors {
        Some(a) => super::anchor::read_anchors(a, keys)?,
        None => Vec::new(),
    };
    let want: BTreeSet<u64> = anchors.iter().map(|(_, a)| a.seq).collect();
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (mut out, links) = walk(path, std::io::BufReader::new(file), keys, &want)?;
    let first_kept = out.purged_through.unwrap_or(0);
    let mut truncated: Option<&(u64, super::anchor::Anchor)> = None;
    for entry in &anchors {
        let (line, a) = entry;
        if a.seq > out.last_seq {
            if truncated.is_none_or(|(_, t)| a.seq > t.seq) {
                truncated = Some(entry);
            }
            continue;
        }
        match links.get(&a.seq) {
            Some(link) if *link == a.head => out.anchors_checked += 1,
            Some(_) => {
                return Err(VerifyError::Rewritten {
                    anchor_line: *line,
                    anchor_at: a.at.clone(),
                    seq: a.seq,
                });
            }
            None if a.seq == 0 && a.head == GENESIS => out.anchors_checked += 1,
            None if a.seq < first_kept => out.anchors_purged += 1,
            None => {
                return Err(VerifyError::Rewritten {
                    anchor_line: *line,
                    anchor_at: a.at.clone(),
                    seq: a.seq,
                });
            }
        }
    }
    if let Some((line, a)) = truncated {
        return Err(VerifyError::Truncated {
            anchor_line: *line,
            anchor_at: a.at.clone(),
            anchor_seq: a.seq,
            last_seq: out.last_seq,
        });
    }
    out.last_anchor = anchors.last().map(|(_, a)| (a.at.clone(), a.seq));
    Ok(out)
}

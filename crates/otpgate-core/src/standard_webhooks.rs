//! Standard Webhooks signatures (standardwebhooks.com), as Supabase Auth signs its hooks.
//!
//! - The signed content is `webhook-id ‖ "." ‖ webhook-timestamp ‖ "." ‖ raw body`; the
//!   signature is `v1,` + base64 (standard alphabet, padded) of HMAC-SHA256 over it, keyed with
//!   the secret's bytes.
//! - A secret is written `v1,whsec_<base64>` (Supabase's form) or `whsec_<base64>`; several
//!   are joined by `|` (Supabase's `GOTRUE_HOOK_SEND_SMS_SECRETS` form), so a secret can be
//!   rotated by accepting the old and the new one for a while.
//! - `webhook-signature` holds one or more space-separated `v<n>,<base64>` entries (a sender
//!   signs with each of its secrets while it rotates); entries of other versions are skipped.
//!   Supabase Auth joins its entries with `", "` (`v1,<a>, v1,<b>`): a comma ending an entry
//!   is not part of it (base64 has no comma), so both forms are read.
//!
//! # Rules
//! The timestamp follows [`crate::webhook::check_timestamp`] (1 to 12 digits, inside the
//! window either side). Every `v1` entry is compared with [`ct_eq`] against the signature
//! made with every accepted secret, with no early exit. Checks run in this order, and the
//! first that fails names the error: headers present and the id well formed, timestamp well
//! formed, timestamp fresh, signature.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::code::ct_eq;
use crate::webhook::{WebhookError, check_timestamp};

/// The shortest secret accepted, bytes (Supabase makes 32-byte secrets; a short one is
/// guessable).
pub const MIN_SECRET_BYTES: usize = 16;
/// The longest `webhook-id` accepted.
pub const MAX_ID_LEN: usize = 255;
/// The longest `webhook-signature` header read at all (about 40 signatures).
const MAX_SIGNATURE_HEADER: usize = 4096;

/// One Standard Webhooks secret: the HMAC key's bytes. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Why a secret was refused (the message never contains the secret).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret at all.
    #[error("no secret given (expected v1,whsec_<base64>, several joined by |)")]
    Empty,
    /// A secret does not start with `v1,whsec_` or `whsec_`.
    #[error("secret {0} does not start with v1,whsec_ or whsec_")]
    Prefix(usize),
    /// A secret is not standard base64.
    #[error("secret {0} is not base64 after whsec_")]
    Base64(usize),
    /// A secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("secret {0} is shorter than {MIN_SECRET_BYTES} bytes")]
    TooShort(usize),
}

impl WebhookSecret {
    /// A secret from its raw key bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Parses `v1,whsec_<base64>` or `whsec_<base64>` (`n` numbers it in errors).
    fn parse_one(text: &str, n: usize) -> Result<Self, SecretError> {
        let t = text.trim();
        let b64 = t
            .strip_prefix("v1,whsec_")
            .or_else(|| t.strip_prefix("whsec_"))
            .ok_or(SecretError::Prefix(n))?;
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::Base64(n))?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(n));
        }
        Ok(Self(bytes))
    }

    /// Parses one or more secrets joined by `|` (empty parts are skipped).
    ///
    /// # Errors
    /// [`SecretError`] naming the first bad secret by its position (1-based).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, SecretError> {
        let secrets = text
            .split('|')
            .filter(|s| !s.trim().is_empty())
            .enumerate()
            .map(|(i, s)| Self::parse_one(s, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(secrets)
    }

    /// The `webhook-signature` entry (`v1,<base64>`) of `body` sent as `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The three headers of a Standard Webhooks request, as received (`None`: absent).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Headers<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp` (Unix seconds).
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Whether `id` is a usable `webhook-id`: 1 to [`MAX_ID_LEN`] visible ASCII characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a Standard Webhooks request signed by any of `secrets`: the exact raw body and
/// its headers, against `now` (Unix seconds) with a window of `window_secs`.
///
/// # Errors
/// [`WebhookError`] saying which check failed first (see the module's rules): a missing
/// header or a malformed id is [`WebhookError::MissingHeader`].
pub fn verify(
    secrets: &[WebhookSecret],
    body: &[u8],
    headers: Headers<'_>,
    now: i64,
    window_secs: i64,
) -> Result<(), WebhookError> {
    let (Some(id), Some(ts), Some(sig)) = (headers.id, headers.timestamp, headers.signature) else {
        return Err(WebhookError::MissingHeader);
    };
    if !valid_id(id) {
        return Err(WebhookError::MissingHeader);
    }
    check_timestamp(ts, now, window_secs)?;
    if sig.len() > MAX_SIGNATURE_HEADER {
        return Err(WebhookError::BadSignature);
    }
    let expected: Vec<String> = secrets.iter().map(|s| s.sign(id, ts, body)).collect();
    // Every entry against every secret, no early exit: the time taken says nothing of which
    // secret or entry matched.
    let matched = sig
        .split(' ')
        .map(|e| e.strip_suffix(',').unwrap_or(e))
        .filter(|e| e.starts_with("v1,"))
        .fold(false, |found, entry| {
            expected.iter().fold(found, |f, want| {
                ct_eq(want.as_bytes(), entry.as_bytes()) | f
            })
        });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference test vector (its libraries' own tests): secret
    // `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    // timestamp 1614265330, body `{"test": 2432232314}`.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn reference_vector() {
        let s = WebhookSecret::parse_list(SECRET).unwrap();
        assert_eq!(s[0].sign(ID, TS, BODY), SIG);
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, SIG), 1_614_265_330, 300),
            Ok(())
        );
        // Supabase's form of the same secret.
        let s = WebhookSecret::parse_list(&format!("v1,{SECRET}")).unwrap();
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, SIG), 1_614_265_400, 300),
            Ok(())
        );
    }

    #[test]
    fn rotation_and_several_signatures() {
        let other = format!("v1,whsec_{}", STANDARD.encode([9u8; 32]));
        let both = WebhookSecret::parse_list(&format!("{other}|v1,{SECRET}")).unwrap();
        assert_eq!(both.len(), 2);
        let now = 1_614_265_330;
        assert_eq!(verify(&both, BODY, headers(ID, TS, SIG), now, 300), Ok(()));
        // A sender mid-rotation sends several entries; one matching is enough.
        let multi = format!("v1a,abc v1,AAAA {SIG}");
        let only_old = WebhookSecret::parse_list(SECRET).unwrap();
        assert_eq!(
            verify(&only_old, BODY, headers(ID, TS, &multi), now, 300),
            Ok(())
        );
        // Supabase Auth joins its signatures with ", ": the old secret's entry first, a
        // comma after it; it matches in either place.
        let supabase = format!("{SIG}, v1,AAAA");
        assert_eq!(
            verify(&only_old, BODY, headers(ID, TS, &supabase), now, 300),
            Ok(())
        );
        let supabase = format!("v1,AAAA, {SIG}");
        assert_eq!(
            verify(&only_old, BODY, headers(ID, TS, &supabase), now, 300),
            Ok(())
        );
        // A comma inside an entry, or two, is not Supabase's form.
        let mangled = format!("{SIG},,");
        assert_eq!(
            verify(&only_old, BODY, headers(ID, TS, &mangled), now, 300),
            Err(WebhookError::BadSignature)
        );
        // Rotated out: only the other secret left.
        let only_new = WebhookSecret::parse_list(&other).unwrap();
        assert_eq!(
            verify(&only_new, BODY, headers(ID, TS, SIG), now, 300),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn forged_stale_and_malformed() {
        let s = WebhookSecret::parse_list(SECRET).unwrap();
        let now = 1_614_265_330;
        let mut body = BODY.to_vec();
        body[3] ^= 1;
        assert_eq!(
            verify(&s, &body, headers(ID, TS, SIG), now, 300),
            Err(WebhookError::BadSignature)
        );
        // The id and the timestamp are signed.
        assert_eq!(
            verify(&s, BODY, headers("msg_other", TS, SIG), now, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&s, BODY, headers(ID, "1614265331", SIG), now, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, SIG), now + 301, 300),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, SIG), now - 301, 300),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify(&s, BODY, headers(ID, "abc", SIG), now, 300),
            Err(WebhookError::BadTimestamp)
        );
        assert_eq!(
            verify(&s, BODY, headers("", TS, SIG), now, 300),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            verify(&s, BODY, headers("a b", TS, SIG), now, 300),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            verify(&s, BODY, Headers::default(), now, 300),
            Err(WebhookError::MissingHeader)
        );
        let huge = "v1,x ".repeat(2000);
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, &huge), now, 300),
            Err(WebhookError::BadSignature)
        );
        // Without the version prefix the entry is not a v1 signature.
        let bare = SIG.trim_start_matches("v1,");
        assert_eq!(
            verify(&s, BODY, headers(ID, TS, bare), now, 300),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert_eq!(WebhookSecret::parse_list(""), Err(SecretError::Empty));
        assert_eq!(WebhookSecret::parse_list(" | "), Err(SecretError::Empty));
        assert_eq!(
            WebhookSecret::parse_list("v1,abc"),
            Err(SecretError::Prefix(1))
        );
        assert_eq!(
            WebhookSecret::parse_list(&format!("{SECRET}|whsec_!!")),
            Err(SecretError::Base64(2))
        );
        assert_eq!(
            WebhookSecret::parse_list(&format!("whsec_{}", STANDARD.encode([1u8; 8]))),
            Err(SecretError::TooShort(1))
        );
        let s = WebhookSecret::parse_list(SECRET).unwrap();
        assert_eq!(format!("{s:?}"), "[WebhookSecret([redacted])]");
    }
}

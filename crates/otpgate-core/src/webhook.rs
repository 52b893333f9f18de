//! Signatures of gateway webhooks, checked in constant time.
//!
//! - sms-gate.app: `X-Signature = hex(HMAC-SHA256(key, raw_body ‖ X-Timestamp))`, with
//!   `X-Timestamp` in Unix seconds; the receiver enforces a time window (±300 s by default).
//! - TextBee: `X-Signature = hex(HMAC-SHA256(secret, raw_body))`; no timestamp, so replay
//!   protection is the receiver's de-duplication on the event id.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::code::ct_eq;

/// The default accepted clock difference for sms-gate.app webhooks, in seconds.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// Why a webhook signature was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature or timestamp header is missing.
    #[error("missing signature header")]
    MissingHeader,
    /// The timestamp is not a decimal Unix time.
    #[error("malformed timestamp")]
    BadTimestamp,
    /// The timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// The signature is not 64 hex digits or does not match.
    #[error("signature mismatch")]
    BadSignature,
}

impl WebhookError {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_signature",
            Self::BadTimestamp => "bad_timestamp",
            Self::Stale => "stale_timestamp",
            Self::BadSignature => "bad_signature",
        }
    }
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for p in parts {
        mac.update(p);
    }
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The `X-Signature` value sms-gate.app sends for `body` at `timestamp` (used by the emulator).
pub fn sign_smsgate(key: &str, body: &[u8], timestamp: &str) -> String {
    hmac_hex(key.as_bytes(), &[body, timestamp.as_bytes()])
}

/// Checks an sms-gate.app webhook: the exact raw body, the `X-Timestamp` and `X-Signature`
/// headers, against `now` (Unix seconds) with a window of `window_secs`.
///
/// # Errors
/// [`WebhookError`] saying which check failed.
pub fn verify_smsgate(
    key: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
    window_secs: i64,
) -> Result<(), WebhookError> {
    let (ts, sig) = timestamp
        .zip(signature)
        .ok_or(WebhookError::MissingHeader)?;
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::BadTimestamp);
    }
    let at: i64 = ts.parse().map_err(|_| WebhookError::BadTimestamp)?;
    if (now - at).abs() > window_secs {
        return Err(WebhookError::Stale);
    }
    let expected = sign_smsgate(key, body, ts);
    if ct_eq(
        expected.as_bytes(),
        sig.trim().to_ascii_lowercase().as_bytes(),
    ) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The `X-Signature` TextBee sends for `body`.
pub fn sign_textbee(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), &[body])
}

/// Checks a TextBee webhook signature over the raw body.
///
/// # Errors
/// [`WebhookError::MissingHeader`] or [`WebhookError::BadSignature`].
pub fn verify_textbee(
    secret: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), WebhookError> {
    let sig = signature.ok_or(WebhookError::MissingHeader)?;
    if ct_eq(
        sign_textbee(secret, body).as_bytes(),
        sig.trim().to_ascii_lowercase().as_bytes(),
    ) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"Ey6ECgOkVVFjz3CL48B8C","event":"sms:delivered","payload":{"messageId":"otp-7f3c"}}"#;

    #[test]
    fn known_vector() {
        // Python: hmac.new(b"key", b"{}1700000000", hashlib.sha256).hexdigest()
        assert_eq!(
            sign_smsgate("key", b"{}", "1700000000"),
            "93800482ca289ca2ab5ad69bbb6a631e6a997ad0fb659f5edfb80f566fc07457"
        );
    }

    #[test]
    fn valid_signature_within_window_passes() {
        let sig = sign_smsgate("s3cret", BODY, "1700000000");
        assert_eq!(
            verify_smsgate(
                "s3cret",
                BODY,
                Some("1700000000"),
                Some(&sig),
                1_700_000_100,
                300
            ),
            Ok(())
        );
        let upper = sig.to_ascii_uppercase();
        assert_eq!(
            verify_smsgate(
                "s3cret",
                BODY,
                Some("1700000000"),
                Some(&upper),
                1_700_000_000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_and_malformed_webhooks_fail() {
        let sig = sign_smsgate("s3cret", BODY, "1700000000");
        let now = 1_700_000_000;
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify_smsgate(
                "s3cret",
                &tampered,
                Some("1700000000"),
                Some(&sig),
                now,
                300
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_smsgate("other", BODY, Some("1700000000"), Some(&sig), now, 300),
            Err(WebhookError::BadSignature)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            verify_smsgate("s3cret", BODY, Some("1700000001"), Some(&sig), now, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_smsgate(
                "s3cret",
                BODY,
                Some("1700000000"),
                Some(&sig),
                now + 301,
                300
            ),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_smsgate(
                "s3cret",
                BODY,
                Some("1700000000"),
                Some(&sig),
                now - 301,
                300
            ),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_smsgate("s3cret", BODY, None, Some(&sig), now, 300),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            verify_smsgate("s3cret", BODY, Some("1700000000"), None, now, 300),
            Err(WebhookError::MissingHeader)
        );
        for ts in ["", "-5", "17e8", "99999999999999999999", "1700000000 "] {
            assert_eq!(
                verify_smsgate("s3cret", BODY, Some(ts), Some(&sig), now, 300),
                Err(WebhookError::BadTimestamp),
                "{ts:?}"
            );
        }
        assert_eq!(
            verify_smsgate(
                "s3cret",
                BODY,
                Some("1700000000"),
                Some(&sig[..63]),
                now,
                300
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_smsgate("s3cret", BODY, Some("1700000000"), Some(""), now, 300),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn textbee_signatures() {
        let sig = sign_textbee("tb", BODY);
        assert_eq!(verify_textbee("tb", BODY, Some(&sig)), Ok(()));
        assert_eq!(
            verify_textbee("tb", b"{}", Some(&sig)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_textbee("tb", BODY, None),
            Err(WebhookError::MissingHeader)
        );
    }
}

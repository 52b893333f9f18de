//! Signatures of gateway webhooks: the one home of every scheme otpgate signs or checks,
//! with one timestamp rule and one constant-time comparison.
//!
//! - [`Scheme::SmsGate`] (sms-gate.app): `X-Signature = hex(HMAC-SHA256(key, raw_body ‖
//!   X-Timestamp))`, with `X-Timestamp` in Unix seconds.
//! - [`Scheme::TextBee`]: `X-Signature = hex(HMAC-SHA256(secret, raw_body))`; no timestamp, so
//!   replay protection is the receiver's de-duplication.
//! - [`Scheme::Otpgate`] (otpgate's own generic signed webhook, both directions):
//!   `X-Otpgate-Signature = hex(HMAC-SHA256(key, X-Otpgate-Timestamp ‖ "." ‖ raw_body))`.
//!
//! # Rules
//! - A timestamp is 1 to 12 ASCII digits (no sign, no space, no exponent) and must lie within
//!   `window_secs` of `now`, either side.
//! - A signature is 64 hex digits (either case) once surrounding whitespace is trimmed; it is
//!   compared with [`ct_eq`], against every accepted key.
//! - Checks run in this order, and the first that fails names the error: headers present,
//!   timestamp well-formed, timestamp fresh, signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::code::ct_eq;
use crate::wire::ErrorCode;

/// The default accepted clock difference for timestamped webhooks, in seconds.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// The length of every signature, in hex digits (HMAC-SHA256).
pub const SIGNATURE_LEN: usize = 64;

/// The most digits a timestamp may have (Unix seconds until the year 33658).
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// The longest signature header read at all (64 hex digits plus generous whitespace).
const MAX_SIGNATURE_HEADER: usize = 128;

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
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingHeader => ErrorCode::MissingSignature,
            Self::BadTimestamp => ErrorCode::BadTimestamp,
            Self::Stale => ErrorCode::StaleTimestamp,
            Self::BadSignature => ErrorCode::BadSignature,
        }
    }
}

/// A webhook signature scheme.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Scheme {
    /// sms-gate.app: HMAC over `body ‖ timestamp`, timestamped.
    SmsGate,
    /// TextBee: HMAC over the body, no timestamp.
    TextBee,
    /// otpgate's generic signed webhook: HMAC over `timestamp ‖ "." ‖ body`, timestamped.
    Otpgate,
}

impl Scheme {
    /// Whether the scheme signs a timestamp (and so requires one, inside the window).
    pub fn timestamped(self) -> bool {
        !matches!(self, Self::TextBee)
    }

    /// The hex signature of `body` (at `timestamp`, ignored by untimestamped schemes).
    pub fn sign(self, key: &str, body: &[u8], timestamp: &str) -> String {
        let key = key.as_bytes();
        match self {
            Self::SmsGate => hmac_hex(key, &[body, timestamp.as_bytes()]),
            Self::TextBee => hmac_hex(key, &[body]),
            Self::Otpgate => hmac_hex(key, &[timestamp.as_bytes(), b".", body]),
        }
    }
}

/// The headers of a signed webhook, as received (`None`: absent).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Signed<'a> {
    /// The timestamp header (Unix seconds), for timestamped schemes.
    pub timestamp: Option<&'a str>,
    /// The signature header.
    pub signature: Option<&'a str>,
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for p in parts {
        mac.update(p);
    }
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(SIGNATURE_LEN);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Checks a webhook timestamp: 1 to 12 ASCII digits, within `window_secs` of `now`.
///
/// # Errors
/// [`WebhookError::BadTimestamp`] or [`WebhookError::Stale`].
pub fn check_timestamp(timestamp: &str, now: i64, window_secs: i64) -> Result<(), WebhookError> {
    if timestamp.is_empty()
        || timestamp.len() > MAX_TIMESTAMP_DIGITS
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(WebhookError::BadTimestamp);
    }
    let at: i64 = timestamp.parse().map_err(|_| WebhookError::BadTimestamp)?;
    if now.saturating_sub(at).saturating_abs() > window_secs {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// The normalised form of a signature header: trimmed, 64 hex digits, lower case.
fn signature_shape(signature: &str) -> Option<String> {
    if signature.len() > MAX_SIGNATURE_HEADER {
        return None;
    }
    let sig = signature.trim();
    (sig.len() == SIGNATURE_LEN && sig.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| sig.to_ascii_lowercase())
}

/// Checks a webhook signed under `scheme` by any of `keys`: the exact raw body and its
/// headers, against `now` (Unix seconds) with a window of `window_secs`. With no key, a
/// well-formed request fails with [`WebhookError::BadSignature`].
///
/// # Errors
/// [`WebhookError`] saying which check failed first (see the module's rules).
pub fn verify<'k>(
    scheme: Scheme,
    keys: impl IntoIterator<Item = &'k str>,
    body: &[u8],
    headers: Signed<'_>,
    now: i64,
    window_secs: i64,
) -> Result<(), WebhookError> {
    let sig = headers.signature.ok_or(WebhookError::MissingHeader)?;
    let ts = if scheme.timestamped() {
        let ts = headers.timestamp.ok_or(WebhookError::MissingHeader)?;
        check_timestamp(ts, now, window_secs)?;
        ts
    } else {
        ""
    };
    let sig = signature_shape(sig).ok_or(WebhookError::BadSignature)?;
    // Every key is tried (no early exit), so the time taken does not say which one matched.
    let matched = keys.into_iter().fold(false, |found, key| {
        ct_eq(scheme.sign(key, body, ts).as_bytes(), sig.as_bytes()) | found
    });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The `X-Signature` value sms-gate.app sends for `body` at `timestamp` (used by the emulator).
pub fn sign_smsgate(key: &str, body: &[u8], timestamp: &str) -> String {
    Scheme::SmsGate.sign(key, body, timestamp)
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
    let headers = Signed {
        timestamp,
        signature,
    };
    verify(Scheme::SmsGate, [key], body, headers, now, window_secs)
}

/// The `X-Signature` TextBee sends for `body`.
pub fn sign_textbee(secret: &str, body: &[u8]) -> String {
    Scheme::TextBee.sign(secret, body, "")
}

/// The `X-Otpgate-Signature` of otpgate's generic webhook for `body` at `timestamp`.
pub fn sign_otpgate(key: &str, timestamp: &str, body: &[u8]) -> String {
    Scheme::Otpgate.sign(key, body, timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_textbee(
        secret: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(), WebhookError> {
        let headers = Signed {
            timestamp: None,
            signature,
        };
        verify(Scheme::TextBee, [secret], body, headers, 0, 0)
    }

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

    const NOW: i64 = 1_700_000_000;

    /// One request per row: (scheme, timestamp header, signature header, expected verdict).
    type Row<'a> = (
        Scheme,
        Option<&'a str>,
        Option<String>,
        Result<(), WebhookError>,
    );

    #[test]
    fn every_scheme_follows_one_rule_table() {
        use WebhookError::{BadSignature, BadTimestamp, MissingHeader, Stale};
        for scheme in [Scheme::SmsGate, Scheme::Otpgate] {
            let good = |ts: &str| Some(scheme.sign("k", BODY, ts));
            let at = "1700000000";
            let rows: Vec<Row<'_>> = vec![
                (scheme, Some(at), good(at), Ok(())),
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| s.to_ascii_uppercase()),
                    Ok(()),
                ),
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| format!(" {s}\t")),
                    Ok(()),
                ),
                (scheme, Some("1700000300"), good("1700000300"), Ok(())),
                (scheme, Some("1699999700"), good("1699999700"), Ok(())),
                // Stale and future, one second past the window either side.
                (scheme, Some("1699999699"), good("1699999699"), Err(Stale)),
                (scheme, Some("1700000301"), good("1700000301"), Err(Stale)),
                (scheme, Some("0"), good("0"), Err(Stale)),
                (
                    scheme,
                    Some("999999999999"),
                    good("999999999999"),
                    Err(Stale),
                ),
                // Leading signs, spaces, exponents, too many digits: not a timestamp.
                (
                    scheme,
                    Some("+1700000000"),
                    good("+1700000000"),
                    Err(BadTimestamp),
                ),
                (
                    scheme,
                    Some("-1700000000"),
                    good("-1700000000"),
                    Err(BadTimestamp),
                ),
                (scheme, Some("+5"), good("+5"), Err(BadTimestamp)),
                (
                    scheme,
                    Some(" 1700000000"),
                    good(" 1700000000"),
                    Err(BadTimestamp),
                ),
                (
                    scheme,
                    Some("1700000000 "),
                    good("1700000000 "),
                    Err(BadTimestamp),
                ),
                (scheme, Some("17e8"), good("17e8"), Err(BadTimestamp)),
                (scheme, Some("0x10"), good("0x10"), Err(BadTimestamp)),
                (
                    scheme,
                    Some("1000000000000"),
                    good("1000000000000"),
                    Err(BadTimestamp),
                ),
                (scheme, Some(""), good(""), Err(BadTimestamp)),
                (scheme, Some("١٧٠٠"), good("١٧٠٠"), Err(BadTimestamp)),
                // Missing headers.
                (scheme, None, good(at), Err(MissingHeader)),
                (scheme, Some(at), None, Err(MissingHeader)),
                // Signatures of the wrong shape or value.
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| format!("{s}0")),
                    Err(BadSignature),
                ),
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| format!("{s}{s}")),
                    Err(BadSignature),
                ),
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| format!("{s}{}", " ".repeat(200))),
                    Err(BadSignature),
                ),
                (
                    scheme,
                    Some(at),
                    good(at).map(|s| s[..63].to_owned()),
                    Err(BadSignature),
                ),
                (scheme, Some(at), Some(String::new()), Err(BadSignature)),
                (scheme, Some(at), Some("z".repeat(64)), Err(BadSignature)),
                (scheme, Some(at), good("1700000001"), Err(BadSignature)),
                (scheme, Some(at), Some("0".repeat(64)), Err(BadSignature)),
            ];
            for (scheme, ts, sig, want) in rows {
                let headers = Signed {
                    timestamp: ts,
                    signature: sig.as_deref(),
                };
                assert_eq!(
                    verify(scheme, ["k"], BODY, headers, NOW, DEFAULT_WINDOW_SECS),
                    want,
                    "{scheme:?} ts={ts:?} sig={sig:?}"
                );
            }
        }
    }

    #[test]
    fn textbee_rule_table() {
        use WebhookError::{BadSignature, MissingHeader};
        let good = sign_textbee("k", BODY);
        let rows: Vec<(Option<String>, Result<(), WebhookError>)> = vec![
            (Some(good.clone()), Ok(())),
            (Some(good.to_ascii_uppercase()), Ok(())),
            (Some(format!(" {good} ")), Ok(())),
            (None, Err(MissingHeader)),
            (Some(String::new()), Err(BadSignature)),
            (Some(format!("{good}00")), Err(BadSignature)),
            (
                Some(format!("{good}{}", " ".repeat(200))),
                Err(BadSignature),
            ),
            (Some(good[1..].to_owned()), Err(BadSignature)),
            (Some(sign_textbee("other", BODY)), Err(BadSignature)),
        ];
        for (sig, want) in rows {
            assert_eq!(verify_textbee("k", BODY, sig.as_deref()), want, "{sig:?}");
            // A timestamp header changes nothing for an untimestamped scheme.
            let headers = Signed {
                timestamp: Some("+5"),
                signature: sig.as_deref(),
            };
            assert_eq!(verify(Scheme::TextBee, ["k"], BODY, headers, NOW, 0), want);
        }
    }

    #[test]
    fn the_schemes_sign_different_messages() {
        let ts = "1700000000";
        let smsgate = Scheme::SmsGate.sign("k", BODY, ts);
        let otpgate = Scheme::Otpgate.sign("k", BODY, ts);
        let textbee = Scheme::TextBee.sign("k", BODY, ts);
        assert_ne!(smsgate, otpgate);
        assert_ne!(otpgate, textbee);
        assert_eq!(textbee, sign_textbee("k", BODY));
        assert_eq!(otpgate, sign_otpgate("k", ts, BODY));
        // otpgate's scheme is the HMAC of `ts.body`, i.e. TextBee's HMAC of that message.
        let mut msg = ts.as_bytes().to_vec();
        msg.push(b'.');
        msg.extend_from_slice(BODY);
        assert_eq!(otpgate, sign_textbee("k", &msg));
        // A signature of one scheme never passes another.
        let headers = Signed {
            timestamp: Some(ts),
            signature: Some(&smsgate),
        };
        assert_eq!(
            verify(Scheme::Otpgate, ["k"], BODY, headers, NOW, 300),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn any_of_several_keys_verifies_and_no_key_refuses() {
        let ts = "1700000000";
        let sig = sign_otpgate("second", ts, BODY);
        let headers = Signed {
            timestamp: Some(ts),
            signature: Some(&sig),
        };
        assert_eq!(
            verify(
                Scheme::Otpgate,
                ["first", "second", "third"],
                BODY,
                headers,
                NOW,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(Scheme::Otpgate, ["first", "third"], BODY, headers, NOW, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(Scheme::Otpgate, [], BODY, headers, NOW, 300),
            Err(WebhookError::BadSignature)
        );
        // Header and timestamp faults are named even with no key configured.
        let stale = Signed {
            timestamp: Some("1"),
            signature: Some(&sig),
        };
        assert_eq!(
            verify(Scheme::Otpgate, [], BODY, stale, NOW, 300),
            Err(WebhookError::Stale)
        );
        let fresh = Signed {
            timestamp: Some(ts),
            signature: Some(&sig),
        };
        assert_eq!(
            verify(Scheme::Otpgate, ["second"], BODY, fresh, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn timestamps_near_the_limits_do_not_overflow() {
        assert_eq!(check_timestamp("999999999999", i64::MIN, i64::MAX), Ok(()));
        assert_eq!(
            check_timestamp("0", i64::MAX, 300),
            Err(WebhookError::Stale)
        );
        assert_eq!(check_timestamp("1700000000", NOW, 0), Ok(()));
    }
}

//! The stable error codes of the issuer API and of the client module: one list, shared by the
//! server (which answers with them), the wasm client (which throws them) and, through the npm
//! package's types and `errorCodes()`, the page.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)*) => {
        /// A stable `snake_case` error code, the `error.code` of every error answer.
        ///
        /// Codes are never renamed; new ones may be added, so a client meeting a code it does
        /// not know keeps the text ([`ErrorCode::parse`] answers `None`).
        #[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// Every code as the TypeScript union `ErrorCode` (with its doc comment), written
            /// at compile time from this list: the npm package's typings carry it as it is,
            /// so the union can never lag behind the codes.
            pub const TYPESCRIPT: &'static str = concat!(
                "/**\n",
                " * The stable codes of the issuer API and of this package (`errorCodes()` lists\n",
                " * them at run time). A newer issuer may answer a code not listed here: compare,\n",
                " * never switch exhaustively.\n",
                " */\n",
                "export type ErrorCode =",
                $("\n  | \"", $text, "\"",)*
                ";\n"
            );

            /// The code as it goes on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The code named `text`, if it is one of this version's.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // Bad input (400).
    /// The body is not JSON.
    InvalidJson = "invalid_json",
    /// The body is JSON but not the expected shape, or a parameter is malformed.
    InvalidRequest = "invalid_request",
    /// A request refused without a more precise reason (a layer's 400).
    BadRequest = "bad_request",
    /// The destination is not a phone number in international form.
    InvalidPhone = "invalid_phone",
    /// The number starts with no assigned country calling code.
    UnknownCountryCode = "unknown_country_code",
    /// No app of that name is configured.
    UnknownApp = "unknown_app",
    /// The locale is not a plausible BCP 47 tag.
    InvalidLocale = "invalid_locale",
    /// The typed code cannot be a code (far too long).
    InvalidCode = "invalid_code",
    /// A proof-of-work solution that does not parse.
    PowMalformed = "pow_malformed",
    /// A proof-of-work challenge this issuer did not make.
    PowForged = "pow_forged",
    /// A proof-of-work challenge past its lifetime.
    PowExpired = "pow_expired",
    /// A proof-of-work nonce that does not meet the difficulty.
    PowInsufficient = "pow_insufficient",
    /// A gateway webhook whose body or event cannot be used.
    InvalidWebhook = "invalid_webhook",
    /// The `Content-Type` is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// The body is larger than the configured limit (413).
    BodyTooLarge = "body_too_large",

    // Who is asking (401, 403).
    /// The request needs credentials.
    Unauthorized = "unauthorized",
    /// The bearer API key is not one of the configured keys.
    InvalidApiKey = "invalid_api_key",
    /// A refusal without a more precise reason (a layer's 403).
    Forbidden = "forbidden",
    /// The destination is outside the allowed regions, types or ranges.
    DestinationNotAllowed = "destination_not_allowed",
    /// The proof of work was already spent.
    PowReplayed = "pow_replayed",
    /// A webhook without its signature headers.
    MissingSignature = "missing_signature",
    /// A webhook whose timestamp does not parse.
    BadTimestamp = "bad_timestamp",
    /// A webhook whose timestamp is outside the accepted window.
    StaleTimestamp = "stale_timestamp",
    /// A webhook whose signature does not match.
    BadSignature = "bad_signature",
    /// A webhook for a gateway that has no signing key configured.
    NoSigningKey = "no_signing_key",

    // The verification's state (404, 405, 408, 409, 410, 422, 428, 429).
    /// No such verification or resource.
    NotFound = "not_found",
    /// The method is not allowed on this path.
    MethodNotAllowed = "method_not_allowed",
    /// The request took longer than the server's timeout.
    Timeout = "timeout",
    /// The code was already accepted once.
    AlreadyUsed = "already_used",
    /// Another change of the same verification is in progress.
    Conflict = "conflict",
    /// The code's lifetime is over.
    Expired = "expired",
    /// The verification was cancelled.
    Cancelled = "cancelled",
    /// The code is wrong (`attempts_left` says how many tries remain).
    WrongCode = "wrong_code",
    /// A proof of work is needed first (`challenge`).
    PowRequired = "pow_required",
    /// A budget is spent (`Retry-After`).
    RateLimited = "rate_limited",
    /// The verification is over (expired or cancelled) and the answer said no more.
    Gone = "gone",
    /// Every attempt at this code was used.
    NoAttemptsLeft = "no_attempts_left",
    /// A resend inside the cooldown (`Retry-After`).
    ResendCooldown = "resend_cooldown",
    /// The verification had its maximum number of sends.
    TooManySends = "too_many_sends",
    /// Too many codes asked for one number from one address (`Retry-After`).
    TooManyStarts = "too_many_starts",
    /// Too many wrong codes entered for this number across its verifications: new ones need
    /// a trusted caller, or the wait (`Retry-After`).
    NumberLocked = "number_locked",
    /// An `Idempotency-Key` sent again with another request (422).
    IdempotencyKeyReused = "idempotency_key_reused",

    // The service (5xx): never internals.
    /// The store cannot serve the request (`Retry-After`).
    StoreUnavailable = "store_unavailable",
    /// Every phone is out of budget for now (`Retry-After`).
    NoGatewayCapacity = "no_gateway_capacity",
    /// No phone can send.
    GatewayUnavailable = "gateway_unavailable",
    /// The issuer is not ready (readiness probe).
    NotReady = "not_ready",
    /// The service is temporarily unavailable.
    Unavailable = "unavailable",
    /// Something failed inside the issuer; the cause is logged with the request id.
    InternalError = "internal_error",

    // The client module's own (never sent by the issuer).
    /// The request did not reach the issuer, or its answer did not come back.
    NetworkError = "network_error",
    /// The issuer's answer is not what the API describes.
    BadResponse = "bad_response",
    /// The issuer answered a 5xx without a code the client knows.
    ServerError = "server_error",
    /// This runtime has no `fetch`.
    FetchUnavailable = "fetch_unavailable",
    /// An answer with a status and no more precise code.
    Error = "error",
    /// The caller aborted the request or the wait (`AbortSignal`).
    Aborted = "aborted",
    /// A JS argument of the wrong type or shape.
    InvalidArgument = "invalid_argument",
    /// No proof-of-work nonce was found within the allowed tries.
    PowUnsolved = "pow_unsolved",
    /// This browser has no WebOTP (`OTPCredential`).
    WebotpUnsupported = "webotp_unsupported",
    /// WebOTP gave no code.
    WebotpFailed = "webotp_failed",
    /// The JWKS could not be fetched.
    JwksUnavailable = "jwks_unavailable",
    /// Something that cannot happen in a sound runtime (e.g. `JSON.stringify` failed).
    Internal = "internal",

    // Receipts, verified offline by the client module and customer backends.
    /// Not a compact JWT of the receipt's shape.
    ReceiptMalformed = "receipt_malformed",
    /// A receipt signed with anything but EdDSA.
    ReceiptUnsupportedAlg = "receipt_unsupported_alg",
    /// A receipt whose `kid` is not in the JWKS.
    ReceiptUnknownKey = "receipt_unknown_key",
    /// A receipt whose signature does not verify.
    ReceiptBadSignature = "receipt_bad_signature",
    /// A receipt past its `exp`.
    ReceiptExpired = "receipt_expired",
    /// A receipt issued in the future.
    ReceiptNotYetValid = "receipt_not_yet_valid",
    /// A receipt for another audience.
    ReceiptWrongAudience = "receipt_wrong_audience",
    /// A receipt from another issuer.
    ReceiptWrongIssuer = "receipt_wrong_issuer",
    /// A receipt that does not say the number was verified.
    ReceiptNotVerified = "receipt_not_verified",
}

impl ErrorCode {
    /// Whether the code may stand in a 5xx answer as it is: these say what is unavailable
    /// without saying anything of the issuer's internals.
    pub fn is_safe_for_5xx(self) -> bool {
        matches!(
            self,
            Self::StoreUnavailable
                | Self::NoGatewayCapacity
                | Self::GatewayUnavailable
                | Self::NotReady
        )
    }

    /// The code and a sentence for an answer that has only its HTTP status (fallbacks and
    /// the rejections of layers), and for a client given nothing more.
    pub fn for_status(status: u16) -> (Self, &'static str) {
        match status {
            400 => (Self::BadRequest, "bad request"),
            401 => (Self::Unauthorized, "unauthorized"),
            403 => (Self::Forbidden, "forbidden"),
            404 => (Self::NotFound, "not found"),
            405 => (Self::MethodNotAllowed, "method not allowed"),
            408 => (Self::Timeout, "the request took too long"),
            413 => (Self::BodyTooLarge, "the request body is too large"),
            415 => (
                Self::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ),
            422 => (Self::InvalidRequest, "the request could not be processed"),
            429 => (Self::RateLimited, "too many requests"),
            503 => (Self::Unavailable, "the service is temporarily unavailable"),
            500..=599 => (Self::InternalError, "internal error"),
            _ => (Self::Error, "error"),
        }
    }
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of this version's codes.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(UnknownErrorCode)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <&str>::deserialize(d)?;
        Self::parse(text).ok_or_else(|| serde::de::Error::custom("unknown error code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_snake_case_and_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate {text}");
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !text.starts_with('_')
                    && !text.ends_with('_'),
                "{text} is not snake_case"
            );
            assert_eq!(ErrorCode::parse(text), Some(*code));
            assert_eq!(text.parse::<ErrorCode>(), Ok(*code));
            let json = serde_json::to_string(code).expect("serializes");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).ok(), Some(*code));
        }
    }

    #[test]
    fn typescript_union_lists_every_code_in_order() {
        let union = ErrorCode::TYPESCRIPT
            .split_once("export type ErrorCode =")
            .expect("declares the union")
            .1;
        let listed: Vec<&str> = union
            .lines()
            .filter_map(|l| {
                l.trim()
                    .trim_end_matches(';')
                    .strip_prefix("| \"")?
                    .strip_suffix('"')
            })
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        assert!(union.trim_end().ends_with(';'));
    }

    #[test]
    fn unknown_text_is_no_code() {
        assert_eq!(ErrorCode::parse("Wrong_Code"), None);
        assert_eq!(ErrorCode::parse(""), None);
        assert!(serde_json::from_str::<ErrorCode>("\"made_up\"").is_err());
    }

    #[test]
    fn status_fallbacks() {
        assert_eq!(ErrorCode::for_status(404).0, ErrorCode::NotFound);
        assert_eq!(ErrorCode::for_status(502).0, ErrorCode::InternalError);
        assert_eq!(ErrorCode::for_status(503).0, ErrorCode::Unavailable);
        assert_eq!(ErrorCode::for_status(418).0, ErrorCode::Error);
        assert!(ErrorCode::StoreUnavailable.is_safe_for_5xx());
        assert!(!ErrorCode::InternalError.is_safe_for_5xx());
    }
}

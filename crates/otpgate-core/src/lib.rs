//! The pure rules of otpgate, shared by the issuer (`otpgate-server`) and the WebAssembly
//! client (`otpgate`).
//!
//! Nothing here does I/O, reads a clock or draws randomness of its own: the time (`now`, in
//! Unix seconds or milliseconds as each function says) and the random source
//! ([`rng::SecureRandom`]) are passed in, so every rule is deterministic under test and the
//! crate builds for `wasm32-unknown-unknown`.
//!
//! # Layout
//! - [`code`]: generation of one-time codes by rejection sampling, their keyed digest and the
//!   constant-time comparison.
//! - [`sms`]: the SMS formats: origin-bound (WebOTP) parsing, SMS Retriever app hashes,
//!   GSM-7 / UCS-2 segment counting and message composition.
//! - [`origin`]: hosts and browser origins, checked once when they are made.
//! - [`phone`]: E.164 validation and country calling codes.
//! - [`webhook`]: signatures of gateway webhooks (sms-gate.app, TextBee, otpgate's own).
//! - [`standard_webhooks`]: Standard Webhooks signatures (Supabase Auth's hooks).
//! - [`pow`]: the proof-of-work challenge that gates sending.
//! - [`receipt`]: the signed receipt (EdDSA JWT) and JWKS.
//! - [`time`]: RFC 3339 timestamps, formatted and parsed (the one routine of the project).
//! - [`wire`]: the JSON shapes of the issuer API and of the sms-gate.app API.
//!
//! # Security
//! Codes are compared only as HMAC digests, with [`subtle`]; secrets are wrapped in types whose
//! `Debug` prints `[redacted]`.
//!
//! # Example
//! ```
//! use otpgate_core::sms::parse;
//! let parsed = parse("Your code is 123456\n@example.com #123456");
//! assert_eq!(parsed.webotp.unwrap().code, "123456");
//! ```
#![forbid(unsafe_code)]

/// The text form of a checked newtype, for `#[serde(try_from = "String", into = "String")]`:
/// `TryFrom<String>` through the type's `parse` (so reading one checks it) and
/// `From<T> for String` through the named method.
#[macro_export]
macro_rules! text_form {
    ($ty:ty, $err:ty, $text:ident) => {
        impl TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> Self {
                v.$text().to_owned()
            }
        }
    };
}

pub mod code;
pub mod origin;
pub mod phone;
pub mod pow;
pub mod receipt;
pub mod rng;
pub mod sms;
pub mod standard_webhooks;
pub mod time;
pub mod webhook;
pub mod wire;

pub use rng::SecureRandom;

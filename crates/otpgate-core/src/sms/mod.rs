//! SMS formats: origin-bound one-time codes (WebOTP), SMS Retriever app hashes, GSM-7 and
//! UCS-2 segments, and the composition of OTP messages.

pub mod app_hash;
pub mod compose;
pub mod parse;
pub mod segments;

pub use app_hash::{AppHashError, app_hash};
pub use compose::{ComposeError, Composed, Template};
pub use parse::{OriginBound, Parsed, parse};
pub use segments::{Encoding, Segments, segments};

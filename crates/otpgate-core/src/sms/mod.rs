//! SMS formats: origin-bound one-time codes (WebOTP), SMS Retriever app hashes, GSM-7 and
//! UCS-2 segments, and the composition of OTP messages.
//!
//! # Layout
//! - [`parse`](mod@parse): what a phone or browser extracts from a received message (the
//!   WICG origin-bound code, the SMS User Consent candidate, the app hash).
//! - [`segments`](mod@segments): GSM 03.38 / UCS-2 encoding and part counting.
//! - [`app_hash`](mod@app_hash): the 11-character SMS Retriever hash of an Android app.
//! - [`compose`](mod@compose): the message the issuer sends, checked by parsing it back.

pub mod app_hash;
pub mod compose;
pub mod parse;
pub mod segments;

pub use app_hash::{AppHashError, app_hash, verify_app_hash};
pub use compose::{ComposeError, ComposeRequest, Composed, Layout, Template, TemplateSet, compose};
pub use parse::{OriginBound, OriginBoundRef, Parsed, ParsedRef, parse, parse_ref};
pub use segments::{Encoding, Segments, segments};

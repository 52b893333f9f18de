//! Parsing of received OTP SMS. PLACEHOLDER: being implemented.

use serde::Serialize;

/// An origin-bound one-time code (the `@host #code [@iframe-host]` last line).
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct OriginBound {
    /// The top-level host.
    pub host: String,
    /// The code.
    pub code: String,
    /// The embedded (iframe) host, if any.
    pub iframe_host: Option<String>,
}

/// What `otpgate sms parse` prints.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Parsed {
    /// The code: the origin-bound one, else the SMS User Consent candidate.
    pub code: Option<String>,
    /// The origin-bound line.
    pub webotp: Option<OriginBound>,
    /// A trailing 11-character SMS Retriever app hash.
    pub app_hash: Option<String>,
}

/// Parses a message.
pub fn parse(_text: &str) -> Parsed {
    Parsed::default()
}

//! Composition of OTP SMS. PLACEHOLDER: being implemented.

use serde::{Deserialize, Serialize};

use super::segments::Segments;

/// A message template with `{app}`, `{code}`, `{origin}`, `{app_hash}` placeholders.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Template(pub String);

/// A composed message.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct Composed {
    /// The SMS text.
    pub text: String,
    /// Its segments.
    pub segments: Segments,
}

/// Why a message could not be composed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The message does not fit one SMS.
    #[error("message does not fit one SMS")]
    TooLong,
}

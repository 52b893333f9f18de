//! SMS Retriever app hash. PLACEHOLDER: being implemented.

/// Why no app hash could be computed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AppHashError {
    /// The certificate is neither PEM nor DER.
    #[error("not a PEM or DER X.509 certificate")]
    BadCertificate,
}

/// The 11-character SMS Retriever hash of `package` signed with `certificate` (PEM or DER).
///
/// # Errors
/// [`AppHashError`].
pub fn app_hash(_package: &str, _certificate: &[u8]) -> Result<String, AppHashError> {
    Err(AppHashError::BadCertificate)
}

//! TLS to a phone's own HTTPS server, which usually has a self-signed certificate on the LAN:
//! trusted through a private CA (`ca_file`, the only roots then) or a pinned public key
//! (`cert_pin = "sha256/<base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo>"`,
//! the form HPKP and `openssl ... | openssl dgst -sha256 -binary | base64` give). With a pin
//! the certificate chain and name are not judged (a phone has neither a public CA nor a DNS
//! name); the key must match and the handshake must prove it is held.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// A parsed `cert_pin`: the SHA-256 of a SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin(pub [u8; 32]);

impl Pin {
    /// Parses `sha256/<base64>` (standard alphabet, padded, 32 bytes).
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s.trim().strip_prefix("sha256/").ok_or_else(|| {
            "must be sha256/<base64 of the SHA-256 of the public key> (openssl x509 -pubkey \
             -noout -in cert.pem | openssl pkey -pubin -outform der | openssl dgst -sha256 \
             -binary | base64)"
                .to_owned()
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the part after sha256/ is not base64".to_owned())?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a SHA-256 pin is 32 bytes (44 base64 characters)".to_owned())?;
        Ok(Self(arr))
    }

    /// The pin of a DER certificate's public key.
    ///
    /// # Errors
    /// The certificate cannot be parsed.
    pub fn of_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        Ok(Self(
            Sha256::digest(cert.tbs_certificate.subject_pki.raw).into(),
        ))
    }
}

/// The certificates of a PEM file (a CA bundle).
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// A rustls client configuration that accepts exactly the server key `pin`.
pub fn pinned_config(pin: Pin) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    });
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Pin::of_certificate(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if otpgate_core::code::ct_eq(&seen.0, &self.pin.0) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_only_in_their_one_form() {
        let ok = format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        assert_eq!(Pin::parse(&ok), Ok(Pin([7; 32])));
        for bad in [
            "",
            "sha1/AAAA",
            "sha256/not base64!",
            "sha256/AAAA",
            &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        ] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_certificate_pins_to_its_public_key() {
        let a = rcgen::generate_simple_self_signed(vec!["phone.local".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["phone.local".into()]).unwrap();
        let pa = Pin::of_certificate(a.cert.der()).unwrap();
        let expect: [u8; 32] = Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(
            &a.signing_key,
        ))
        .into();
        assert_eq!(pa.0, expect, "the pin is the SHA-256 of the SPKI");
        assert_ne!(pa, Pin::of_certificate(b.cert.der()).unwrap());
        assert!(Pin::of_certificate(b"not a certificate").is_err());
    }
}

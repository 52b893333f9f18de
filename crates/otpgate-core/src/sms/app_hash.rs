//! The SMS Retriever app hash.
//!
//! Google's `AppSignatureHelper`: SHA-256 over `package + " " + lowercase_hex(DER certificate)`
//! (UTF-8, no trailing newline), keep the first 9 bytes, encode them with the **standard**
//! base64 alphabet (`+`, `/`) and keep the first 11 characters (66 bits). The certificate is
//! the app-signing certificate Play uses (the Play Console's `deployment_cert.der`), not the
//! upload key: debug, upload and Play-signed builds each have their own hash.
//!
//! The certificate may be given as DER or as PEM (`-----BEGIN CERTIFICATE-----`, text before
//! it is skipped, CRLF line ends are fine). Exactly one certificate is accepted: SMS Retriever
//! itself refuses apps signed by more than one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Why no app hash could be computed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AppHashError {
    /// The certificate is neither PEM nor DER.
    #[error("not a PEM or DER X.509 certificate")]
    BadCertificate,
    /// The PEM file holds more than one certificate.
    #[error("the PEM file holds more than one certificate; give the app-signing certificate alone")]
    MultipleCertificates,
    /// The package name is not an Android package name.
    #[error(
        "bad package name (expected at least two dot-separated identifiers such as com.example.app)"
    )]
    BadPackage,
}

impl AppHashError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadCertificate => "bad_certificate",
            Self::MultipleCertificates => "multiple_certificates",
            Self::BadPackage => "bad_package",
        }
    }
}

const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// The 11-character SMS Retriever hash of `package` signed with `certificate` (PEM or DER).
///
/// # Errors
/// [`AppHashError`]: a bad package name or certificate.
pub fn app_hash(package: &str, certificate: &[u8]) -> Result<String, AppHashError> {
    if !is_valid_package(package) {
        return Err(AppHashError::BadPackage);
    }
    let pem;
    let der: &[u8] = if let Some(start) = find(certificate, PEM_BEGIN) {
        let block = &certificate[start..];
        let end = find(block, PEM_END).ok_or(AppHashError::BadCertificate)? + PEM_END.len();
        if find(&block[end..], PEM_BEGIN).is_some() {
            return Err(AppHashError::MultipleCertificates);
        }
        pem = pem_body(&block[PEM_BEGIN.len()..end - PEM_END.len()])?;
        &pem
    } else {
        certificate
    };
    if !is_der_certificate(der) {
        return Err(AppHashError::BadCertificate);
    }
    Ok(hash_der(package, der))
}

/// The hash over an already checked package name and DER certificate.
fn hash_der(package: &str, der: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    h.update(package.as_bytes());
    h.update(b" ");
    let mut buf = [0u8; 512];
    for chunk in der.chunks(buf.len() / 2) {
        for (i, &b) in chunk.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        h.update(&buf[..chunk.len() * 2]);
    }
    let digest = h.finalize();
    let mut out = STANDARD.encode(&digest[..9]);
    out.truncate(11);
    out
}

/// The bytes of a PEM body (RFC 7468 §3, lax: the text between the encapsulation
/// boundaries): base64 lines with LF or CRLF ends, whitespace ignored, padding required. The
/// begin boundary must end its line; headers (`Proc-Type: ...`) are refused, as anything
/// outside the base64 alphabet is. Decoded with the `base64` crate the module already links.
fn pem_body(body: &[u8]) -> Result<Vec<u8>, AppHashError> {
    if !matches!(body.first(), Some(b'\r' | b'\n')) {
        return Err(AppHashError::BadCertificate);
    }
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(text)
        .map_err(|_| AppHashError::BadCertificate)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `der` is one ASN.1 SEQUENCE (definite length) covering the input exactly and
/// starting with another SEQUENCE (the `tbsCertificate`).
fn is_der_certificate(der: &[u8]) -> bool {
    let Some((header, len)) = der_header(der) else {
        return false;
    };
    if der.first() != Some(&0x30) || header.checked_add(len) != Some(der.len()) {
        return false;
    }
    der.get(header) == Some(&0x30)
}

/// The header length and content length of the DER element at the start of `der`.
fn der_header(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    // 0x80 is the indefinite form (not DER); more than 4 length bytes is not a certificate.
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = der.get(2..2 + n)?;
    if bytes[0] == 0 {
        return None;
    }
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if len < 0x80 {
        return None;
    }
    Some((2 + n, len))
}

/// Whether `package` is an Android package name: at least two dot-separated segments, each an
/// ASCII letter followed by letters, digits or underscores.
pub fn is_valid_package(package: &str) -> bool {
    package.len() <= 255
        && package.split('.').count() >= 2
        && package.split('.').all(|seg| {
            let mut b = seg.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        })
}

/// Whether `message` carries the app hash `expected` as a whitespace-separated token, which is
/// what current Play services require ("include the hash"). Legacy versions also wanted it as
/// the last token; [`super::parse`] reports that one as `app_hash`.
pub fn verify_app_hash(message: &str, expected: &str) -> bool {
    is_valid_app_hash(expected)
        && message
            .split(|c: char| c.is_ascii_whitespace())
            .any(|t| t == expected)
}

/// Whether `hash` is 11 characters of the standard base64 alphabet.
pub fn is_valid_app_hash(hash: &str) -> bool {
    hash.len() == 11
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = include_bytes!("testdata/rn-template-debug.der");
    const PEM: &[u8] = include_bytes!("testdata/rn-template-debug.pem");

    #[test]
    fn react_native_debug_vector() {
        assert_eq!(
            app_hash("com.awesomeproject", DER).as_deref(),
            Ok("kFUwfusCq/+")
        );
        assert_eq!(
            app_hash("com.awesomeproject", PEM).as_deref(),
            Ok("kFUwfusCq/+")
        );
    }

    #[test]
    fn pem_variants() {
        let pem = std::str::from_utf8(PEM).expect("ascii");
        let crlf = pem.replace('\n', "\r\n");
        assert_eq!(
            app_hash("com.awesomeproject", crlf.as_bytes()).as_deref(),
            Ok("kFUwfusCq/+")
        );
        let preamble = format!("Bag Attributes\n    friendlyName: androiddebugkey\n{pem}");
        assert_eq!(
            app_hash("com.awesomeproject", preamble.as_bytes()).as_deref(),
            Ok("kFUwfusCq/+")
        );
        let two = format!("{pem}{pem}");
        assert_eq!(
            app_hash("com.awesomeproject", two.as_bytes()),
            Err(AppHashError::MultipleCertificates)
        );
        let truncated = &pem[..pem.len() / 2];
        assert_eq!(
            app_hash("com.awesomeproject", truncated.as_bytes()),
            Err(AppHashError::BadCertificate)
        );
        let body = pem
            .split_once("-----BEGIN CERTIFICATE-----")
            .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
            .expect("one block")
            .0;
        let rewrapped: String = body
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<Vec<_>>()
            .chunks(76)
            .map(|l| l.iter().collect::<String>() + "\n")
            .collect();
        let rewrapped =
            format!("-----BEGIN CERTIFICATE-----\n{rewrapped}-----END CERTIFICATE-----\n");
        assert_eq!(
            app_hash("com.awesomeproject", rewrapped.as_bytes()).as_deref(),
            Ok("kFUwfusCq/+"),
            "any line length"
        );
        for bad in [
            pem.replace("-----\n", "-----x\n"),
            pem.replace(
                "-----BEGIN CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\n",
            ),
            pem.replacen("MII", "M*I", 1),
            pem.replace('=', ""),
        ] {
            assert_eq!(
                app_hash("com.awesomeproject", bad.as_bytes()),
                Err(AppHashError::BadCertificate),
                "{bad}"
            );
        }
        let key = pem.replace("CERTIFICATE", "PRIVATE KEY");
        assert_eq!(
            app_hash("com.awesomeproject", key.as_bytes()),
            Err(AppHashError::BadCertificate)
        );
    }

    #[test]
    fn different_inputs_different_hashes() {
        let a = app_hash("com.awesomeproject", DER).expect("hash");
        let b = app_hash("com.awesomeproject2", DER).expect("hash");
        assert_ne!(a, b);
        assert_eq!(a.len(), 11);
        assert!(is_valid_app_hash(&b));
    }

    #[test]
    fn bad_der() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x00",
            b"\x31\x03\x30\x01\x00",
            &DER[..DER.len() - 1],
            &[DER, b"\x00"].concat(),
            b"\x30\x80\x30\x00\x00\x00",
            b"\x30\x81\x05\x30\x03\x02\x01\x00",
            b"hello world",
        ] {
            assert_eq!(
                app_hash("com.example", bad),
                Err(AppHashError::BadCertificate),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn packages() {
        for ok in [
            "com.example",
            "com.awesomeproject",
            "a.b",
            "org.x_y.Z9",
            "com.example.my_app",
        ] {
            assert!(is_valid_package(ok), "{ok}");
        }
        for bad in [
            "",
            "com",
            "com.",
            ".com",
            "com..example",
            "1com.example",
            "com.1example",
            "com.exa-mple",
            "com.example ",
            " com.example",
            "com.exämple",
            "com._x",
            "com.example\n",
        ] {
            assert!(!is_valid_package(bad), "{bad:?}");
            assert_eq!(app_hash(bad, DER), Err(AppHashError::BadPackage));
        }
    }

    #[test]
    fn verify() {
        assert!(verify_app_hash(
            "<#> Your code is 1234 kFUwfusCq/+",
            "kFUwfusCq/+"
        ));
        assert!(verify_app_hash(
            "Your code is 1234\nkFUwfusCq/+\n@a.com #1234",
            "kFUwfusCq/+"
        ));
        assert!(!verify_app_hash(
            "Your code is 1234 xkFUwfusCq/+",
            "kFUwfusCq/+"
        ));
        assert!(!verify_app_hash("Your code is 1234", "kFUwfusCq/+"));
        assert!(!verify_app_hash("code 1234 ", ""));
        assert!(!verify_app_hash("a b", "b"));
    }
}

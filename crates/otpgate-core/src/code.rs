//! One-time codes: unbiased generation, keyed digest bound to the verification id, and
//! constant-time comparison.
//!
//! A code never rests in clear: the issuer keeps `HMAC-SHA-256(key, id ‖ 0x00 ‖ code)` and the
//! id of the key, so a stolen store reveals nothing and the key can rotate.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::rng::{RngUnavailable, SecureRandom};

/// Digits only.
pub const DIGITS: &str = "0123456789";
/// Upper-case letters and digits without the look-alikes `0 O 1 I L`.
pub const ALPHANUMERIC: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Why a code specification or a typed code was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The length is outside 4–10.
    #[error("code length must be between 4 and 10, got {0}")]
    BadLength(usize),
    /// The random source failed.
    #[error(transparent)]
    Rng(#[from] RngUnavailable),
}

impl CodeError {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadLength(_) => "bad_code_length",
            Self::Rng(_) => "rng_unavailable",
        }
    }
}

/// The alphabet codes are drawn from.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alphabet {
    /// `0-9`.
    #[default]
    Digits,
    /// [`ALPHANUMERIC`]: upper-case letters and digits without look-alike characters.
    Alphanumeric,
}

impl Alphabet {
    /// The characters of the alphabet.
    pub fn chars(self) -> &'static [u8] {
        match self {
            Self::Digits => DIGITS.as_bytes(),
            Self::Alphanumeric => ALPHANUMERIC.as_bytes(),
        }
    }
}

/// The shape of the codes an app uses: 4–10 characters of an [`Alphabet`]. Made only
/// through [`CodeSpec::new`] (deserializing calls it too), so a spec in hand is valid.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CodeSpecFields", into = "CodeSpecFields")]
pub struct CodeSpec {
    length: usize,
    alphabet: Alphabet,
}

/// The serialized form of a [`CodeSpec`] (`[apps.code]`), checked by [`CodeSpec::new`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeSpecFields {
    /// Number of characters, 4–10.
    length: usize,
    /// Alphabet.
    #[serde(default)]
    alphabet: Alphabet,
}

impl TryFrom<CodeSpecFields> for CodeSpec {
    type Error = CodeError;
    fn try_from(f: CodeSpecFields) -> Result<Self, Self::Error> {
        Self::new(f.length, f.alphabet)
    }
}

impl From<CodeSpec> for CodeSpecFields {
    fn from(s: CodeSpec) -> Self {
        Self {
            length: s.length,
            alphabet: s.alphabet,
        }
    }
}

impl Default for CodeSpec {
    fn default() -> Self {
        Self {
            length: 6,
            alphabet: Alphabet::Digits,
        }
    }
}

impl CodeSpec {
    /// A code shape of `length` characters of `alphabet`.
    ///
    /// # Errors
    /// [`CodeError::BadLength`] outside 4–10 characters.
    pub fn new(length: usize, alphabet: Alphabet) -> Result<Self, CodeError> {
        if (4..=10).contains(&length) {
            Ok(Self { length, alphabet })
        } else {
            Err(CodeError::BadLength(length))
        }
    }

    /// Number of characters, 4–10.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The alphabet.
    pub fn alphabet(&self) -> Alphabet {
        self.alphabet
    }

    /// Bits of entropy of one code.
    pub fn entropy_bits(&self) -> f64 {
        self.length as f64 * (self.alphabet.chars().len() as f64).log2()
    }

    /// Draws a code: each character by rejection sampling over random bytes, so every
    /// character of the alphabet is exactly equally likely (no `% n` bias).
    ///
    /// # Errors
    /// [`CodeError::BadLength`] for a bad spec, [`CodeError::Rng`] if the source fails.
    pub fn generate(&self, rng: &mut dyn SecureRandom) -> Result<Code, CodeError> {
        let chars = self.alphabet.chars();
        let n = chars.len() as u32;
        // The largest multiple of n not above 256: bytes at or above it are rejected.
        let limit = 256 - (256 % n);
        let mut out = String::with_capacity(self.length);
        let mut buf = [0u8; 32];
        while out.len() < self.length {
            rng.fill(&mut buf)?;
            for &b in &buf {
                if u32::from(b) < limit && out.len() < self.length {
                    out.push(char::from(chars[(u32::from(b) % n) as usize]));
                }
            }
        }
        buf.fill(0);
        Ok(Code(out))
    }

    /// Normalises what a person typed: strips spaces and dashes, upper-cases letters, and
    /// returns `None` when the result cannot be a code of this spec (so a malformed guess is
    /// refused without being compared; it still costs an attempt at the issuer).
    pub fn normalize(&self, typed: &str) -> Option<Code> {
        let cleaned: String = typed
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let chars = self.alphabet.chars();
        (cleaned.len() == self.length && cleaned.bytes().all(|b| chars.contains(&b)))
            .then_some(Code(cleaned))
    }
}

/// A one-time code in clear. `Debug` never prints it.
#[derive(Clone, Eq, PartialEq)]
pub struct Code(String);

impl Code {
    /// Wraps a known code (test numbers, tests).
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// The code, to put in an SMS. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code([redacted])")
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is freed.
        let bytes = core::mem::take(&mut self.0).into_bytes();
        let mut bytes = bytes;
        bytes.iter_mut().for_each(|b| *b = 0);
        core::hint::black_box(&bytes);
    }
}

/// A server key that codes are digested under, with its id so keys can rotate.
#[derive(Clone)]
pub struct CodeKey {
    id: String,
    secret: Vec<u8>,
}

impl CodeKey {
    /// A key with an id; `secret` should be at least 32 random bytes.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
        }
    }

    /// The key id stored next to each digest.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `HMAC-SHA-256(secret, verification_id ‖ 0x00 ‖ code)`: the digest kept at rest. The
    /// 0x00 separator keeps `("ab", "1")` and `("a", "b1")` apart.
    pub fn digest(&self, verification_id: &str, code: &Code) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(verification_id.as_bytes());
        mac.update(&[0]);
        mac.update(code.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A 32-byte key for another purpose, derived from this one:
    /// `HMAC-SHA-256(secret, 0x01 ‖ "otpgate derive" ‖ 0x00 ‖ purpose)`. The leading 0x01
    /// keeps it apart from every code digest: those messages start with a verification id,
    /// printable text (`v_…`). It rotates with the code key and is retired with it.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"\x01otpgate derive\x00");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `code` is the one whose digest was stored, in constant time.
    pub fn matches(&self, verification_id: &str, code: &Code, stored: &[u8]) -> bool {
        ct_eq(&self.digest(verification_id, code), stored)
    }
}

impl fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl Drop for CodeKey {
    fn drop(&mut self) {
        self.secret.iter_mut().for_each(|b| *b = 0);
        core::hint::black_box(&self.secret);
    }
}

/// Constant-time equality of two byte strings (the lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (xorshift) for tests.
    pub(crate) struct TestRng(pub u64);
    impl SecureRandom for TestRng {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
            for b in dest {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *b = self.0 as u8;
            }
            Ok(())
        }
    }

    struct Broken;
    impl SecureRandom for Broken {
        fn fill(&mut self, _: &mut [u8]) -> Result<(), RngUnavailable> {
            Err(RngUnavailable)
        }
    }

    /// Bytes 0..=255 in turn: shows which bytes are rejected.
    struct Counting(u8);
    impl SecureRandom for Counting {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
            Ok(())
        }
    }

    #[test]
    fn lengths_outside_4_to_10_are_refused() {
        let mut rng = TestRng(7);
        for length in [0, 3, 11, 64] {
            assert_eq!(
                CodeSpec::new(length, Alphabet::Digits),
                Err(CodeError::BadLength(length))
            );
            let json = format!("{{\"length\": {length}}}");
            assert!(serde_json::from_str::<CodeSpec>(&json).is_err(), "{json}");
        }
        let parsed: CodeSpec =
            serde_json::from_str(r#"{"length": 8, "alphabet": "alphanumeric"}"#).expect("valid");
        assert_eq!(
            parsed,
            CodeSpec::new(8, Alphabet::Alphanumeric).expect("valid")
        );
        for length in 4..=10 {
            let spec = CodeSpec::new(length, Alphabet::Alphanumeric).expect("valid spec");
            let code = spec.generate(&mut rng).expect("valid spec");
            assert_eq!(code.expose().len(), length);
            assert!(
                code.expose()
                    .bytes()
                    .all(|b| ALPHANUMERIC.as_bytes().contains(&b))
            );
        }
    }

    #[test]
    fn rejection_sampling_drops_the_biased_tail() {
        // Digits: 256 % 10 = 6, so bytes 250..=255 must be rejected. Starting at 250, the
        // first six bytes are dropped and the code starts with 256 % 10 = 0, 1, 2...
        let spec = CodeSpec::new(6, Alphabet::Digits).expect("valid spec");
        let code = spec.generate(&mut Counting(250)).expect("code");
        assert_eq!(code.expose(), "012345");
    }

    #[test]
    fn generated_digits_are_uniform() {
        let spec = CodeSpec::new(10, Alphabet::Digits).expect("valid spec");
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            for b in spec.generate(&mut rng).expect("code").expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 200,000 draws, 20,000 expected each; chi-square with 9 dof stays far below 40.
        let chi: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - 20_000.0).powi(2) / 20_000.0)
            .sum();
        assert!(chi < 40.0, "chi-square {chi}, counts {counts:?}");
    }

    #[test]
    fn a_failing_random_source_is_an_error_not_a_weak_code() {
        assert_eq!(
            CodeSpec::default().generate(&mut Broken),
            Err(CodeError::Rng(RngUnavailable))
        );
    }

    #[test]
    fn digest_is_bound_to_the_id_and_key() {
        let key = CodeKey::new("k1", b"0123456789abcdef0123456789abcdef".to_vec());
        let code = Code::new("123456");
        let d = key.digest("ver_a", &code);
        assert!(key.matches("ver_a", &code, &d));
        assert!(!key.matches("ver_b", &code, &d));
        assert!(!key.matches("ver_a", &Code::new("123457"), &d));
        let other = CodeKey::new("k2", b"another key of thirty-two bytes!".to_vec());
        assert!(!other.matches("ver_a", &code, &d));
        // separator: id "ab" + code "1" differs from id "a" + code "b1"
        assert_ne!(
            key.digest("ab", &Code::new("1")),
            key.digest("a", &Code::new("b1"))
        );
        assert!(!key.matches("ver_a", &code, &d[..31]));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = CodeKey::new("k1", b"super secret".to_vec());
        let code = Code::new("424242");
        assert!(!format!("{key:?}").contains("super"));
        assert!(!format!("{code:?}").contains("4242"));
    }

    #[test]
    fn typed_codes_are_normalised() {
        let spec = CodeSpec::default();
        assert_eq!(
            spec.normalize(" 123-456 ").map(|c| c.expose().to_owned()),
            Some("123456".into())
        );
        assert!(spec.normalize("12345").is_none());
        assert!(spec.normalize("12345a").is_none());
        let alnum = CodeSpec::new(4, Alphabet::Alphanumeric).expect("valid spec");
        assert_eq!(
            alnum.normalize("ab2c").map(|c| c.expose().to_owned()),
            Some("AB2C".into())
        );
        assert!(
            alnum.normalize("AB0C").is_none(),
            "0 is a look-alike and not in the alphabet"
        );
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_key_and_from_digests() {
        let a = CodeKey::new("a", vec![7u8; 32]);
        let b = CodeKey::new("b", vec![8u8; 32]);
        assert_eq!(a.derive("send queue"), a.derive("send queue"));
        assert_ne!(a.derive("send queue"), a.derive("audit"));
        assert_ne!(a.derive("send queue"), b.derive("send queue"));
        assert_ne!(
            a.derive("send queue"),
            a.digest("otpgate derive", &Code::new("send queue"))
        );
    }
}

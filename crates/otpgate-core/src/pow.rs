//! The proof-of-work challenge that gates sending (anti SMS-pumping).
//!
//! Stateless and bound to the request: the issuer hands out
//! `v1.<difficulty>.<expires>.<salt>.<mac>` where `mac = HMAC-SHA256(key, "v1.<difficulty>.
//! <expires>.<salt>." ‖ binding)` and `binding` is what the challenge protects (the phone
//! number, and the app). The client finds a `nonce` such that
//! `SHA-256(challenge ‖ "." ‖ nonce)` starts with `difficulty` zero bits. The issuer checks
//! the MAC, the expiry, the binding and the work, and remembers the challenge until it
//! expires so that one solution buys one send.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::code::ct_eq;
use crate::rng::{RngUnavailable, SecureRandom};
use crate::wire::ErrorCode;

/// The highest difficulty the issuer may ask for (about 2^24 hashes, seconds in wasm).
pub const MAX_DIFFICULTY: u8 = 24;

/// Why a proof of work was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The challenge is not in the `v1.` format.
    #[error("malformed challenge")]
    Malformed,
    /// The challenge was not issued by this server for this request.
    #[error("challenge not issued for this request")]
    Forged,
    /// The challenge has expired.
    #[error("challenge expired")]
    Expired,
    /// The nonce does not produce enough zero bits.
    #[error("insufficient proof of work")]
    Insufficient,
}

impl PowError {
    /// The stable code of this refusal on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed => ErrorCode::PowMalformed,
            Self::Forged => ErrorCode::PowForged,
            Self::Expired => ErrorCode::PowExpired,
            Self::Insufficient => ErrorCode::PowInsufficient,
        }
    }
}

fn mac(key: &[u8], unsigned: &str, binding: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(unsigned.as_bytes());
    m.update(b".");
    m.update(binding.as_bytes());
    m.finalize().into_bytes().into()
}

/// Issues a challenge of `difficulty` bits, valid until `expires` (Unix seconds), bound to
/// `binding`.
///
/// # Errors
/// [`RngUnavailable`] if no salt can be drawn.
pub fn issue(
    key: &[u8],
    binding: &str,
    difficulty: u8,
    expires: i64,
    rng: &mut dyn SecureRandom,
) -> Result<String, RngUnavailable> {
    let mut salt = [0u8; 12];
    rng.fill(&mut salt)?;
    let unsigned = format!(
        "v1.{}.{expires}.{}",
        difficulty.min(MAX_DIFFICULTY),
        URL_SAFE_NO_PAD.encode(salt)
    );
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &unsigned, binding));
    Ok(format!("{unsigned}.{tag}"))
}

/// The difficulty and expiry written in a challenge, without checking its MAC (for clients).
///
/// # Errors
/// [`PowError::Malformed`].
pub fn describe(challenge: &str) -> Result<(u8, i64), PowError> {
    let mut parts = challenge.split('.');
    let (Some("v1"), Some(d), Some(e), Some(_salt), Some(_tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PowError::Malformed);
    };
    let difficulty: u8 = d.parse().map_err(|_| PowError::Malformed)?;
    let expires: i64 = e.parse().map_err(|_| PowError::Malformed)?;
    if difficulty > MAX_DIFFICULTY || challenge.len() > 200 {
        return Err(PowError::Malformed);
    }
    Ok((difficulty, expires))
}

/// The number of leading zero bits of `SHA-256(challenge ‖ "." ‖ nonce)`.
pub fn work(challenge: &str, nonce: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b".");
    h.update(nonce.to_string().as_bytes());
    leading_zero_bits(&h.finalize())
}

fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for &b in bytes {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Checks a solution: the challenge's MAC for `binding`, its expiry against `now` (Unix
/// seconds) and the work. Returns the difficulty that was met.
///
/// # Errors
/// [`PowError`] naming the failed check.
pub fn verify(
    key: &[u8],
    binding: &str,
    challenge: &str,
    nonce: u64,
    now: i64,
) -> Result<u8, PowError> {
    let (difficulty, expires) = describe(challenge)?;
    let (unsigned, tag) = challenge.rsplit_once('.').ok_or(PowError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| PowError::Malformed)?;
    if !ct_eq(&mac(key, unsigned, binding), &tag) {
        return Err(PowError::Forged);
    }
    if now > expires {
        return Err(PowError::Expired);
    }
    if work(challenge, nonce) < u32::from(difficulty) {
        return Err(PowError::Insufficient);
    }
    Ok(difficulty)
}

/// Finds a nonce for `challenge`, trying at most `max_tries` values (the client side).
///
/// # Errors
/// [`PowError::Malformed`] for a bad challenge; `Ok(None)` when no nonce was found in time.
pub fn solve(challenge: &str, max_tries: u64) -> Result<Option<u64>, PowError> {
    let (difficulty, _) = describe(challenge)?;
    let prefix = Prefix::new(challenge);
    Ok((0..max_tries).find(|&nonce| prefix.work(nonce) >= u32::from(difficulty)))
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// [`work`] for many nonces of one challenge, the solver's inner loop: the whole 64-byte
/// blocks of `challenge ‖ "."` are compressed once, and each nonce costs only the one or two
/// last blocks (the rest of that prefix, the nonce's digits, SHA-256's padding of FIPS 180-4
/// 5.1.1), given to sha2's raw compression function. About twice as fast as a fresh
/// `Sha256` per nonce in the wasm, where this loop is the client's only hot path.
struct Prefix {
    /// The state after the prefix's whole blocks.
    state: [u32; 8],
    /// The prefix's last, partial block (fewer than 64 bytes).
    tail: Vec<u8>,
    /// The prefix's length in bytes.
    len: usize,
}

impl Prefix {
    fn new(challenge: &str) -> Self {
        let mut bytes = Vec::with_capacity(challenge.len() + 1);
        bytes.extend_from_slice(challenge.as_bytes());
        bytes.push(b'.');
        let mut state = SHA256_IV;
        let mut chunks = bytes.chunks_exact(64);
        for chunk in &mut chunks {
            let mut block = [0u8; 64];
            block.copy_from_slice(chunk);
            sha2::block_api::compress256(&mut state, &[block]);
        }
        Self {
            state,
            tail: chunks.remainder().to_vec(),
            len: bytes.len(),
        }
    }

    /// `work(challenge, nonce)`.
    fn work(&self, nonce: u64) -> u32 {
        let mut n = 0;
        for word in self.hash(nonce) {
            if word != 0 {
                return n + word.leading_zeros();
            }
            n += 32;
        }
        n
    }

    /// `SHA-256(challenge ‖ "." ‖ nonce)` as its eight big-endian words.
    fn hash(&self, nonce: u64) -> [u32; 8] {
        let mut digits = itoa_buf();
        let digits = fmt_u64(nonce, &mut digits);
        // At most 63 + 20 bytes of message, then 0x80 and the 8-byte bit length: two blocks.
        let mut blocks = [[0u8; 64]; 2];
        let flat = blocks.as_flattened_mut();
        let (t, d) = (self.tail.len(), digits.len());
        flat[..t].copy_from_slice(&self.tail);
        flat[t..t + d].copy_from_slice(digits);
        flat[t + d] = 0x80;
        let used = if t + d + 9 <= 64 { 64 } else { 128 };
        let bits = ((self.len + d) as u64) * 8;
        flat[used - 8..used].copy_from_slice(&bits.to_be_bytes());
        let mut state = self.state;
        sha2::block_api::compress256(&mut state, &blocks[..used / 64]);
        state
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl SecureRandom for Fixed {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
            dest.fill(7);
            Ok(())
        }
    }

    const KEY: &[u8] = b"pow key for tests, 32 bytes long";

    #[test]
    fn solve_then_verify() {
        let c = issue(KEY, "+14155550123", 10, 1000, &mut Fixed).expect("issue");
        assert_eq!(describe(&c), Ok((10, 1000)));
        let nonce = solve(&c, 1 << 20).expect("well formed").expect("found");
        assert!(work(&c, nonce) >= 10);
        assert_eq!(verify(KEY, "+14155550123", &c, nonce, 999), Ok(10));
    }

    #[test]
    fn wrong_binding_key_expiry_or_work_fail() {
        let c = issue(KEY, "+14155550123", 12, 1000, &mut Fixed).expect("issue");
        let nonce = solve(&c, 1 << 22).expect("ok").expect("found");
        assert_eq!(
            verify(KEY, "+14155557654", &c, nonce, 0),
            Err(PowError::Forged)
        );
        assert_eq!(
            verify(b"other", "+14155550123", &c, nonce, 0),
            Err(PowError::Forged)
        );
        assert_eq!(
            verify(KEY, "+14155550123", &c, nonce, 1001),
            Err(PowError::Expired)
        );
        let bad = (0..).find(|n| work(&c, *n) < 12).expect("some nonce fails");
        assert_eq!(
            verify(KEY, "+14155550123", &c, bad, 0),
            Err(PowError::Insufficient)
        );
        // Lowering the difficulty in the token breaks the MAC.
        let lowered = c.replacen("v1.12.", "v1.1.", 1);
        assert_eq!(
            verify(KEY, "+14155550123", &lowered, nonce, 0),
            Err(PowError::Forged)
        );
    }

    #[test]
    fn malformed_challenges() {
        for c in [
            "",
            "v1",
            "v2.1.2.a.b",
            "v1.x.2.a.b",
            "v1.99.2.a.b",
            "v1.1.2.a.b.c",
            "v1.1.2.a.!!",
        ] {
            assert!(verify(KEY, "b", c, 0, 0).is_err(), "{c}");
        }
        assert_eq!(solve("nope", 10), Err(PowError::Malformed));
    }

    /// The solver's block-by-block hash is the plain `Sha256` of `challenge ‖ "." ‖ nonce`
    /// (and so counts the same zero bits), for every prefix length across the block and padding
    /// boundaries and nonces of 1 to 20 digits.
    #[test]
    fn solver_hash_matches_sha256() {
        let nonces = [
            0,
            7,
            42,
            999,
            123_456,
            4_294_967_296,
            10u64.pow(18),
            u64::MAX,
        ];
        for len in 0..200 {
            let challenge: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let prefix = Prefix::new(&challenge);
            for nonce in nonces.into_iter().chain(0..40) {
                let words = prefix.hash(nonce);
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
                let expected = Sha256::digest(format!("{challenge}.{nonce}").as_bytes());
                assert_eq!(bytes, expected.as_slice(), "{len} {nonce}");
                assert_eq!(prefix.work(nonce), work(&challenge, nonce), "{len} {nonce}");
            }
        }
        // A digest with many leading zeros is counted past the first word.
        let c = issue(KEY, "+14155550123", 12, 1000, &mut Fixed).expect("issue");
        let found = solve(&c, 1 << 22).expect("ok").expect("found");
        assert_eq!(Prefix::new(&c).work(found), work(&c, found));
    }

    #[test]
    fn zero_bits_counting() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x10]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), u64::MAX.to_string().as_bytes());
    }
}

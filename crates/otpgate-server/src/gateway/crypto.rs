//! sms-gate.app end-to-end encryption (`isEncrypted: true`).
//!
//! Format: `$aes-256-cbc/pbkdf2-sha1$i=<iterations>$<base64 salt>$<base64 ciphertext>`, the key
//! is PBKDF2-HMAC-SHA1(passphrase, salt, iterations) → 32 bytes, the cipher AES-256-CBC with
//! PKCS#7 padding and **IV = the salt** (as the app and the official clients do).
//!
//! # Security
//! There is no MAC: this hides the text and the number from a cloud/private server, nothing
//! more. The passphrase lives on the phone and in our config (from the environment).

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The app's default iteration count.
pub const DEFAULT_ITERATIONS: u32 = 75_000;

/// Most iterations accepted when decrypting (bounds the work a blob can ask for).
const MAX_ITERATIONS: u32 = 10_000_000;

const PREFIX: &str = "$aes-256-cbc/pbkdf2-sha1$";

/// Why a blob could not be decrypted.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Not the `$aes-256-cbc/pbkdf2-sha1$...` format.
    #[error("not an sms-gate encrypted value")]
    Format,
    /// Wrong passphrase or corrupt ciphertext (bad padding or not UTF-8).
    #[error("decryption failed")]
    Decrypt,
}

impl CryptoError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Format => "bad_encrypted_format",
            Self::Decrypt => "decryption_failed",
        }
    }
}

fn derive(passphrase: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 32>(passphrase.as_bytes(), salt, iterations)
}

/// Encrypts `plain` with a fresh 16-byte `salt` (which is also the IV).
pub fn encrypt(passphrase: &str, plain: &str, salt: &[u8; 16], iterations: u32) -> String {
    let key = derive(passphrase, salt, iterations);
    let ct = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &(*salt).into())
        .encrypt_padded_vec::<Pkcs7>(plain.as_bytes());
    format!(
        "{PREFIX}i={iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(ct)
    )
}

/// Whether `value` looks like an encrypted blob.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Decrypts a blob made by [`encrypt`] (or by the app / official clients).
///
/// # Errors
/// [`CryptoError`].
pub fn decrypt(passphrase: &str, value: &str) -> Result<String, CryptoError> {
    let rest = value.strip_prefix(PREFIX).ok_or(CryptoError::Format)?;
    let mut parts = rest.split('$');
    let (Some(params), Some(salt), Some(ct), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CryptoError::Format);
    };
    let iterations: u32 = params
        .split(',')
        .find_map(|p| p.strip_prefix("i="))
        .and_then(|i| i.parse().ok())
        .filter(|i| (1..=MAX_ITERATIONS).contains(i))
        .ok_or(CryptoError::Format)?;
    let salt = STANDARD.decode(salt).map_err(|_| CryptoError::Format)?;
    let salt: [u8; 16] = salt.try_into().map_err(|_| CryptoError::Format)?;
    let ct = STANDARD.decode(ct).map_err(|_| CryptoError::Format)?;
    let key = derive(passphrase, &salt, iterations);
    let plain = cbc::Decryptor::<aes::Aes256>::new(&key.into(), &salt.into())
        .decrypt_padded_vec::<Pkcs7>(&ct)
        .map_err(|_| CryptoError::Decrypt)?;
    String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format() {
        let salt = [7u8; 16];
        let blob = encrypt("passphrase", "Your code is 483920", &salt, 1000);
        assert!(blob.starts_with("$aes-256-cbc/pbkdf2-sha1$i=1000$BwcHBwcHBwcHBwcHBwcHBw==$"));
        assert!(is_encrypted(&blob));
        assert_eq!(
            decrypt("passphrase", &blob).as_deref(),
            Ok("Your code is 483920")
        );
        assert_ne!(
            decrypt("wrong", &blob).as_deref(),
            Ok("Your code is 483920")
        );
    }

    #[test]
    fn known_answer_from_openssl() {
        // Cross-checked with OpenSSL (the same algorithm the app uses):
        //   key = PBKDF2-HMAC-SHA1("secret", salt 00..0f, 1000 iterations, 32 bytes)
        //   printf '+14155550123' | openssl enc -aes-256-cbc -K <key> -iv 000102..0f | base64
        let salt: [u8; 16] = core::array::from_fn(|i| i as u8);
        let blob = encrypt("secret", "+14155550123", &salt, 1000);
        assert_eq!(
            blob,
            "$aes-256-cbc/pbkdf2-sha1$i=1000$AAECAwQFBgcICQoLDA0ODw==$f8lIYCBUEDBgtLkDaQwTRQ=="
        );
        assert_eq!(decrypt("secret", &blob).as_deref(), Ok("+14155550123"));
        assert_eq!(
            hex::encode(derive("secret", &salt, 1000)),
            "b054b25cf15c5e093100214b7cbd9d49b6e163a979efc91aa818b8a2f664ee1d"
        );
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        for bad in [
            "",
            "hello",
            "$aes-256-cbc/pbkdf2-sha1$",
            "$aes-256-cbc/pbkdf2-sha1$i=1000$AAAA$",
            "$aes-256-cbc/pbkdf2-sha1$i=0$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
            "$aes-256-cbc/pbkdf2-sha1$i=99999999999$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
            "$aes-256-cbc/pbkdf2-sha1$i=10$!!$AAAA",
            "$aes-256-cbc/pbkdf2-sha1$i=10$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==$x",
        ] {
            assert!(decrypt("k", bad).is_err(), "{bad:?}");
        }
        // Right format, wrong length ciphertext.
        assert_eq!(
            decrypt(
                "k",
                "$aes-256-cbc/pbkdf2-sha1$i=10$AAAAAAAAAAAAAAAAAAAAAA==$AAAA"
            ),
            Err(CryptoError::Decrypt)
        );
    }
}

//! The issuer's secrets: Ed25519 receipt signing keys (rotated by `kid`, old public keys kept
//! in the JWKS for a retention period), the code HMAC keys (with ids, so a rotation keeps the
//! codes in flight checkable), the proof-of-work MAC key and the audit pseudonym key.
//!
//! # Where the keys come from
//! Each key is taken from the environment when set, otherwise from `DATA_DIR/keys/`:
//!
//! | key | environment (value, or `_FILE` naming a file) | file under `DATA_DIR/keys/` |
//! |---|---|---|
//! | receipt | `OTPGATE_RECEIPT_KEY[_FILE]`: Ed25519 PKCS#8 PEM | `receipt-<kid>.pem` + `manifest.json` |
//! | code | `OTPGATE_CODE_KEY[_FILE]`: base64, ≥ 32 bytes | `code-<id>.key` + `manifest.json` |
//! | PoW | `OTPGATE_POW_KEY[_FILE]`: base64, ≥ 32 bytes | `pow.key` |
//! | pseudonym | `OTPGATE_PSEUDONYM_KEY[_FILE]`: base64, ≥ 32 bytes | `pseudonym.key` |
//! | audit chain | `OTPGATE_AUDIT_KEY[_FILE]`: base64, ≥ 32 bytes | `audit-<id>.key` + `audit.json` |
//!
//! Missing files are created on first start (mode 0600, written to a temporary file then
//! linked into place, so two instances starting together on the same directory end up with
//! the same keys). A key given by the environment gets an id derived from its public part or
//! its hash, so instances sharing the environment agree on ids.
//!
//! # Rotation
//! `otpgate keys rotate` makes a new receipt key, a new code key and a new audit chain key
//! current. The retired
//! receipt key stays in the JWKS for [`RECEIPT_KEY_RETENTION_MS`]; the retired code key stays
//! usable for checks for [`CODE_KEY_RETENTION_MS`]; retired audit keys are kept (never
//! pruned: they verify the lines they sealed). Running instances pick the new keys up at
//! their next start.
//!
//! # Security
//! `Debug` never prints a secret; secrets are zeroized when dropped (the signing key by
//! `ed25519-dalek`, the code keys by [`CodeKey`](otpgate_core::code::CodeKey), the others
//! through [`Zeroizing`](zeroize::Zeroizing)).
//!
//! # Layout
//! - `ring`: [`KeyRing`], the loaded keys, and the listing of `otpgate keys list`.
//! - `rotation`: [`rotate`], [`revoke`], and [`env_overrides`] (what overrides the files).
//! - `dir`: the key directory: `manifest.json` and the key files.
//! - `secrets`: key material from the environment, decoded, checked or made up.
//! - `files`: private (0600) files written atomically.

mod dir;
mod files;
mod ring;
mod rotation;
mod secrets;

pub use ring::{KeyInfo, KeyListing, KeyRing, audit_keys_for_verify, list};
pub use rotation::{Rotated, env_overrides, revoke, rotate};

/// How long a retired receipt key stays published in the JWKS (7 days: receipts live
/// minutes, but verifiers cache the JWKS).
pub const RECEIPT_KEY_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long a retired code key still checks codes (1 day: codes live at most 10 minutes).
pub const CODE_KEY_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// The smallest accepted symmetric key, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const MANIFEST: &str = "manifest.json";

#[cfg(test)]
mod tests;

//! `otpgate keys ...`: rotate, list, print the JWKS, revoke (the work is in [`crate::keys`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::clock::rfc3339;
use crate::keys::{self, KeyRing};

/// `otpgate keys ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Creates a new receipt signing key, code key and audit chain key and makes them current
    /// (old receipt keys stay published; old audit keys are kept to verify old lines).
    Rotate(KeysArgs),
    /// Lists the keys (ids, creation times, which is current).
    List(KeysArgs),
    /// Prints the JWKS.
    Jwks(KeysArgs),
    /// Withdraws a retired key at once (a stolen one): a receipt key leaves the JWKS, a code
    /// key stops checking codes, the lines an audit key sealed stop verifying. The current
    /// keys cannot be revoked: rotate first.
    Revoke(RevokeArgs),
    /// Makes an API key for a trusted backend: prints the key (give it to the backend, as
    /// `Authorization: Bearer KEY`) and the `sha256:` entry for `[policy] api_keys` (the only
    /// part that goes in the configuration). Nothing is stored.
    ApiKey,
}

/// `otpgate keys revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The key id (`otpgate keys list`).
    pub id: String,
    /// Where the keys are.
    #[command(flatten)]
    pub keys: KeysArgs,
}

/// Where the keys are.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// The data directory.
    #[arg(long, env = "OTPGATE_DATA_DIR", default_value = "otpgate-data")]
    pub data_dir: PathBuf,
}

/// Runs `otpgate keys ...`.
///
/// # Errors
/// I/O failures, unreadable keys.
pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate(args) => {
            let r = keys::rotate(&args.data_dir)?;
            println!("new receipt key: {}", r.receipt_kid);
            println!("new code key:    {}", r.code_key_id);
            println!("new audit key:   {}", r.audit_key_id);
            for id in &r.pruned {
                println!("deleted expired key: {id}");
            }
            for var in keys::env_overrides() {
                eprintln!("note: ${var} is set and takes precedence over the key files");
            }
            println!("restart the issuer instances to use the new keys");
        }
        KeysCommand::List(args) => {
            let listing = keys::list(&args.data_dir)?;
            println!("{:<10} {:<16} {:<22} state", "kind", "id", "created");
            for k in &listing.keys {
                let state = match (k.kind, k.current) {
                    ("receipt", true) => "current (signs)",
                    ("receipt", false) => "retired (published)",
                    (_, true) => "current",
                    (_, false) => "retired (checks only)",
                };
                let created = k.created_at_ms.map_or_else(|| "-".to_owned(), rfc3339);
                println!("{:<10} {:<16} {:<22} {state}", k.kind, k.id, created);
            }
            for (kind, source) in &listing.sources {
                println!("source     {kind:<16} {source}");
            }
        }
        KeysCommand::ApiKey => {
            let (key, entry) = new_api_key()?;
            println!("api key:         {}", key.as_str());
            println!("api_keys entry:  \"{entry}\"");
            eprintln!(
                "give the key to your backend (Authorization: Bearer <key>) and keep it secret; \
                 put only the entry in [policy] api_keys"
            );
        }
        KeysCommand::Jwks(args) => {
            let ring = KeyRing::load_or_create(&args.data_dir)?;
            println!("{}", serde_json::to_string_pretty(&ring.jwks())?);
        }
        KeysCommand::Revoke(args) => {
            let kind = keys::revoke(&args.keys.data_dir, &args.id)?;
            println!("revoked {kind} key: {}", args.id);
            println!(
                "restart the issuer instances, and tell verifiers that cache the JWKS to refetch it"
            );
        }
    }
    Ok(())
}

/// A new API key (32 random bytes, hex) and its `sha256:` entry for `[policy] api_keys`.
///
/// # Errors
/// The OS random source is unavailable.
pub fn new_api_key() -> anyhow::Result<(zeroize::Zeroizing<String>, String)> {
    use sha2::Digest as _;
    let bytes =
        zeroize::Zeroizing::new(crate::random::bytes(32).map_err(|e| anyhow::anyhow!("{e}"))?);
    let key = zeroize::Zeroizing::new(hex::encode(bytes.as_slice()));
    let entry = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    );
    Ok((key, entry))
}

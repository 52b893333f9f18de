//! The `otpgate` command line. Each command parses its arguments here and calls the module
//! that owns the work; `main` stays thin.

pub mod emulator;
pub mod keys;
pub mod sms;

pub use emulator::EmulatorArgs;
pub use keys::{KeysArgs, KeysCommand, RevokeArgs};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Self-hosted SMS one-time passwords sent from your own Android phones.
#[derive(Debug, Parser)]
#[command(name = "otpgate", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the issuer (HTTP API, gateway pool, demo page in dev mode).
    Serve(ServeArgs),
    /// Runs a stand-alone emulated phone speaking the sms-gate.app API.
    Emulator(EmulatorArgs),
    /// Prints the 11-character SMS Retriever hash of an Android app.
    AppHash(sms::AppHashArgs),
    /// SMS tools: parse, segments, compose.
    #[command(subcommand)]
    Sms(sms::SmsCommand),
    /// Receipt signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `otpgate serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The TOML configuration; without it, dev mode (embedded store, emulated phone).
    #[arg(long, env = "OTPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "OTPGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the embedded store, keys and audit log live (default ./otpgate-data).
    #[arg(long, env = "OTPGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `otpgate audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain; names the first broken line.
    Verify {
        /// The audit log file (default: DATA_DIR/audit.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The data directory.
        #[arg(long, env = "OTPGATE_DATA_DIR", default_value = "otpgate-data")]
        data_dir: PathBuf,
    },
}

/// Parses the command line and runs the command; errors print as one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sms(cmd) => sms::run(cmd),
        Command::AppHash(args) => sms::app_hash(&args),
        Command::Serve(args) => crate::serve::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Audit(cmd) => crate::audit::run_cli(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `otpgate` command line: [`Cli`] and [`main`] here, and one file per command family
//! ([`serve`], [`emulator`], [`app_hash`], [`sms`], [`keys`], [`audit`], [`gateways`]) holding its
//! arguments and its body, which prints and calls the module that owns the work; the binary's
//! `main.rs` only calls [`main`].

pub mod app_hash;
pub mod audit;
pub mod emulator;
pub mod gateways;
pub mod keys;
pub mod serve;
pub mod sms;

pub use app_hash::AppHashArgs;
pub use audit::AuditCommand;
pub use emulator::EmulatorArgs;
pub use gateways::{GatewaysArgs, GatewaysCommand};
pub use keys::{KeysArgs, KeysCommand, RevokeArgs};
pub use serve::ServeArgs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    AppHash(AppHashArgs),
    /// SMS tools: parse, segments, compose.
    #[command(subcommand)]
    Sms(sms::SmsCommand),
    /// Receipt signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The phones: check them, connect their webhooks.
    #[command(subcommand)]
    Gateways(GatewaysCommand),
}

/// Parses the command line and runs the command; errors print as one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sms(cmd) => sms::run(cmd),
        Command::AppHash(args) => app_hash::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Gateways(cmd) => gateways::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

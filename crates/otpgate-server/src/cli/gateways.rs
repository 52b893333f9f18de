//! `otpgate gateways check|connect`: onboarding the phones of the configuration (the work is
//! in [`crate::gateway::onboard`]).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::{Config, Overrides, ProcessEnv};
use crate::gateway::onboard::{self, Verdict};

/// `otpgate gateways ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum GatewaysCommand {
    /// Checks each phone: reachable, credentials accepted, health, webhooks registered, clock
    /// skew, signing key strength; one verdict per phone, and a non-zero exit when one is
    /// unusable.
    Check(GatewaysArgs),
    /// Registers the issuer's webhook URL for every event otpgate uses on each sms-gate.app
    /// phone and sets its signing key where the API allows it (the phone's local server);
    /// idempotent; prints what it changed.
    Connect(GatewaysArgs),
}

/// The configuration whose phones are onboarded.
#[derive(Debug, Clone, Args)]
pub struct GatewaysArgs {
    /// The TOML configuration (its `[gateways]` and `server.public_url`).
    #[arg(long, env = "OTPGATE_CONFIG")]
    pub config: PathBuf,
}

/// Runs `otpgate gateways ...`.
///
/// # Errors
/// An unreadable configuration, a phone that is unusable (`check`) or a change that failed
/// (`connect`).
pub fn run(cmd: GatewaysCommand) -> anyhow::Result<()> {
    let (GatewaysCommand::Check(args) | GatewaysCommand::Connect(args)) = &cmd;
    let config = Config::load(Some(&args.config), &Overrides::default(), &ProcessEnv)?;
    let public_url = config.public_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match cmd {
        GatewaysCommand::Check(_) => {
            let reports = runtime.block_on(onboard::check(
                &config.gateways,
                &public_url,
                SystemTime::now(),
            ));
            let mut unusable = 0;
            for r in &reports {
                println!("{}: {}", r.name, r.verdict.as_str().to_uppercase());
                for f in &r.findings {
                    println!("  {:<5} {:<12} {}", f.verdict.as_str(), f.item, f.detail);
                }
                unusable += usize::from(r.verdict == Verdict::Unusable);
            }
            anyhow::ensure!(
                unusable == 0,
                "{unusable} of {} phones unusable",
                reports.len()
            );
            Ok(())
        }
        GatewaysCommand::Connect(_) => {
            let done = runtime.block_on(onboard::connect(&config.gateways, &public_url));
            let mut failed = 0;
            for c in &done {
                println!("{}:", c.name);
                for line in &c.changes {
                    println!("  {line}");
                }
                for line in &c.problems {
                    println!("  PROBLEM: {line}");
                }
                failed += usize::from(!c.problems.is_empty());
            }
            if done.is_empty() {
                println!("no sms-gate.app phones in {}", args_path(&config));
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} of {} phones not connected",
                done.len()
            );
            Ok(())
        }
    }
}

fn args_path(config: &Config) -> String {
    config.source.as_ref().map_or_else(
        || "the configuration".to_owned(),
        |p| p.display().to_string(),
    )
}

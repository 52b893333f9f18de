//! `otpgate emulator`: a stand-alone emulated phone speaking the sms-gate.app API (see
//! [`crate::emulator`]); prints its address and any made-up credentials, then serves until
//! Ctrl-C.

use std::net::SocketAddr;

use clap::Args;

use crate::emulator::{Emulator, EmulatorConfig, Knobs, Offline};

/// `otpgate emulator`.
#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// The address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "OTPGATE_EMULATOR_LISTEN"
    )]
    pub listen: SocketAddr,
    /// The Basic-auth user.
    #[arg(long, default_value = "sms", env = "OTPGATE_EMULATOR_USERNAME")]
    pub username: String,
    /// The Basic-auth password; made up and printed when absent, as the app does.
    #[arg(long, env = "OTPGATE_EMULATOR_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The webhook signing key; made up when absent.
    #[arg(long, env = "OTPGATE_EMULATOR_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// A webhook URL to register at start (events sms:sent, sms:delivered, sms:failed).
    #[arg(long)]
    pub webhook: Vec<String>,
    /// Delay before each state change, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub delay_ms: u64,
    /// Share of sends that fail, 0.0–1.0.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Share of delivery reports that are dropped, 0.0–1.0.
    #[arg(long, default_value_t = 0.0)]
    pub drop_reports: f64,
    /// Start offline (every call answers 503 until switched back through the control API).
    #[arg(long)]
    pub offline: bool,
    /// Android's per-app limit: messages per minute before RESULT_ERROR_LIMIT_EXCEEDED.
    #[arg(long, default_value_t = 30)]
    pub limit_per_minute: u32,
}

/// Runs `otpgate emulator`.
///
/// # Errors
/// Start-up failures (the address is taken, bad arguments).
pub fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.failure_rate) || !(0.0..=1.0).contains(&args.drop_reports) {
        anyhow::bail!("--failure-rate and --drop-reports must be between 0 and 1");
    }
    let made_up_password = args.password.is_none();
    let made_up_key = args.signing_key.is_none();
    let mut cfg = EmulatorConfig::new(args.username.clone(), args.password, args.signing_key);
    for w in &args.webhook {
        match reqwest::Url::parse(w) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => cfg.webhooks.push(w.clone()),
            _ => anyhow::bail!("--webhook {w:?}: not an http(s) URL"),
        }
    }
    cfg.knobs = Knobs {
        delay_ms: args.delay_ms,
        failure_rate: args.failure_rate,
        drop_reports: args.drop_reports,
        offline: if args.offline {
            Offline::Unavailable
        } else {
            Offline::Online
        },
        limit: args.limit_per_minute,
        ..Knobs::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("otpgate emulator: sms-gate.app API on http://{addr} (also /3rdparty/v1)");
        println!("  username: {}", cfg.username);
        if made_up_password {
            println!("  password: {}", cfg.password);
        }
        if made_up_key {
            println!("  webhook signing key: {}", cfg.signing_key);
        }
        println!(
            "  control: POST http://{addr}/_control   sent: GET http://{addr}/_emulator/messages"
        );
        let emu = Emulator::new(cfg);
        tokio::select! {
            r = emu.serve(listener) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

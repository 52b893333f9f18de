//! `otpgate serve`: loads the configuration, starts JSON logs and the runtime, binds the
//! listener and runs the issuer ([`crate::serve`]) until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;

use crate::config::{Config, Overrides, ProcessEnv};
use crate::serve::{run_with_listener, shutdown_signal};

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

/// Runs the issuer: the body of `otpgate serve`.
///
/// # Errors
/// A configuration error (file, key, reason), a port in use, a store that cannot be opened.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
    };
    let config = Config::load(args.config.as_deref(), &overrides, &ProcessEnv)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("otpgate")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        run_with_listener(config, listener, shutdown_signal()).await
    })
}

/// JSON logs on stderr; the filter comes from `OTPGATE_LOG` (then `RUST_LOG`), default `info`.
fn init_logging() {
    let filter = std::env::var("OTPGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

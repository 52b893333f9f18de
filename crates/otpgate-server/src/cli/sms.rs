//! `otpgate sms ...`: the SMS rules of `otpgate_core::sms` on the command line.
//!
//! - `sms parse` and `sms segments` read the whole of stdin as the message, byte for byte
//!   (nothing trimmed: a trailing newline is part of the message and, for `parse`, means there
//!   is no origin-bound code), and print one line of JSON.
//! - `sms compose` prints the SMS **exactly**, with no newline added, so that
//!   `otpgate sms compose ... | otpgate sms parse` sees what a phone would; with `--json` it
//!   prints one line of JSON (followed by a newline) with the text and its encoding, segments,
//!   units and bytes.
//! - Errors are one line on stderr and a non-zero exit status.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use otpgate_core::sms::{self, ComposeRequest, Layout, Template};

/// `otpgate sms ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SmsCommand {
    /// Reads the message from stdin and prints what a phone or browser would extract.
    Parse,
    /// Reads the message from stdin and prints its encoding and segment count.
    Segments,
    /// Prints the SMS the issuer would send (exactly, without a trailing newline).
    Compose(ComposeArgs),
}

/// `otpgate sms compose`.
#[derive(Debug, Clone, Args)]
pub struct ComposeArgs {
    /// The app name shown to the user.
    #[arg(long)]
    pub app: String,
    /// The one-time code (4–10 ASCII letters or digits).
    #[arg(long)]
    pub code: String,
    /// The host the code is bound to for WebOTP / Safari AutoFill (e.g. example.com).
    #[arg(long)]
    pub origin: Option<String>,
    /// The host of a cross-site iframe where the code is entered.
    #[arg(long)]
    pub iframe_origin: Option<String>,
    /// The 11-character SMS Retriever app hash.
    #[arg(long)]
    pub app_hash: Option<String>,
    /// The recipient's locale (e.g. pt-BR); built-in texts: en es fr de pt it nl.
    #[arg(long)]
    pub locale: Option<String>,
    /// A template for the human text, with {app}, {code}, {origin}, {app_hash}.
    #[arg(long)]
    pub template: Option<String>,
    /// Where the app hash goes.
    #[arg(long, value_enum, default_value_t = LayoutArg::Combined)]
    pub layout: LayoutArg,
    /// Print JSON with the text, encoding, segments, units and bytes.
    #[arg(long)]
    pub json: bool,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// `<#> text` then `@origin #code app_hash` (every reader's rules at once).
    Combined,
    /// `text`, the app hash on its own line, then `@origin #code`.
    HashLine,
}

/// Runs an `sms` command.
///
/// # Errors
/// Unreadable or non-UTF-8 input, or a message that cannot be composed.
pub fn run(cmd: SmsCommand) -> anyhow::Result<()> {
    let out = match cmd {
        SmsCommand::Parse => {
            let text = read_stdin()?;
            json_line(&sms::parse(&text))?
        }
        SmsCommand::Segments => {
            let text = read_stdin()?;
            json_line(&sms::segments(&text))?
        }
        SmsCommand::Compose(args) => compose(&args)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    Ok(())
}

/// The whole of stdin, byte for byte, as UTF-8.
fn read_stdin() -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("cannot read stdin")?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "stdin is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string(value).context("cannot encode JSON")?;
    s.push('\n');
    Ok(s)
}

fn compose(args: &ComposeArgs) -> anyhow::Result<String> {
    let template = args
        .template
        .as_deref()
        .map(Template::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--template: {e} [{}]", e.code()))?;
    let req = ComposeRequest {
        app: &args.app,
        code: &args.code,
        origin: args.origin.as_deref(),
        iframe_origin: args.iframe_origin.as_deref(),
        app_hash: args.app_hash.as_deref(),
        locale: args.locale.as_deref(),
        template: template.as_ref(),
        templates: None,
        layout: match args.layout {
            LayoutArg::Combined => Layout::Combined,
            LayoutArg::HashLine => Layout::HashLine,
        },
    };
    let composed = sms::compose(req).map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    if !args.json {
        return Ok(composed.text);
    }
    json_line(&ComposedJson {
        text: &composed.text,
        locale: &composed.locale,
        encoding: composed.segments.encoding,
        segments: composed.segments.segments,
        units: composed.segments.units,
        bytes: composed.segments.bytes(),
        ucs2_forced_by_template: composed.ucs2_forced_by_template,
    })
}

/// What `sms compose --json` prints. `bytes` is the user-data size on the air: septets packed
/// 7 bits each, or 2 octets per UTF-16 unit (one SMS holds 140).
#[derive(serde::Serialize)]
struct ComposedJson<'a> {
    text: &'a str,
    locale: &'a str,
    encoding: sms::Encoding,
    segments: u32,
    units: u32,
    bytes: u64,
    ucs2_forced_by_template: bool,
}

//! `[integrations.*]`: the Supabase Send SMS hook and the Twilio Verify-compatible API, and
//! their secrets (read from the environment, or the file its `_FILE` variant names; never
//! from the configuration file; `Debug` prints `[redacted]`).

use std::fmt;

use otpgate_core::standard_webhooks::WebhookSecret;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::config::Env;

/// The default variable of the Supabase hook's secrets.
pub const DEFAULT_SUPABASE_SECRETS_ENV: &str = "OTPGATE_SUPABASE_HOOK_SECRETS";
/// The default variable of the Twilio auth token.
pub const DEFAULT_TWILIO_TOKEN_ENV: &str = "OTPGATE_TWILIO_AUTH_TOKEN";
/// The default accepted clock difference of a hook's `webhook-timestamp`, seconds (the
/// Standard Webhooks libraries' own).
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// `[integrations]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationsConfig {
    /// `[integrations.supabase]`: the Send SMS hook at `POST /v1/hooks/supabase/send-sms`.
    #[serde(default)]
    pub supabase: Option<SupabaseConfig>,
    /// `[integrations.twilio_verify]`: the Twilio Verify-compatible `/v2/Services/...` routes.
    #[serde(default)]
    pub twilio_verify: Option<TwilioVerifyConfig>,
}

/// `[integrations.supabase]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupabaseConfig {
    /// The app whose template, origin and app hash the SMS carries.
    pub app: String,
    /// The variable holding the hook secrets, `v1,whsec_<base64>`, several joined by `|`
    /// (or `NAME_FILE`, a file holding them).
    #[serde(default = "default_supabase_env")]
    pub secrets_env: String,
    /// Accepted clock difference of `webhook-timestamp`, seconds (default 300; 1 to 3600).
    #[serde(default = "default_window")]
    pub timestamp_window_secs: u64,
}

/// `[integrations.twilio_verify]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioVerifyConfig {
    /// The account SID callers authenticate as (`AC` + 32 hex digits), the HTTP Basic user.
    pub account_sid: String,
    /// The variable holding the auth token, the HTTP Basic password (or `NAME_FILE`).
    #[serde(default = "default_twilio_env")]
    pub auth_token_env: String,
    /// `[[integrations.twilio_verify.services]]`: service SIDs and the app each maps to.
    #[serde(default)]
    pub services: Vec<TwilioService>,
}

/// One Verify service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioService {
    /// The service SID (`VA` + 32 hex digits).
    pub sid: String,
    /// The app its verifications are made for.
    pub app: String,
}

fn default_supabase_env() -> String {
    DEFAULT_SUPABASE_SECRETS_ENV.into()
}
fn default_twilio_env() -> String {
    DEFAULT_TWILIO_TOKEN_ENV.into()
}
fn default_window() -> u64 {
    DEFAULT_WINDOW_SECS
}

/// Whether `s` is a Twilio SID with `prefix`: the prefix and 32 lower-case hex digits.
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34
        && s.starts_with(prefix)
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl IntegrationsConfig {
    /// Checks the section against the configured apps; the error is `(key, reason)` with the
    /// key relative to `[integrations]`.
    ///
    /// # Errors
    /// The first value that is wrong.
    pub fn validate(&self, apps: &[&str]) -> Result<(), (String, String)> {
        let known = |a: &str| apps.contains(&a);
        if let Some(s) = &self.supabase {
            if !known(&s.app) {
                return Err((
                    "supabase.app".into(),
                    format!("no [[apps]] named `{}`", s.app),
                ));
            }
            if !valid_env_name(&s.secrets_env) {
                return Err((
                    "supabase.secrets_env".into(),
                    "an environment variable name (A-Z, 0-9, _)".into(),
                ));
            }
            if !(1..=3600).contains(&s.timestamp_window_secs) {
                return Err((
                    "supabase.timestamp_window_secs".into(),
                    "1 to 3600 seconds".into(),
                ));
            }
        }
        if let Some(t) = &self.twilio_verify {
            if !is_sid(&t.account_sid, "AC") {
                return Err((
                    "twilio_verify.account_sid".into(),
                    "AC followed by 32 lower-case hex digits".into(),
                ));
            }
            if !valid_env_name(&t.auth_token_env) {
                return Err((
                    "twilio_verify.auth_token_env".into(),
                    "an environment variable name (A-Z, 0-9, _)".into(),
                ));
            }
            if t.services.is_empty() {
                return Err((
                    "twilio_verify.services".into(),
                    "at least one [[integrations.twilio_verify.services]] with sid and app".into(),
                ));
            }
            for (i, s) in t.services.iter().enumerate() {
                if !is_sid(&s.sid, "VA") {
                    return Err((
                        format!("twilio_verify.services[{i}].sid"),
                        "VA followed by 32 lower-case hex digits".into(),
                    ));
                }
                if t.services[..i].iter().any(|o| o.sid == s.sid) {
                    return Err((
                        format!("twilio_verify.services[{i}].sid"),
                        "listed twice".into(),
                    ));
                }
                if !known(&s.app) {
                    return Err((
                        format!("twilio_verify.services[{i}].app"),
                        format!("no [[apps]] named `{}`", s.app),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The Supabase hook, ready: its app and its secrets.
#[derive(Clone)]
pub struct SupabaseHook {
    /// The app.
    pub app: String,
    /// The accepted secrets (several while rotating).
    pub secrets: Vec<WebhookSecret>,
    /// Accepted clock difference, seconds.
    pub window_secs: i64,
}

impl fmt::Debug for SupabaseHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseHook")
            .field("app", &self.app)
            .field(
                "secrets",
                &format_args!("[redacted; {}]", self.secrets.len()),
            )
            .field("window_secs", &self.window_secs)
            .finish()
    }
}

/// The Twilio Verify-compatible API, ready: the account, the digest of its Basic
/// credentials, the services.
#[derive(Clone)]
pub struct TwilioVerify {
    /// The account SID.
    pub account_sid: String,
    /// SHA-256 of `account_sid:auth_token` (compared in constant time, never the token).
    pub credentials: [u8; 32],
    /// (service SID, app).
    pub services: Vec<(String, String)>,
}

impl fmt::Debug for TwilioVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioVerify")
            .field("account_sid", &self.account_sid)
            .field("credentials", &"[redacted]")
            .field("services", &self.services)
            .finish()
    }
}

/// The integrations that are configured, with their secrets read.
#[derive(Clone, Debug, Default)]
pub struct Integrations {
    /// The Supabase hook, when configured.
    pub supabase: Option<SupabaseHook>,
    /// The Twilio Verify-compatible API, when configured.
    pub twilio: Option<TwilioVerify>,
}

impl Integrations {
    /// Reads the secrets the section names from `env` (`NAME`, else the file `NAME_FILE`
    /// names).
    ///
    /// # Errors
    /// A missing or malformed secret, naming the variable (never its value).
    pub fn load(cfg: &IntegrationsConfig, env: &dyn Env) -> Result<Self, String> {
        let mut out = Self::default();
        if let Some(s) = &cfg.supabase {
            let text = secret(env, &s.secrets_env)?;
            let secrets = WebhookSecret::parse_list(&text).map_err(|e| {
                format!(
                    "integrations.supabase: {} (or its _FILE): {e}",
                    s.secrets_env
                )
            })?;
            out.supabase = Some(SupabaseHook {
                app: s.app.clone(),
                secrets,
                window_secs: i64::try_from(s.timestamp_window_secs).unwrap_or(300),
            });
        }
        if let Some(t) = &cfg.twilio_verify {
            let token = secret(env, &t.auth_token_env)?;
            if token.len() < 16 {
                return Err(format!(
                    "integrations.twilio_verify: {} holds fewer than 16 characters",
                    t.auth_token_env
                ));
            }
            out.twilio = Some(TwilioVerify {
                credentials: Sha256::digest(format!("{}:{}", t.account_sid, *token)).into(),
                account_sid: t.account_sid.clone(),
                services: t
                    .services
                    .iter()
                    .map(|s| (s.sid.clone(), s.app.clone()))
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// `NAME` or the contents of `NAME_FILE`, required.
fn secret(env: &dyn Env, name: &str) -> Result<zeroize::Zeroizing<String>, String> {
    crate::config::env_or_file(env, name)
        .map_err(|e| e.to_string())?
        .map(zeroize::Zeroizing::new)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("environment variable {name} (or {name}_FILE) is not set"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const AC: &str = "AC00000000000000000000000000000000";
    const VA: &str = "VA00000000000000000000000000000000";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sids_are_checked() {
        assert!(is_sid(AC, "AC"));
        assert!(!is_sid(AC, "VA"));
        assert!(!is_sid("AC0000000000000000000000000000000G", "AC"));
        assert!(!is_sid("AC000", "AC"));
    }

    #[test]
    fn validation_names_the_key() {
        let cfg = IntegrationsConfig {
            supabase: Some(SupabaseConfig {
                app: "nope".into(),
                secrets_env: DEFAULT_SUPABASE_SECRETS_ENV.into(),
                timestamp_window_secs: 300,
            }),
            twilio_verify: None,
        };
        assert_eq!(cfg.validate(&["shop"]).unwrap_err().0, "supabase.app");
        let cfg = IntegrationsConfig {
            supabase: None,
            twilio_verify: Some(TwilioVerifyConfig {
                account_sid: AC.into(),
                auth_token_env: DEFAULT_TWILIO_TOKEN_ENV.into(),
                services: vec![
                    TwilioService {
                        sid: VA.into(),
                        app: "shop".into(),
                    },
                    TwilioService {
                        sid: VA.into(),
                        app: "shop".into(),
                    },
                ],
            }),
        };
        assert_eq!(
            cfg.validate(&["shop"]).unwrap_err().0,
            "twilio_verify.services[1].sid"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_and_never_show() {
        let cfg = IntegrationsConfig {
            supabase: Some(SupabaseConfig {
                app: "shop".into(),
                secrets_env: "HOOK".into(),
                timestamp_window_secs: 300,
            }),
            twilio_verify: Some(TwilioVerifyConfig {
                account_sid: AC.into(),
                auth_token_env: "TOKEN".into(),
                services: vec![TwilioService {
                    sid: VA.into(),
                    app: "shop".into(),
                }],
            }),
        };
        let err = Integrations::load(&cfg, &env(&[])).unwrap_err();
        assert!(err.contains("HOOK"), "{err}");
        let hook = "v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let token = "token-0123456789abcdef";
        let loaded = Integrations::load(&cfg, &env(&[("HOOK", hook), ("TOKEN", token)])).unwrap();
        let shown = format!("{loaded:?}");
        assert!(
            !shown.contains("MfKQ9r8") && !shown.contains(token),
            "{shown}"
        );
        assert!(shown.contains("[redacted"), "{shown}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, format!("{hook}\n")).unwrap();
        let from_file = Integrations::load(
            &cfg,
            &env(&[("HOOK_FILE", file.to_str().unwrap()), ("TOKEN", token)]),
        )
        .unwrap();
        assert_eq!(from_file.supabase.unwrap().secrets.len(), 1);
        let bad =
            Integrations::load(&cfg, &env(&[("HOOK", "v1,nope"), ("TOKEN", token)])).unwrap_err();
        assert!(bad.contains("HOOK") && !bad.contains("nope"), "{bad}");
    }
}

//! The console's authentication: the admin token as a bearer, or a session cookie that the
//! login form sets after the token was typed in.
//!
//! # Security
//! - Token comparisons are constant-time: both sides are hashed (SHA-256) and the digests
//!   compared with `subtle`, so neither the content nor the length leaks through timing.
//! - A session id is 32 random bytes; only its SHA-256 is kept (in memory, per instance), so
//!   a memory dump of the map does not give a usable cookie. Sessions end at logout, after
//!   `[admin] session_hours`, or when the instance restarts.
//! - The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
//!   can make the browser send it) and `Secure` when the console is reached over TLS; its
//!   `Path` is the console's base.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::gateway::Secret;

/// The session cookie's name.
pub const COOKIE: &str = "otpgate_admin";
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 1_000;

/// The token and the sessions.
pub struct Auth {
    token_digest: [u8; 32],
    session_ms: i64,
    sessions: Mutex<HashMap<[u8; 32], i64>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Auth {
    /// Checks `token` (surrounding whitespace ignored); sessions last `session_hours`.
    pub fn new(token: &Secret, session_hours: u64) -> Self {
        Self {
            token_digest: digest(token.expose().trim()),
            session_ms: i64::try_from(session_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `candidate` is the token (constant-time).
    pub fn token_ok(&self, candidate: &str) -> bool {
        let c = digest(candidate.trim());
        bool::from(c.ct_eq(&self.token_digest)) && !candidate.trim().is_empty()
    }

    /// Opens a session at `now_ms`: the cookie value (64 hex digits).
    ///
    /// # Errors
    /// The OS random source failed.
    pub fn open_session(&self, now_ms: i64) -> Result<String, otpgate_core::rng::RngUnavailable> {
        let id = hex::encode(crate::random::bytes(32)?);
        let mut s = self.lock();
        s.retain(|_, exp| *exp > now_ms);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) {
                s.remove(&oldest);
            }
        }
        s.insert(digest(&id), now_ms.saturating_add(self.session_ms));
        Ok(id)
    }

    /// Whether the cookie value names a live session.
    pub fn session_ok(&self, id: &str, now_ms: i64) -> bool {
        if id.len() != 64 {
            return false;
        }
        self.lock()
            .get(&digest(id))
            .is_some_and(|exp| *exp > now_ms)
    }

    /// Ends the session (nothing if unknown).
    pub fn close_session(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    /// Seconds a session lasts (the cookie's `Max-Age`).
    pub fn session_secs(&self) -> i64 {
        self.session_ms / 1000
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], i64>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value of a session (`value` empty and `max_age` 0: the removal).
pub fn set_cookie(value: &str, path: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_only_the_token_passes() {
        let a = Auth::new(&Secret::new("t".repeat(40)), 1);
        assert!(a.token_ok(&"t".repeat(40)));
        assert!(a.token_ok(&format!(" {} \n", "t".repeat(40))));
        assert!(!a.token_ok(&"t".repeat(39)));
        assert!(!a.token_ok(&"t".repeat(41)));
        assert!(!a.token_ok(""));
    }

    #[test]
    fn sessions_expire_and_close() {
        let a = Auth::new(&Secret::new("t".repeat(40)), 1);
        let id = a.open_session(0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(a.session_ok(&id, 3_599_999));
        assert!(!a.session_ok(&id, 3_600_000));
        let id2 = a.open_session(0).unwrap();
        assert_ne!(id, id2);
        a.close_session(&id2);
        assert!(!a.session_ok(&id2, 1));
        assert!(!a.session_ok("zz", 1));
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        assert_eq!(cookie_value("a=1; otpgate_admin=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("otpgate_admin_x=abc"), None);
        let c = set_cookie("abc", "/admin", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!set_cookie("abc", "/", 60, false).contains("Secure"));
    }
}

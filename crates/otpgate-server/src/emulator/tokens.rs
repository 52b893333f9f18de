//! Token auth as the sms-gate.app server does it (`android-sms-gateway/server`
//! `internal/sms-gateway/jwt`, `handlers/thirdparty/auth.go`, `handlers/middlewares/*`):
//!
//! - `POST /auth/token` (Basic, or a JWT with `tokens:manage`) `{ttl, scopes[]}` → 201
//!   `{id, token_type: "Bearer", access_token, refresh_token, expires_at}`: an HS256 JWT
//!   (`iss, sub, iat, exp, jti, user_id, scopes`) living `min(ttl, access_ttl)` (`ttl` 0 or
//!   absent: `access_ttl`), `exp` in whole seconds; a refresh token (scope `tokens:refresh`,
//!   `original_scopes`) living `refresh_ttl`.
//! - `POST /auth/token/refresh` with the *refresh token* as the bearer (exactly the scope
//!   `tokens:refresh`): a new pair whose access token lives `access_ttl` (the server's, not
//!   the first request's), the old refresh token revoked (used again: 401, a replay).
//! - `DELETE /auth/token/{jti}` (`tokens:manage`): revokes that token and the refresh token
//!   issued with it → 204.
//! - Every call: Basic gives the scope `all:any` (everything but the exact `tokens:refresh`);
//!   a bearer JWT must verify, be unexpired (`now > exp` is expired) and unrevoked, else 401;
//!   the route's scope missing → 403 `{"message": "scope required: <scope>"}`.
//! - `jwt_enabled = false` (a private server without `jwt.secret`): `/auth/*` answers 501,
//!   bearers 401.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::{Emulator, Resp, error, fmt_time, nanoid};

/// The scope Basic auth carries: every scope but an exact one.
pub(super) const SCOPE_ALL: &str = "all:any";
/// The refresh token's only scope.
pub(super) const SCOPE_REFRESH: &str = "tokens:refresh";
const ISSUER: &str = "otpgate-emulator";

/// A token the emulator issued (tests read them: [`Emulator::issued_tokens`]).
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The JWT id (`jti`; the `id` of the token answer for an access token).
    pub id: String,
    /// A refresh token (else an access token).
    pub refresh: bool,
    /// The scopes it grants (a refresh token: `tokens:refresh`).
    pub scopes: Vec<String>,
    /// When it expires, Unix ms (whole seconds).
    pub expires_ms: i64,
    /// Revoked (by `DELETE /auth/token/{jti}`, a refresh, or [`Emulator::revoke_all_tokens`]).
    pub revoked: bool,
    /// The JWT itself.
    pub token: String,
    parent: Option<String>,
}

/// One call to the API as the emulator's authentication saw it (tests count them).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthSeen {
    /// The method.
    pub method: String,
    /// The path under the API base (`/messages`, `/auth/token`, ...).
    pub path: String,
    /// `basic`, `bearer` or `none`.
    pub scheme: &'static str,
    /// The answer's status.
    pub status: u16,
}

/// The token service's state: the signing secret and every token issued.
pub(super) struct Tokens {
    secret: Vec<u8>,
    pub(super) issued: HashMap<String, IssuedToken>,
    pub(super) seen: Vec<AuthSeen>,
}

const MAX_SEEN: usize = 100_000;

impl Default for Tokens {
    fn default() -> Self {
        Self {
            secret: crate::random::bytes(32).unwrap_or_else(|_| nanoid(43).into_bytes()),
            issued: HashMap::new(),
            seen: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
    user_id: String,
    pub(super) scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_scopes: Option<Vec<String>>,
}

/// Who is calling: the scopes of its credentials (and the bearer JWT's claims).
#[derive(Clone, Debug)]
pub(super) struct Principal {
    pub(super) scopes: Vec<String>,
    pub(super) claims: Option<Claims>,
}

impl Principal {
    pub(super) fn basic() -> Self {
        Self {
            scopes: vec![SCOPE_ALL.to_owned()],
            claims: None,
        }
    }

    /// The server's `permissions.HasScope`: the scope itself, or `all:any` unless `exact`.
    pub(super) fn has(&self, scope: &str, exact: bool) -> bool {
        self.scopes
            .iter()
            .any(|s| s == scope || (!exact && s == SCOPE_ALL))
    }
}

/// The scope a route requires (the server's `RequireScope` on each handler), and whether
/// only that exact scope will do. The emulator's own `/_control` takes `all:any` (Basic).
pub(super) fn required_scope(method: &Method, path: &str) -> (&'static str, bool) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let scope = match (method.as_str(), segs.as_slice()) {
        ("POST", ["message" | "messages"]) => "messages:send",
        ("GET", ["message" | "messages"]) => "messages:list",
        ("POST", ["message" | "messages", "inbox", "export"] | ["inbox", "export"]) => {
            "messages:export"
        }
        ("GET", ["message" | "messages", _]) => "messages:read",
        ("DELETE", ["message" | "messages", _]) => "messages:cancel",
        ("GET", ["webhook" | "webhooks"]) => "webhooks:list",
        ("POST", ["webhook" | "webhooks"]) => "webhooks:write",
        ("DELETE", ["webhook" | "webhooks", _]) => "webhooks:delete",
        ("GET", ["device" | "devices"]) => "devices:list",
        ("DELETE", ["device" | "devices", _]) => "devices:delete",
        ("GET", ["settings"]) => "settings:read",
        ("PATCH" | "PUT", ["settings"]) => "settings:write",
        ("GET", ["logs"]) => "logs:read",
        ("GET", ["inbox"]) => "inbox:list",
        ("POST", ["inbox", "refresh"]) => "inbox:refresh",
        ("POST", ["auth", "token", "refresh"]) => return (SCOPE_REFRESH, true),
        ("POST", ["auth", "token"]) | ("DELETE", ["auth", "token", _]) => "tokens:manage",
        _ => SCOPE_ALL,
    };
    (scope, false)
}

fn mac(secret: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(data);
    m
}

impl Tokens {
    fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{header}.{payload}");
        let sig = B64.encode(mac(&self.secret, input.as_bytes()).finalize().into_bytes());
        format!("{input}.{sig}")
    }

    /// The claims of a JWT this emulator signed, still valid at `now_ms` and not revoked.
    pub(super) fn verify(&self, token: &str, now_ms: i64) -> Option<Claims> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        mac(&self.secret, format!("{h}.{p}").as_bytes())
            .verify_slice(&sig)
            .ok()?;
        let header: serde_json::Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header.get("alg").and_then(serde_json::Value::as_str) != Some("HS256") {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
        let now_s = now_ms.div_euclid(1000);
        // jwt/v5: expired when now is after exp; issued in the future is invalid.
        if claims.iss != ISSUER || now_ms > claims.exp * 1000 || claims.iat > now_s {
            return None;
        }
        if claims.user_id.trim().is_empty() {
            return None;
        }
        if self.issued.get(&claims.jti).is_some_and(|t| t.revoked) {
            return None;
        }
        Some(claims)
    }

    /// Issues an access token living `access_ms` and its refresh token living `refresh_ms`.
    fn pair(
        &mut self,
        user: &str,
        scopes: &[String],
        now_ms: i64,
        access_ms: i64,
        refresh_ms: i64,
    ) -> serde_json::Value {
        let iat = now_ms.div_euclid(1000);
        let claims = |exp_ms: i64, scopes: Vec<String>, original: Option<Vec<String>>| Claims {
            iss: ISSUER.to_owned(),
            sub: user.to_owned(),
            iat,
            // NumericDate: whole seconds, truncated.
            exp: exp_ms.div_euclid(1000),
            jti: nanoid(21),
            user_id: user.to_owned(),
            scopes,
            original_scopes: original,
        };
        let access = claims(now_ms + access_ms, scopes.to_vec(), None);
        let refresh = claims(
            now_ms + refresh_ms,
            vec![SCOPE_REFRESH.to_owned()],
            Some(scopes.to_vec()),
        );
        let (a, r) = (self.sign(&access), self.sign(&refresh));
        for (c, token, parent) in [
            (&access, &a, None),
            (&refresh, &r, Some(access.jti.clone())),
        ] {
            self.issued.insert(
                c.jti.clone(),
                IssuedToken {
                    id: c.jti.clone(),
                    refresh: parent.is_some(),
                    scopes: c.scopes.clone(),
                    expires_ms: c.exp * 1000,
                    revoked: false,
                    token: token.clone(),
                    parent,
                },
            );
        }
        json!({
            "id": access.jti,
            "token_type": "Bearer",
            "access_token": a,
            "refresh_token": r,
            "expires_at": fmt_time(access.exp * 1000),
        })
    }

    /// Revokes `jti` and the refresh token issued with it; how many were revoked.
    pub(super) fn revoke(&mut self, jti: &str) -> usize {
        let mut n = 0;
        for t in self.issued.values_mut() {
            if !t.revoked && (t.id == jti || t.parent.as_deref() == Some(jti)) {
                t.revoked = true;
                n += 1;
            }
        }
        n
    }

    pub(super) fn note(&mut self, seen: AuthSeen) {
        if self.seen.len() >= MAX_SEEN {
            self.seen.remove(0);
        }
        self.seen.push(seen);
    }
}

fn disabled() -> Resp {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "token service disabled, contact your administrator",
    )
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
}

/// `POST /auth/token`.
pub(super) async fn issue_token(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
    #[derive(Deserialize)]
    struct TokenRequest {
        #[serde(default)]
        ttl: u64,
        #[serde(default)]
        scopes: Option<Vec<String>>,
    }
    let knobs = emu.knobs();
    if !knobs.jwt_enabled {
        return disabled();
    }
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to parse request: {e}"),
            );
        }
    };
    let scopes = match req.scopes {
        Some(s) if !s.is_empty() && s.iter().all(|s| !s.is_empty()) => s,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "scopes: at least one non-empty scope required",
            );
        }
    };
    let max = secs_ms(knobs.jwt_access_ttl_secs);
    let ttl = if req.ttl == 0 {
        max
    } else {
        secs_ms(req.ttl).min(max)
    };
    let now = emu.clock.now_ms();
    let user = emu.username.clone();
    let answer = emu.lock().tokens.pair(
        &user,
        &scopes,
        now,
        ttl,
        secs_ms(knobs.jwt_refresh_ttl_secs),
    );
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// `POST /auth/token/refresh`, the refresh token as the bearer.
pub(super) async fn refresh_token(
    State(emu): State<Arc<Emulator>>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Resp {
    let knobs = emu.knobs();
    if !knobs.jwt_enabled {
        return disabled();
    }
    let unauthorized = || error(StatusCode::UNAUTHORIZED, "Unauthorized");
    let Some(claims) = who.claims else {
        return unauthorized();
    };
    let Some(original) = claims.original_scopes.filter(|s| !s.is_empty()) else {
        return unauthorized();
    };
    let now = emu.clock.now_ms();
    let mut g = emu.lock();
    match g.tokens.issued.get_mut(&claims.jti) {
        // Rotation: the refresh token is used up (a second use is a replay).
        Some(t) if t.refresh && !t.revoked && t.expires_ms >= now => t.revoked = true,
        _ => return unauthorized(),
    }
    let answer = g.tokens.pair(
        &claims.user_id,
        &original,
        now,
        secs_ms(knobs.jwt_access_ttl_secs),
        secs_ms(knobs.jwt_refresh_ttl_secs),
    );
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// `DELETE /auth/token/{jti}`.
pub(super) async fn revoke_token(
    State(emu): State<Arc<Emulator>>,
    Path(jti): Path<String>,
) -> Resp {
    if !emu.knobs().jwt_enabled {
        return disabled();
    }
    emu.lock().tokens.revoke(&jti);
    StatusCode::NO_CONTENT.into_response()
}

impl Emulator {
    /// Every token issued so far, access and refresh (tests).
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.lock().tokens.issued.values().cloned().collect()
    }

    /// Revokes every live token, as the account owner can (the server's `RevokeByUser`);
    /// how many.
    pub fn revoke_all_tokens(&self) -> usize {
        let mut g = self.lock();
        let mut n = 0;
        for t in g.tokens.issued.values_mut() {
            if !t.revoked {
                t.revoked = true;
                n += 1;
            }
        }
        n
    }

    /// The API calls seen so far with their credentials' scheme and answer (tests count the
    /// Basic-auth ones).
    pub fn auth_log(&self) -> Vec<AuthSeen> {
        self.lock().tokens.seen.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_server_routes() {
        let r = |m: Method, p: &str| required_scope(&m, p);
        assert_eq!(r(Method::POST, "/messages"), ("messages:send", false));
        assert_eq!(r(Method::POST, "/message"), ("messages:send", false));
        assert_eq!(r(Method::GET, "/messages/abc"), ("messages:read", false));
        assert_eq!(r(Method::GET, "/messages"), ("messages:list", false));
        assert_eq!(r(Method::POST, "/webhooks"), ("webhooks:write", false));
        assert_eq!(r(Method::PATCH, "/settings"), ("settings:write", false));
        assert_eq!(
            r(Method::POST, "/auth/token/refresh"),
            (SCOPE_REFRESH, true)
        );
        assert_eq!(r(Method::DELETE, "/auth/token/x"), ("tokens:manage", false));
        assert_eq!(r(Method::GET, "/_control"), (SCOPE_ALL, false));
        let basic = Principal::basic();
        assert!(basic.has("messages:send", false));
        assert!(!basic.has(SCOPE_REFRESH, true));
    }

    #[test]
    fn tokens_verify_expire_and_revoke() {
        let mut t = Tokens::default();
        let a = t.pair("u", &["messages:send".into()], 10_500, 2_000, 60_000);
        let tok = a["access_token"].as_str().unwrap_or_default().to_owned();
        // exp = trunc(12.5 s) = 12 s: valid at 12.000, expired after.
        assert!(t.verify(&tok, 12_000).is_some());
        assert!(t.verify(&tok, 12_001).is_none());
        let c = t.verify(&tok, 11_000).map(|c| c.scopes);
        assert_eq!(c, Some(vec!["messages:send".to_owned()]));
        let mut forged = tok.clone();
        forged.push('A');
        assert!(t.verify(&forged, 11_000).is_none());
        assert_eq!(t.revoke(a["id"].as_str().unwrap_or_default()), 2);
        assert!(t.verify(&tok, 11_000).is_none());
        let r = a["refresh_token"].as_str().unwrap_or_default();
        assert!(t.verify(r, 11_000).is_none());
    }
}

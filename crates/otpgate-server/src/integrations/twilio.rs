//! A Twilio Verify-compatible API: the subset verification flows use, so an application on
//! the official Twilio SDK switches by pointing the SDK's Verify base URL at otpgate.
//!
//! - `POST /v2/Services/{ServiceSid}/Verifications` (form: `To`, `Channel=sms`, `Locale`):
//!   201 with the verification. As in Twilio, a number with a pending verification gets that
//!   verification back (same SID) and no second SMS.
//! - `POST /v2/Services/{ServiceSid}/VerificationCheck` (form: `To` or `VerificationSid`,
//!   `Code`): 200 with `status` `approved` (`valid: true`), or `pending` / `max_attempts_reached`
//!   (`valid: false`) for a wrong code.
//! - `GET /v2/Services/{ServiceSid}/Verifications/{Sid}`: the verification.
//! - `POST /v2/Services/{ServiceSid}/Verifications/{Sid}` (form: `Status=canceled`).
//!
//! HTTP Basic auth with the configured account SID and auth token. A service SID maps to an
//! app. Errors are Twilio's objects `{"code", "message", "more_info", "status"}`.
//!
//! Verification SIDs are otpgate's verification ids written the Twilio way: `VE` + the 16
//! random bytes of the id in hex, so no mapping is stored. The pending verification of a
//! number is found through a store key per service and number (`claim`/`put`), so it is found
//! from every issuer instance sharing the store.
//!
//! # One pending verification per number
//! A create claims the number's key (set-if-absent, with a "creating" marker). When the key
//! names a verification that is finished (approved, canceled, expired, out of attempts), the
//! create does not delete the key (a delete is not a compare-and-delete: it could remove a
//! concurrent create's marker); it claims the successor key of that verification,
//! `…:after:<id>`, which only one create can win. The winner starts the new verification and
//! writes its id under the successor key and then the number's key; the losers wait for it
//! and answer the same verification. Only the holder of a key's marker ever deletes it (when
//! its start is refused). A check by `To` reads the number's key through a claim too: on an
//! absent key it leaves a marker that expires after 300 ms and is never deleted (a create
//! meanwhile waits it out).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use otpgate_core::code::ct_eq;
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::Status;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::config::{TwilioVerify, is_sid};
use super::{IntegrationState, Meta};
use crate::api::error::PeerShaped;
use crate::api::openapi::{
    TwilioCheckFormDoc, TwilioCreateFormDoc, TwilioErrorDoc, TwilioUpdateFormDoc,
    TwilioVerificationDoc,
};
use crate::clock::rfc3339;
use crate::service::{RequestMeta, ServiceError, StartInput};
use crate::store::Record;

/// The channels Twilio knows; only `sms` is served here.
const KNOWN_CHANNELS: &[&str] = &["sms", "call", "email", "whatsapp", "sna", "auto", "rcs"];
/// Parameters that would put the caller's text or code in the SMS: refused.
const REFUSED_PARAMS: &[&str] = &[
    "CustomMessage",
    "CustomCode",
    "SendDigits",
    "TemplateSid",
    "TemplateCustomSubstitutions",
];
/// The marker a create leaves on a number's key while it starts a verification.
const CREATING: &str = "creating";
/// The marker a read of an absent key leaves (the store has no plain read): left to expire
/// after [`PEEK_TTL_MS`], never deleted, so no read removes a create's marker.
const PEEKING: &str = "peeking";
/// How long [`PEEKING`] stays.
const PEEK_TTL_MS: i64 = 300;
/// How long a create waits for a concurrent create of the same number.
const WAIT_FOR_CREATE: Duration = Duration::from_secs(4);
/// The most successor keys a create follows (one per finished verification whose
/// successor has not reached the number's key yet): beyond, the store is not as written.
const MAX_HOPS: usize = 16;

/// A Twilio error answer.
pub fn error(status: StatusCode, code: u32, message: &str, retry_after: Option<u64>) -> Response {
    let mut res = (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response();
    if let Some(secs) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    res.extensions_mut().insert(PeerShaped);
    res
}

fn invalid(what: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        60200,
        &format!("Invalid parameter: {what}"),
        None,
    )
}

fn not_found(path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {path} was not found"),
        None,
    )
}

/// The verification SID of an otpgate verification id (`v_` + 22 base64url characters).
pub fn sid_of(id: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(id.strip_prefix("v_")?).ok()?;
    (bytes.len() == 16).then(|| format!("VE{}", hex::encode(bytes)))
}

/// The otpgate verification id of a verification SID (`VE` + 32 lower-case hex digits).
pub fn id_of(sid: &str) -> Option<String> {
    if !is_sid(sid, "VE") {
        return None;
    }
    let bytes = hex::decode(&sid[2..]).ok()?;
    Some(format!("v_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Whether the request carries the account's Basic credentials (compared as SHA-256
/// digests, in constant time).
fn authorized(tw: &TwilioVerify, headers: &HeaderMap) -> bool {
    let Some(b64) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(b64.trim()) else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(&decoded).into();
    ct_eq(&digest, &tw.credentials)
}

/// Authentication, then the service's app; else the Twilio error to answer.
// The error is the answer itself, built once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn admit<'a>(
    state: &'a IntegrationState,
    headers: &HeaderMap,
    service: &str,
) -> Result<(&'a TwilioVerify, &'a str), Response> {
    let Some(tw) = state.integrations.twilio.as_ref() else {
        return Err(not_found("/Services"));
    };
    if !authorized(tw, headers) {
        return Err(error(StatusCode::UNAUTHORIZED, 20003, "Authenticate", None));
    }
    let app = tw
        .services
        .iter()
        .find(|(sid, _)| sid == service)
        .map(|(_, app)| app.as_str())
        .ok_or_else(|| not_found(&format!("/Services/{service}")))?;
    Ok((tw, app))
}

/// A form body as (name, value) pairs; a name given twice is refused.
#[allow(clippy::result_large_err)]
fn form(body: &Bytes) -> Result<Vec<(String, String)>, Response> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| invalid("the body is not form-encoded"))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(o, _)| o == k) {
            return Err(invalid(&format!("{k} given twice")));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Twilio's name of a status.
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Cancelled => "canceled",
        Status::Expired => "expired",
        Status::MaxAttemptsReached => "max_attempts_reached",
        _ => "failed",
    }
}

/// The verification resource of `record` as Twilio writes it.
fn resource(
    state: &IntegrationState,
    tw: &TwilioVerify,
    service: &str,
    record: &Record,
    status: Status,
) -> Value {
    let sid = sid_of(&record.id).unwrap_or_default();
    let created = rfc3339(record.created_at_ms);
    let updated = rfc3339(record.delivery.updated_at_ms.max(record.created_at_ms));
    let attempts: Vec<Value> = (1..=record.sends)
        .map(|n| {
            json!({
                "attempt_sid": format!("VL{}{n:02x}", &sid[2..32]),
                "channel": "sms",
                "time": if n == record.sends { updated.clone() } else { created.clone() },
            })
        })
        .collect();
    let base = state.service.issuer().trim_end_matches('/');
    json!({
        "sid": sid,
        "service_sid": service,
        "account_sid": tw.account_sid,
        "to": record.phone,
        "channel": "sms",
        "status": status_name(status),
        "valid": status == Status::Approved,
        "lookup": {"carrier": null},
        "amount": null,
        "payee": null,
        "send_code_attempts": attempts,
        "date_created": created,
        "date_updated": updated,
        "sna": null,
        "url": format!("{base}/v2/Services/{service}/Verifications/{sid}"),
    })
}

fn answer(status: StatusCode, v: Value) -> Response {
    let mut res = (status, Json(v)).into_response();
    res.extensions_mut().insert(PeerShaped);
    res
}

/// The Twilio error for a refusal of the service.
fn refusal(e: &ServiceError, to: &str) -> Response {
    let retry = e.retry_after();
    match e {
        ServiceError::InvalidPhone(_) | ServiceError::NotAPhoneNumber => {
            invalid(&format!("To ({to}) is not a valid phone number"))
        }
        ServiceError::InvalidLocale => invalid("Locale"),
        ServiceError::InvalidCode => invalid("Code"),
        ServiceError::DestinationNotAllowed => error(
            StatusCode::FORBIDDEN,
            60410,
            "Verification delivery attempt blocked",
            None,
        ),
        ServiceError::RateLimited { scope: "phone", .. } | ServiceError::TooManySends => error(
            StatusCode::TOO_MANY_REQUESTS,
            60203,
            "Max send attempts reached",
            retry,
        ),
        ServiceError::RateLimited { .. } => error(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests",
            retry,
        ),
        ServiceError::NoAttemptsLeft => error(
            StatusCode::TOO_MANY_REQUESTS,
            60202,
            "Max check attempts reached",
            None,
        ),
        ServiceError::Internal(cause) => {
            tracing::error!(%cause, "twilio verify: request failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
                None,
            )
        }
        ServiceError::NoCapacity { .. }
        | ServiceError::GatewayUnavailable
        | ServiceError::Store(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
            retry,
        ),
        other => error(StatusCode::BAD_REQUEST, 60200, &other.message(), None),
    }
}

/// The store key holding the pending verification of a number in a service.
fn to_key(service: &str, phone: &PhoneNumber) -> String {
    format!("twilio:to:{service}:{}", phone.as_str())
}

/// The key a create claims to replace the finished verification `id` of the number whose
/// key is `to_key`: one create wins it.
fn successor_key(to_key: &str, id: &str) -> String {
    format!("{to_key}:after:{id}")
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        20503,
        "Service Unavailable",
        Some(1),
    )
}

/// Reads a key through `claim` (the store has no plain read): the live value, or `None`
/// (then [`PEEKING`] holds the key for [`PEEK_TTL_MS`]: a create waits it out).
async fn peek(state: &IntegrationState, key: &str) -> Result<Option<String>, ServiceError> {
    let now = state.service.clock().now_ms();
    Ok(state
        .service
        .store()
        .claim(key, PEEKING, PEEK_TTL_MS, now)
        .await?)
}

/// Whether a key's value is a marker rather than a verification id.
fn is_marker(v: &str) -> bool {
    v == CREATING || v == PEEKING
}

/// Starts a verification, or answers the pending one of the same number.
#[utoipa::path(post, path = "/v2/Services/{ServiceSid}/Verifications", tag = "integrations",
    operation_id = "twilio_create_verification",
    security(("twilio_basic" = [])),
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA` + 32 lower-case hex digits)")),
    request_body(content = TwilioCreateFormDoc, content_type = "application/x-www-form-urlencoded",
        description = "`To` (E.164), `Channel` (`sms`; another Twilio channel is 400 60223), `Locale` (optional). `CustomMessage`, `CustomCode`, `SendDigits`, `TemplateSid`, `TemplateCustomSubstitutions` are refused (60200); other Twilio parameters are ignored"),
    responses(
        (status = 201, description = "The verification (the pending one of this number when there is one: same SID, no second SMS)", body = TwilioVerificationDoc),
        (status = 400, description = "Twilio error 60200 (invalid parameter) or 60223 (channel not available)", body = TwilioErrorDoc),
        (status = 401, description = "Twilio error 20003 (HTTP Basic: account SID and auth token)", body = TwilioErrorDoc),
        (status = 403, description = "Twilio error 60410: the destination policy refused the number", body = TwilioErrorDoc),
        (status = 404, description = "Twilio error 20404: unknown service, or the API is not configured (`[integrations.twilio_verify]`)", body = TwilioErrorDoc),
        (status = 413, description = "Twilio error 60200: body over 64 KiB", body = TwilioErrorDoc),
        (status = 429, description = "Twilio error 60203 (the number's send budget) or 20429 (prefix or global budget), `Retry-After`", body = TwilioErrorDoc),
        (status = 503, description = "Twilio error 20503 (store or phones unavailable), `Retry-After`", body = TwilioErrorDoc),
    ))]
pub(crate) async fn create(
    State(state): State<IntegrationState>,
    Meta(meta): Meta,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tw, app) = match admit(&state, &headers, &service) {
        Ok(a) => a,
        Err(res) => return res,
    };
    let pairs = match form(&body) {
        Ok(p) => p,
        Err(res) => return res,
    };
    if let Some(p) = REFUSED_PARAMS.iter().find(|p| param(&pairs, p).is_some()) {
        return invalid(&format!(
            "{p} is not supported: the SMS is the app's template"
        ));
    }
    let Some(to) = param(&pairs, "To").filter(|t| !t.is_empty()) else {
        return invalid("To is required");
    };
    match param(&pairs, "Channel") {
        None | Some("") => return invalid("Channel is required"),
        Some("sms") => {}
        Some(c) if KNOWN_CHANNELS.contains(&c) => {
            return error(
                StatusCode::BAD_REQUEST,
                60223,
                &format!("Delivery channel disabled: {}", c.to_ascii_uppercase()),
                None,
            );
        }
        Some(_) => return invalid("Channel"),
    }
    let locale = param(&pairs, "Locale")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let Ok(phone) = PhoneNumber::parse(to) else {
        return invalid(&format!("To ({to}) is not a valid phone number"));
    };
    let number_key = to_key(&service, &phone);
    let svc = &state.service;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_CREATE;
    // The key claimed next: the number's, then the successor of each finished verification.
    let mut key = number_key.clone();
    let mut hops = 0;
    loop {
        let now = svc.clock().now_ms();
        let claimed = match svc.store().claim(&key, CREATING, 30_000, now).await {
            Ok(c) => c,
            Err(e) => return refusal(&ServiceError::Store(e), to),
        };
        match claimed {
            // A create of the same number is under way (its verification is this one's), or
            // a check by To just read the absent key.
            Some(v) if is_marker(&v) => {
                if tokio::time::Instant::now() >= deadline {
                    return unavailable();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(id) => match svc.record(&id).await {
                Ok(r) if r.app == app && r.status(now) == Status::Pending => {
                    let v = resource(&state, tw, &service, &r, Status::Pending);
                    return answer(StatusCode::CREATED, v);
                }
                // Finished: the one create that wins its successor key replaces it.
                Ok(_) | Err(ServiceError::NotFound) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        tracing::warn!(
                            "twilio verify: a number's chain of verifications is too long"
                        );
                        return unavailable();
                    }
                    key = successor_key(&number_key, &id);
                }
                Err(e) => return refusal(&e, to),
            },
            None => {
                let keys = (key.as_str(), number_key.as_str());
                return start(&state, (tw, app, &service), keys, (to, locale), &meta).await;
            }
        }
    }
}

/// The start of a create that claimed `claimed` (the number's key `number_key`, or the
/// successor key of its finished verification).
async fn start(
    state: &IntegrationState,
    (tw, app, service): (&TwilioVerify, &str, &str),
    (claimed, number_key): (&str, &str),
    (to, locale): (&str, Option<String>),
    meta: &RequestMeta,
) -> Response {
    let svc = &state.service;
    let input = StartInput {
        phone: to.to_owned(),
        app: Some(app.to_owned()),
        locale,
        pow: None,
    };
    let started = match svc.start(input, meta).await {
        Ok(v) => v,
        Err(e) => {
            // This create holds the marker: freeing it lets the next create try.
            if let Err(se) = svc.store().forget(claimed).await {
                tracing::warn!(error = %se, "twilio verify: could not free a number's key");
            }
            return refusal(&e, to);
        }
    };
    let now = svc.clock().now_ms();
    let record = match svc.record(&started.id).await {
        Ok(r) => r,
        Err(e) => return refusal(&e, to),
    };
    let ttl = (record.expires_at_ms - now).max(1_000);
    // The claimed key first (the creates waiting on it), then the number's key (which later
    // creates and checks by To read); a successor key stays until the verification expires,
    // so a create that still finds the finished one under the number's key finds this one.
    let mut keys = vec![claimed];
    if claimed != number_key {
        keys.push(number_key);
    }
    for key in keys {
        if let Err(e) = svc.store().put(key, &record.id, ttl, now).await {
            // The SMS left: answer it; a later create may then start a second one.
            tracing::warn!(error = %e, "twilio verify: could not keep the number's verification");
        }
    }
    answer(
        StatusCode::CREATED,
        resource(state, tw, service, &record, Status::Pending),
    )
}

/// Checks a code, by verification SID or by the number's pending verification.
#[utoipa::path(post, path = "/v2/Services/{ServiceSid}/VerificationCheck", tag = "integrations",
    operation_id = "twilio_check_verification",
    security(("twilio_basic" = [])),
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA` + 32 lower-case hex digits)")),
    request_body(content = TwilioCheckFormDoc, content_type = "application/x-www-form-urlencoded",
        description = "`Code`, and `To` or `VerificationSid`"),
    responses(
        (status = 200, description = "`status` `approved` and `valid: true`; for a wrong code `pending` (or `max_attempts_reached` on the last attempt) and `valid: false`", body = TwilioVerificationDoc),
        (status = 400, description = "Twilio error 60200", body = TwilioErrorDoc),
        (status = 401, description = "Twilio error 20003", body = TwilioErrorDoc),
        (status = 404, description = "Twilio error 20404: no pending verification (unknown, approved, expired or canceled), unknown service, or the API is not configured", body = TwilioErrorDoc),
        (status = 413, description = "Twilio error 60200: body over 64 KiB", body = TwilioErrorDoc),
        (status = 429, description = "Twilio error 60202: max check attempts reached; 20429: the number is locked after too many wrong codes", body = TwilioErrorDoc),
        (status = 503, description = "Twilio error 20503", body = TwilioErrorDoc),
    ))]
pub(crate) async fn check(
    State(state): State<IntegrationState>,
    Meta(meta): Meta,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tw, app) = match admit(&state, &headers, &service) {
        Ok(a) => a,
        Err(res) => return res,
    };
    let pairs = match form(&body) {
        Ok(p) => p,
        Err(res) => return res,
    };
    let path = format!("/Services/{service}/VerificationCheck");
    let Some(code) = param(&pairs, "Code").filter(|c| !c.is_empty()) else {
        return invalid("Code is required");
    };
    let svc = &state.service;
    let id = match (param(&pairs, "VerificationSid"), param(&pairs, "To")) {
        (Some(sid), _) if !sid.is_empty() => match id_of(sid) {
            Some(id) => id,
            None => return not_found(&path),
        },
        (_, Some(to)) if !to.is_empty() => {
            let Ok(phone) = PhoneNumber::parse(to) else {
                return invalid(&format!("To ({to}) is not a valid phone number"));
            };
            let key = to_key(&service, &phone);
            match peek(&state, &key).await {
                Ok(Some(id)) if !is_marker(&id) => id,
                Ok(_) => return not_found(&path),
                Err(e) => return refusal(&e, to),
            }
        }
        _ => return invalid("Either a 'To' or a 'VerificationSid' must be specified"),
    };
    match svc.record(&id).await {
        Ok(r) if r.app == app => {}
        Ok(_) | Err(ServiceError::NotFound) => return not_found(&path),
        Err(e) => return refusal(&e, ""),
    }
    let outcome = svc.check_trusted(&id, code, &meta).await;
    // An approved verification stays under the number's key: the next create replaces it
    // through its successor key (see the module's rules).
    let status = match outcome {
        Ok(_) => Status::Approved,
        Err(ServiceError::WrongCode { attempts_left: 0 }) => Status::MaxAttemptsReached,
        Err(ServiceError::WrongCode { .. }) => Status::Pending,
        Err(
            ServiceError::NotFound
            | ServiceError::Expired
            | ServiceError::Cancelled
            | ServiceError::AlreadyUsed,
        ) => return not_found(&path),
        Err(e) => return refusal(&e, ""),
    };
    match svc.record(&id).await {
        Ok(r) => answer(StatusCode::OK, resource(&state, tw, &service, &r, status)),
        Err(e) => refusal(&e, ""),
    }
}

/// A verification.
#[utoipa::path(get, path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", tag = "integrations",
    operation_id = "twilio_fetch_verification",
    security(("twilio_basic" = [])),
    params(
        ("ServiceSid" = String, Path, description = "A configured service SID (`VA` + 32 lower-case hex digits)"),
        ("Sid" = String, Path, description = "The verification SID (`VE` + 32 lower-case hex digits)"),
    ),
    responses(
        (status = 200, description = "The verification with its status (`pending`, `approved`, `canceled`, `max_attempts_reached`, `expired`), kept an hour after its code expired", body = TwilioVerificationDoc),
        (status = 401, description = "Twilio error 20003", body = TwilioErrorDoc),
        (status = 404, description = "Twilio error 20404 (unknown verification or service, or the API is not configured)", body = TwilioErrorDoc),
        (status = 503, description = "Twilio error 20503", body = TwilioErrorDoc),
    ))]
pub(crate) async fn fetch(
    State(state): State<IntegrationState>,
    Path((service, sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (tw, app) = match admit(&state, &headers, &service) {
        Ok(a) => a,
        Err(res) => return res,
    };
    let path = format!("/Services/{service}/Verifications/{sid}");
    let Some(id) = id_of(&sid) else {
        return not_found(&path);
    };
    let svc = &state.service;
    match svc.record(&id).await {
        Ok(r) if r.app == app => {
            let status = r.status(svc.clock().now_ms());
            answer(StatusCode::OK, resource(&state, tw, &service, &r, status))
        }
        Ok(_) | Err(ServiceError::NotFound) => not_found(&path),
        Err(e) => refusal(&e, ""),
    }
}

/// Cancels a verification (`Status=canceled`).
#[utoipa::path(post, path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", tag = "integrations",
    operation_id = "twilio_cancel_verification",
    security(("twilio_basic" = [])),
    params(
        ("ServiceSid" = String, Path, description = "A configured service SID (`VA` + 32 lower-case hex digits)"),
        ("Sid" = String, Path, description = "The verification SID (`VE` + 32 lower-case hex digits)"),
    ),
    request_body(content = TwilioUpdateFormDoc, content_type = "application/x-www-form-urlencoded",
        description = "`Status=canceled` (`approved`, Twilio's manual approval, is refused with 60200)"),
    responses(
        (status = 200, description = "The verification, `canceled`", body = TwilioVerificationDoc),
        (status = 400, description = "Twilio error 60200", body = TwilioErrorDoc),
        (status = 401, description = "Twilio error 20003", body = TwilioErrorDoc),
        (status = 404, description = "Twilio error 20404 (unknown, or already approved; unknown service, or the API is not configured)", body = TwilioErrorDoc),
        (status = 413, description = "Twilio error 60200: body over 64 KiB", body = TwilioErrorDoc),
        (status = 503, description = "Twilio error 20503", body = TwilioErrorDoc),
    ))]
pub(crate) async fn update(
    State(state): State<IntegrationState>,
    Meta(meta): Meta,
    Path((service, sid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tw, app) = match admit(&state, &headers, &service) {
        Ok(a) => a,
        Err(res) => return res,
    };
    let pairs = match form(&body) {
        Ok(p) => p,
        Err(res) => return res,
    };
    match param(&pairs, "Status") {
        Some("canceled") => {}
        Some("approved") => return invalid("Status=approved is not supported (only canceled)"),
        _ => return invalid("Status must be canceled"),
    }
    let path = format!("/Services/{service}/Verifications/{sid}");
    let Some(id) = id_of(&sid) else {
        return not_found(&path);
    };
    let svc = &state.service;
    match svc.record(&id).await {
        Ok(r) if r.app == app => {}
        Ok(_) | Err(ServiceError::NotFound) => return not_found(&path),
        Err(e) => return refusal(&e, ""),
    }
    match svc.cancel(&id, &meta).await {
        Ok(_) => {}
        Err(ServiceError::NotFound | ServiceError::AlreadyUsed) => return not_found(&path),
        Err(e) => return refusal(&e, ""),
    }
    // A canceled verification stays under the number's key: the next create replaces it
    // through its successor key (see the module's rules).
    match svc.record(&id).await {
        Ok(r) => {
            let status = r.status(svc.clock().now_ms());
            answer(StatusCode::OK, resource(&state, tw, &service, &r, status))
        }
        Err(e) => refusal(&e, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_ids_written_the_twilio_way() {
        let id = crate::random::id("v_").unwrap();
        let sid = sid_of(&id).unwrap();
        assert!(is_sid(&sid, "VE"), "{sid}");
        assert_eq!(id_of(&sid).as_deref(), Some(id.as_str()));
        assert_eq!(id_of("VE0000000000000000000000000000000G"), None);
        assert_eq!(id_of("VA00000000000000000000000000000000"), None);
        assert_eq!(sid_of("m_AAAAAAAAAAAAAAAAAAAAAA"), None);
    }

    #[test]
    fn forms_refuse_repeated_names() {
        assert!(form(&Bytes::from_static(b"To=%2B1&Channel=sms")).is_ok());
        assert!(form(&Bytes::from_static(b"To=1&To=2")).is_err());
    }
}

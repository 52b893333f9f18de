//! `Idempotency-Key` on the requests that send an SMS (start, resend): a retry never sends
//! twice.
//!
//! - The same key with the same request (path and body, compared by a digest of the parsed
//!   body) within [`KEEP_MS`] gets the first answer again, marked `Idempotent-Replayed: true`,
//!   and nothing is sent.
//! - The same key with another request is 422 `idempotency_key_reused`.
//! - Only a successful answer is kept: after a refusal (a 428 proof-of-work challenge, a 429,
//!   a 503) the key is free again, so the retry with the solution goes through.
//! - While the first request runs, a duplicate gets 409 `conflict` with `Retry-After: 1`.
//!
//! The claim and the kept answer live in the store ([`Store::claim`]), so they hold across
//! issuer instances. Keys are the caller's secrets (random, one per operation): the kept
//! answer is given to whoever presents the key and the same request.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otpgate_core::wire::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::ApiError;
use crate::service::ServiceError;
use crate::store::Store;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer's header on a replay.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long an answer is kept, ms (24 h).
pub const KEEP_MS: i64 = 24 * 3_600_000;
/// How long a claim holds while its request runs, ms.
const CLAIM_MS: i64 = 60_000;

/// A successful answer, as it is kept and replayed.
#[derive(Debug)]
pub struct Answer {
    /// 200 or 201.
    pub status: StatusCode,
    /// The JSON body.
    pub body: String,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            res.headers_mut().insert(header::LOCATION, loc);
        }
        res
    }
}

/// What the store keeps under a key: the request's digest, and the answer once there is one
/// (`status` 0 while the request runs).
#[derive(Serialize, Deserialize)]
struct Kept {
    request: String,
    status: u16,
    body: String,
    location: Option<String>,
}

/// The key of a request, if it carries one: 1 to 255 visible ASCII characters.
///
/// # Errors
/// 400 `invalid_request` for a malformed key (or several).
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "Idempotency-Key: one value of 1 to 255 visible ASCII characters",
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let key = first.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// Runs `op` once per key: the kept answer for a repeated request, the refusal for a reused
/// key, else `op`'s answer (kept when it succeeded). `scope` names the operation (and its
/// verification), `request` is the canonical form of the request (its body re-serialised).
///
/// # Errors
/// `op`'s error; 422 `idempotency_key_reused`; 409 `conflict` while the first runs; 503 when
/// the store cannot claim the key.
pub async fn once<F>(
    store: &dyn Store,
    now_ms: i64,
    key: Option<String>,
    (scope, request): (&str, &[u8]),
    op: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<Answer, ApiError>>,
{
    let Some(key) = key else {
        return op.await.map(IntoResponse::into_response);
    };
    let digest = hex::encode(Sha256::digest([scope.as_bytes(), b"\n", request].concat()));
    let store_key = format!(
        "idem:{}",
        hex::encode(Sha256::digest(format!("{scope}\n{key}")))
    );
    let claim = serde_json::to_string(&Kept {
        request: digest.clone(),
        status: 0,
        body: String::new(),
        location: None,
    })
    .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))?;
    let existing = store
        .claim(&store_key, &claim, CLAIM_MS, now_ms)
        .await
        .map_err(|e| ApiError::from(ServiceError::Store(e)))?;
    if let Some(text) = existing {
        return replay(&text, &digest);
    }
    match op.await {
        Ok(answer) => {
            let kept = Kept {
                request: digest,
                status: answer.status.as_u16(),
                body: answer.body.clone(),
                location: answer.location.clone(),
            };
            match serde_json::to_string(&kept) {
                Ok(text) => {
                    if let Err(e) = store.put(&store_key, &text, KEEP_MS, now_ms).await {
                        // The SMS went out: answer it; a retry may then get 409 until the
                        // claim lapses, never a second send.
                        tracing::warn!(error = %e, "idempotency: could not keep the answer");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "idempotency: could not encode the answer"),
            }
            Ok(answer.into_response())
        }
        Err(e) => {
            // Nothing kept for a refusal: the key is free for the retry.
            if let Err(se) = store.forget(&store_key).await {
                tracing::warn!(error = %se, "idempotency: could not free a key");
            }
            Err(e)
        }
    }
}

/// The answer to a request whose key is already claimed.
fn replay(text: &str, digest: &str) -> Result<Response, ApiError> {
    let kept: Kept = serde_json::from_str(text)
        .map_err(|e| ApiError::from(ServiceError::Internal(format!("idempotency record: {e}"))))?;
    if !otpgate_core::code::ct_eq(kept.request.as_bytes(), digest.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for another request",
        ));
    }
    let Ok(status) = StatusCode::from_u16(kept.status) else {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "a request with this Idempotency-Key is in progress",
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let mut res = Answer {
        status,
        body: kept.body,
        location: kept.location,
    }
    .into_response();
    res.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(key_of(&headers(&[])).unwrap(), None);
        assert_eq!(
            key_of(&headers(&["k-1_AZ.~"])).unwrap().as_deref(),
            Some("k-1_AZ.~")
        );
        let long = "x".repeat(256);
        for bad in [&["a b"][..], &[""], &[long.as_str()], &["a", "b"]] {
            let e = key_of(&headers(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}

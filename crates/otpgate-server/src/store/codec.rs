//! The stored form of a [`Record`]: flat JSON with a format number, shared by the embedded
//! and the Redis backends (the Redis scripts read and write the same fields with cjson).
//!
//! Format 1: `{"fmt":1,"id":..,"app":..,"phone":..,"locale":..|null,"outcome":"open",
//! "digest":"<hex>","key_id":..,"version":n,"created_at_ms":n,"expires_at_ms":n,
//! "attempts":n,"max_attempts":n,"sends":n,"resend_at_ms":n,"d_state":"queued",
//! "d_gateway":..|null,"d_message_id":..|null,"d_updated_at_ms":n,"d_detail":..|null,
//! "test_number":bool,"trusted":bool}` (`trusted` may be absent: false). The digest is hex so that no field is a JSON array (cjson cannot
//! tell an empty array from an empty object). Times must stay below 10^14 ms (cjson prints
//! 14 significant digits), which is the year 5138.

use otpgate_core::wire::DeliveryState;
use serde::{Deserialize, Serialize};

use super::{DeliveryRecord, Outcome, Record, StoreError, StoredCode};

/// The current format number.
pub(crate) const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Wire {
    fmt: u32,
    id: String,
    app: String,
    phone: String,
    #[serde(default)]
    locale: Option<String>,
    outcome: Outcome,
    digest: String,
    key_id: String,
    version: u32,
    created_at_ms: i64,
    expires_at_ms: i64,
    attempts: u32,
    max_attempts: u32,
    sends: u32,
    resend_at_ms: i64,
    d_state: DeliveryState,
    #[serde(default)]
    d_gateway: Option<String>,
    #[serde(default)]
    d_message_id: Option<String>,
    d_updated_at_ms: i64,
    #[serde(default)]
    d_detail: Option<String>,
    test_number: bool,
    /// Absent in records written before it existed: anonymous.
    #[serde(default)]
    trusted: bool,
}

/// Encodes a record (format [`FORMAT`]).
pub(crate) fn encode(r: &Record) -> String {
    let w = Wire {
        fmt: FORMAT,
        id: r.id.clone(),
        app: r.app.clone(),
        phone: r.phone.clone(),
        locale: r.locale.clone(),
        outcome: r.outcome,
        digest: hex::encode(&r.code.digest),
        key_id: r.code.key_id.clone(),
        version: r.code.version,
        created_at_ms: r.created_at_ms,
        expires_at_ms: r.expires_at_ms,
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        sends: r.sends,
        resend_at_ms: r.resend_at_ms,
        d_state: r.delivery.state,
        d_gateway: r.delivery.gateway.clone(),
        d_message_id: r.delivery.message_id.clone(),
        d_updated_at_ms: r.delivery.updated_at_ms,
        d_detail: r.delivery.detail.clone(),
        test_number: r.test_number,
        trusted: r.trusted,
    };
    // Serializing a struct of strings, integers and unit enums cannot fail.
    serde_json::to_string(&w).unwrap_or_default()
}

/// Decodes a stored record.
///
/// # Errors
/// [`StoreError::Corrupt`] on malformed data or an unknown format number.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    let w: Wire =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("record: {e}")))?;
    if w.fmt != FORMAT {
        return Err(StoreError::Corrupt(format!(
            "record format {} (expected {FORMAT})",
            w.fmt
        )));
    }
    let digest =
        hex::decode(&w.digest).map_err(|e| StoreError::Corrupt(format!("record digest: {e}")))?;
    Ok(Record {
        id: w.id,
        app: w.app,
        phone: w.phone,
        locale: w.locale,
        outcome: w.outcome,
        code: StoredCode {
            digest,
            key_id: w.key_id,
            version: w.version,
        },
        created_at_ms: w.created_at_ms,
        expires_at_ms: w.expires_at_ms,
        attempts: w.attempts,
        max_attempts: w.max_attempts,
        sends: w.sends,
        resend_at_ms: w.resend_at_ms,
        delivery: DeliveryRecord {
            state: w.d_state,
            gateway: w.d_gateway,
            message_id: w.d_message_id,
            updated_at_ms: w.d_updated_at_ms,
            detail: w.d_detail,
        },
        test_number: w.test_number,
        trusted: w.trusted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::sample_record;

    #[test]
    fn round_trips_and_rejects_other_formats() {
        let mut r = sample_record("v_x", 1_764_101_998_000);
        r.delivery.detail = Some("\"quoted\" ü".into());
        let s = encode(&r);
        assert_eq!(decode(s.as_bytes()), Ok(r));
        let other = s.replace("\"fmt\":1", "\"fmt\":2");
        assert!(matches!(
            decode(other.as_bytes()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode(b"{"), Err(StoreError::Corrupt(_))));
        let bad_hex = s.replace("\"digest\":\"00", "\"digest\":\"zz");
        assert!(matches!(
            decode(bad_hex.as_bytes()),
            Err(StoreError::Corrupt(_))
        ));
    }
}

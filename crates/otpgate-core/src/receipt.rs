//! Receipts: a compact JWT signed with Ed25519 (`alg: EdDSA`, RFC 8037) that the issuer
//! returns when a code is approved, and the offline verification a backend or an edge worker
//! runs against the issuer's JWKS.
//!
//! The format is fixed by this project (one algorithm, one key type), so the verifier accepts
//! exactly that: `alg` must be `EdDSA` (so `none` and HMAC confusion are impossible), `typ`
//! `JWT` when present, the key is chosen by `kid` from the JWKS and must be an OKP Ed25519
//! key, and `iss`, `aud`, `exp` and `iat` are required and checked.
//!
//! Signatures are made with `ed25519-dalek` (the issuer) and checked with `ed25519-compact`,
//! which is much smaller in the WebAssembly client. Its check is strict like dalek's
//! `verify_strict`: `S` must be canonical, the key and `R` canonical encodings of points that
//! are not of small order; the tests hold it to dalek's decisions on valid, tampered and such
//! malformed signatures. (The one difference, `[S]B - [k]A - R` allowed to be a small-order
//! point rather than the identity, needs the private key to produce: no forgery.)

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::wire::ErrorCode;

/// The claims of a receipt.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer's URL.
    pub iss: String,
    /// The app the code was for (its configured receipt audience).
    pub aud: String,
    /// The verification id.
    pub sub: String,
    /// The verification id again, as a unique token id for replay tracking.
    pub jti: String,
    /// The verified number, E.164.
    pub phone_number: String,
    /// Always `true`.
    pub phone_number_verified: bool,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

/// One public key of a JWKS (RFC 7517 / RFC 8037 OKP).
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Jwk {
    /// `"OKP"`.
    pub kty: String,
    /// `"Ed25519"`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id.
    pub kid: String,
    /// `"EdDSA"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `"sig"`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The JWK of an Ed25519 public key.
    pub fn ed25519(kid: impl Into<String>, key: &VerifyingKey) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid: kid.into(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }
}

/// A JWK Set.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// What a verifier requires of a receipt.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    /// The expected `aud`.
    pub audience: &'a str,
    /// The expected `iss`.
    pub issuer: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// Clock skew tolerated on `exp` and `iat`, in seconds.
    pub leeway: i64,
}

/// Why a receipt was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed receipt")]
    Malformed,
    /// `alg` is not `EdDSA` (for example `none` or `HS256`).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// No Ed25519 key in the JWKS has the receipt's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("receipt expired")]
    Expired,
    /// `iat` is in the future.
    #[error("receipt issued in the future")]
    NotYetValid,
    /// `aud` is not the expected app.
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `phone_number_verified` is not `true`.
    #[error("phone number not verified")]
    NotVerified,
}

impl ReceiptError {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed => ErrorCode::ReceiptMalformed,
            Self::UnsupportedAlgorithm => ErrorCode::ReceiptUnsupportedAlg,
            Self::UnknownKey => ErrorCode::ReceiptUnknownKey,
            Self::BadSignature => ErrorCode::ReceiptBadSignature,
            Self::Expired => ErrorCode::ReceiptExpired,
            Self::NotYetValid => ErrorCode::ReceiptNotYetValid,
            Self::WrongAudience => ErrorCode::ReceiptWrongAudience,
            Self::WrongIssuer => ErrorCode::ReceiptWrongIssuer,
            Self::NotVerified => ErrorCode::ReceiptNotVerified,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Signs `claims` with `key`, naming `kid` in the header.
pub fn sign(key: &SigningKey, kid: &str, claims: &Claims) -> String {
    let header = Header {
        alg: "EdDSA".into(),
        typ: Some("JWT".into()),
        kid: Some(kid.into()),
    };
    // Serialising these plain structs cannot fail.
    let h = serde_json::to_vec(&header).unwrap_or_default();
    let c = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h),
        URL_SAFE_NO_PAD.encode(c)
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// Verifies a receipt offline against a JWKS and returns its claims.
///
/// # Errors
/// [`ReceiptError`] naming the first failed check.
pub fn verify(jwt: &str, jwks: &Jwks, expect: &Expectations<'_>) -> Result<Claims, ReceiptError> {
    verify_with(jwt, jwks, expect, &SerdeJson)
}

/// The header fields a verifier reads.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HeaderFields {
    /// `alg`.
    pub alg: String,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// `kid`, if present.
    pub kid: Option<String>,
}

/// Decodes the JSON of a receipt's header and claims (already base64url-decoded).
///
/// [`verify`] uses serde_json; the WebAssembly client plugs in the runtime's `JSON.parse` with
/// [`verify_with`], which keeps serde_json (about 27 KB gzipped) out of the npm package. An
/// implementation must refuse (return `None`) anything that is not an object with every
/// required field of the right type.
pub trait ReceiptJson {
    /// The header, or `None` when it is not a JSON object with a string `alg` (and string
    /// `typ`/`kid` when present).
    fn header(&self, json: &[u8]) -> Option<HeaderFields>;
    /// The claims, or `None` when they are not a JSON object with every [`Claims`] field.
    fn claims(&self, json: &[u8]) -> Option<Claims>;
}

struct SerdeJson;

impl ReceiptJson for SerdeJson {
    fn header(&self, json: &[u8]) -> Option<HeaderFields> {
        let h: Header = serde_json::from_slice(json).ok()?;
        Some(HeaderFields {
            alg: h.alg,
            typ: h.typ,
            kid: h.kid,
        })
    }

    fn claims(&self, json: &[u8]) -> Option<Claims> {
        serde_json::from_slice(json).ok()
    }
}

/// [`verify`] with the JSON decoding supplied by the caller; the same checks in the same order.
///
/// # Errors
/// [`ReceiptError`] naming the first failed check.
pub fn verify_with(
    jwt: &str,
    jwks: &Jwks,
    expect: &Expectations<'_>,
    json: &dyn ReceiptJson,
) -> Result<Claims, ReceiptError> {
    if jwt.len() > 8 * 1024 {
        return Err(ReceiptError::Malformed);
    }
    let mut parts = jwt.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed);
    };
    let header = json.header(&b64(h64)?).ok_or(ReceiptError::Malformed)?;
    if header.alg != "EdDSA" {
        return Err(ReceiptError::UnsupportedAlgorithm);
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(ReceiptError::Malformed);
    }
    let kid = header.kid.ok_or(ReceiptError::UnknownKey)?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519")
        .ok_or(ReceiptError::UnknownKey)?;
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ReceiptError::UnknownKey)?;
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(s64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ReceiptError::BadSignature)?;
    let signing_input = &jwt[..h64.len() + 1 + c64.len()];
    ed25519_compact::PublicKey::new(x)
        .verify(signing_input, &ed25519_compact::Signature::new(sig))
        .map_err(|e| match e {
            // Not a point: the JWK cannot be a public key (as dalek's `from_bytes` refusing it).
            ed25519_compact::Error::InvalidPublicKey => ReceiptError::UnknownKey,
            _ => ReceiptError::BadSignature,
        })?;
    let claims = json.claims(&b64(c64)?).ok_or(ReceiptError::Malformed)?;
    if claims.iss != expect.issuer {
        return Err(ReceiptError::WrongIssuer);
    }
    if claims.aud != expect.audience {
        return Err(ReceiptError::WrongAudience);
    }
    if expect.now > claims.exp + expect.leeway {
        return Err(ReceiptError::Expired);
    }
    if claims.iat > expect.now + expect.leeway {
        return Err(ReceiptError::NotYetValid);
    }
    if !claims.phone_number_verified {
        return Err(ReceiptError::NotVerified);
    }
    Ok(claims)
}

fn b64(part: &str) -> Result<Vec<u8>, ReceiptError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ReceiptError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims() -> Claims {
        Claims {
            iss: "https://otp.example.com".into(),
            aud: "shop".into(),
            sub: "ver_1".into(),
            jti: "ver_1".into(),
            phone_number: "+14155550123".into(),
            phone_number_verified: true,
            iat: 1000,
            exp: 1600,
        }
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations {
            audience: "shop",
            issuer: "https://otp.example.com",
            now,
            leeway: 0,
        }
    }

    fn jwks() -> Jwks {
        Jwks {
            keys: vec![
                Jwk::ed25519("old", &key(2).verifying_key()),
                Jwk::ed25519("k1", &key(1).verifying_key()),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let jwt = sign(&key(1), "k1", &claims());
        assert_eq!(verify(&jwt, &jwks(), &expect(1200)), Ok(claims()));
    }

    #[test]
    fn tampered_expired_and_misdirected_receipts_fail() {
        let jwt = sign(&key(1), "k1", &claims());
        let (head, rest) = jwt.split_once('.').expect("jwt");
        let (_, sig) = rest.split_once('.').expect("jwt");
        let mut other = claims();
        other.phone_number = "+14155550000".into();
        let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"));
        assert_eq!(
            verify(
                &format!("{head}.{forged_claims}.{sig}"),
                &jwks(),
                &expect(1200)
            ),
            Err(ReceiptError::BadSignature)
        );
        assert_eq!(
            verify(&jwt, &jwks(), &expect(1601)),
            Err(ReceiptError::Expired)
        );
        assert_eq!(
            verify(&jwt, &jwks(), &expect(999)),
            Err(ReceiptError::NotYetValid)
        );
        let mut e = expect(1200);
        e.audience = "bank";
        assert_eq!(verify(&jwt, &jwks(), &e), Err(ReceiptError::WrongAudience));
        let mut e = expect(1200);
        e.issuer = "https://evil.example";
        assert_eq!(verify(&jwt, &jwks(), &e), Err(ReceiptError::WrongIssuer));
        // Signed by a key that is not published.
        let rogue = sign(&key(9), "k1", &claims());
        assert_eq!(
            verify(&rogue, &jwks(), &expect(1200)),
            Err(ReceiptError::BadSignature)
        );
        let unknown = sign(&key(1), "k9", &claims());
        assert_eq!(
            verify(&unknown, &jwks(), &expect(1200)),
            Err(ReceiptError::UnknownKey)
        );
    }

    #[test]
    fn alg_none_and_hs256_are_refused() {
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("json"));
        for alg in ["none", "HS256", "RS256", "eddsa"] {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            assert_eq!(
                verify(&format!("{h}.{c}."), &jwks(), &expect(1200)),
                Err(ReceiptError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_receipts() {
        for jwt in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", &"a".repeat(9000)] {
            assert_eq!(
                verify(jwt, &jwks(), &expect(1200)),
                Err(ReceiptError::Malformed),
                "{jwt:.20}"
            );
        }
    }

    /// What dalek's `verify_strict` (the verifier before ed25519-compact) decides for a key and
    /// a signature over `msg`, as a receipt error.
    fn dalek_decision(x: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> Result<(), ReceiptError> {
        let vk = VerifyingKey::from_bytes(x).map_err(|_| ReceiptError::UnknownKey)?;
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// The receipt signed by `key(1)` with its key and signature bytes replaced, checked
    /// against a JWKS publishing `x` as `k1`: ed25519-compact decides as dalek's
    /// `verify_strict` did, on valid signatures, tampered ones, non-canonical `S`, small-order
    /// `R` and keys, and keys that are not points.
    #[test]
    fn signature_checks_decide_as_dalek_verify_strict() {
        let jwt = sign(&key(1), "k1", &claims());
        let (input, s64) = jwt.rsplit_once('.').expect("jwt");
        let good: [u8; 64] = URL_SAFE_NO_PAD
            .decode(s64)
            .expect("b64")
            .try_into()
            .expect("64 bytes");
        let pk = key(1).verifying_key().to_bytes();
        // The group order L, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s_plus_l = good;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(good[32 + i]) + u16::from(L[i]) + carry;
            s_plus_l[32 + i] = v as u8;
            carry = v >> 8;
        }
        let mut high_s = good;
        high_s[63] |= 0x80;
        // Encodings of small-order points: the identity, the point of order 2, one of order 4.
        let small: [[u8; 32]; 3] = [
            {
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            },
            {
                let mut b = [0xffu8; 32];
                b[0] = 0xec;
                b[31] = 0x7f;
                b
            },
            [0u8; 32],
        ];
        let (head, _) = input.split_once('.').expect("jwt");
        let mut other = claims();
        other.phone_number = "+14155550000".into();
        let tampered = format!(
            "{head}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"))
        );
        let mut cases: Vec<([u8; 32], [u8; 64], String)> = vec![
            (pk, good, input.to_owned()),
            (pk, good, tampered),
            (pk, s_plus_l, input.to_owned()),
            (pk, high_s, input.to_owned()),
            (key(2).verifying_key().to_bytes(), good, input.to_owned()),
        ];
        for p in small {
            let mut small_r = good;
            small_r[..32].copy_from_slice(&p);
            cases.push((pk, small_r, input.to_owned()));
            cases.push((p, good, input.to_owned()));
        }
        // A key that is not a point at all.
        let not_a_point = (2u8..)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("some y is off the curve");
        cases.push((not_a_point, good, input.to_owned()));
        let mut outcomes = std::collections::BTreeSet::new();
        for (x, sig, input) in &cases {
            let jwks = Jwks {
                keys: vec![Jwk {
                    x: URL_SAFE_NO_PAD.encode(x),
                    ..Jwk::ed25519("k1", &key(1).verifying_key())
                }],
            };
            let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
            let ours = verify(&jwt, &jwks, &expect(1200)).map(|_| ());
            assert_eq!(ours, dalek_decision(x, sig, input.as_bytes()), "{jwt}");
            outcomes.insert(format!("{ours:?}"));
        }
        // Every kind of decision was exercised.
        let expected = ["Err(BadSignature)", "Err(UnknownKey)", "Ok(())"];
        assert_eq!(outcomes, expected.map(String::from).into(), "{outcomes:?}");
    }
}

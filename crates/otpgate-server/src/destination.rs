//! Destinations judged as phone numbers, with libphonenumber's metadata (the `phonenumber`
//! crate): parsed, validated for their region and classified by number type.
//!
//! The client module and the core crate only check that a number is plausible E.164; the
//! metadata (hundreds of kilobytes) stays on the server. It is as recent as the crate:
//! the crate's version carries libphonenumber's (`0.3.10+9.0.33` is metadata 9.0.33), and
//! `cargo update -p phonenumber` brings a newer one.
//!
//! # Normalisation
//! A national trunk prefix written after the country code (`+44 (0)7400 123456`) is dropped
//! and the rest validated like any number: what is sent is the normalised E.164
//! (`+447400123456`), never the digits as typed. A country code written twice (`+1 1 900…`,
//! `+44 44 7400…`) is refused, not read as one.

use core::fmt;
use core::str::FromStr;

use otpgate_core::phone::{CallingCode, PhoneNumber};
use otpgate_core::wire::ErrorCode;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, Type};
use serde::{Deserialize, Serialize};

/// A text that is not a region of libphonenumber's metadata.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{0:?} is not an ISO 3166-1 alpha-2 region code (such as \"GB\")")]
pub struct NotARegion(String);

/// A region in ISO 3166-1 alpha-2 (`"GB"`, `"US"`) that libphonenumber's metadata knows.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(Id);

impl Region {
    /// Parses a region code.
    ///
    /// # Errors
    /// [`NotARegion`] unless `text` is two capital letters naming a region of the metadata.
    pub fn parse(text: &str) -> Result<Self, NotARegion> {
        let known = text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase());
        known
            .then(|| Id::from_str(text).ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| NotARegion(text.to_owned()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A number type of libphonenumber's metadata, by its snake_case name.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NumberType {
    /// A fixed line.
    FixedLine,
    /// A mobile.
    Mobile,
    /// Either, where the number does not tell (every US and Canadian number).
    FixedLineOrMobile,
    /// Freephone.
    TollFree,
    /// Premium rate: the recipient earns from the sender (toll fraud).
    PremiumRate,
    /// Shared cost (e.g. German 0180, French 081x).
    SharedCost,
    /// A personal number routed anywhere (UK 070).
    PersonalNumber,
    /// Voice over IP.
    Voip,
    /// A pager.
    Pager,
    /// A universal access (company) number.
    Uan,
    /// Voicemail access.
    Voicemail,
    /// No type the metadata knows.
    Unknown,
}

impl NumberType {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FixedLine => "fixed_line",
            Self::Mobile => "mobile",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::TollFree => "toll_free",
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::PersonalNumber => "personal_number",
            Self::Voip => "voip",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Voicemail => "voicemail",
            Self::Unknown => "unknown",
        }
    }
}

impl From<Type> for NumberType {
    fn from(t: Type) -> Self {
        match t {
            Type::FixedLine => Self::FixedLine,
            Type::Mobile => Self::Mobile,
            Type::FixedLineOrMobile => Self::FixedLineOrMobile,
            Type::TollFree => Self::TollFree,
            Type::PremiumRate => Self::PremiumRate,
            Type::SharedCost => Self::SharedCost,
            Type::PersonalNumber => Self::PersonalNumber,
            Type::Voip => Self::Voip,
            Type::Pager => Self::Pager,
            Type::Uan => Self::Uan,
            Type::Voicemail => Self::Voicemail,
            // Short codes, emergency and carrier-specific numbers are never a full number's
            // type; if the metadata says so anyway, it is no type a policy names.
            _ => Self::Unknown,
        }
    }
}

/// Why a destination was refused: the class that goes to the log, the audit line and the
/// `destination_refused_total{reason}` metric, never to the answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No phone number in it (400 `invalid_phone`).
    #[error("not a phone number")]
    Unparsable,
    /// A number that is not valid for its region: unassigned ranges, wrong length (400).
    #[error("not a valid number for its region")]
    NotValid,
    /// The country code written twice (`+1 1 900…`) (400).
    #[error("country code written twice")]
    DoubleCountryCode,
    /// A valid number of a region outside `allowed_regions` (403
    /// `destination_not_allowed`).
    #[error("region not allowed")]
    Region,
    /// A valid number of a type outside `allowed_number_types` (403).
    #[error("number type not allowed")]
    NumberType,
    /// A valid number in a `blocked_prefixes` range (403).
    #[error("number range blocked")]
    BlockedPrefix,
}

impl Refusal {
    /// The metric label and audit reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::NotValid => "not_valid",
            Self::DoubleCountryCode => "double_country_code",
            Self::Region => "region",
            Self::NumberType => "number_type",
            Self::BlockedPrefix => "blocked_prefix",
        }
    }

    /// The wire code of the answer.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Unparsable | Self::NotValid | Self::DoubleCountryCode => ErrorCode::InvalidPhone,
            Self::Region | Self::NumberType | Self::BlockedPrefix => {
                ErrorCode::DestinationNotAllowed
            }
        }
    }
}

/// A number libphonenumber holds valid, in its normalised E.164 form.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Destination {
    /// The normalised number: what is stored, budgeted and sent.
    pub phone: PhoneNumber,
    /// Its region (`None` for the non-geographic codes such as `+882`).
    pub region: Option<Region>,
    /// Its type.
    pub kind: NumberType,
}

/// Parses, normalises, validates and classifies a plausible E.164 number.
///
/// # Errors
/// [`Refusal::Unparsable`], [`Refusal::NotValid`] or [`Refusal::DoubleCountryCode`].
pub fn classify(raw: &PhoneNumber) -> Result<Destination, Refusal> {
    let digits = raw.as_str().get(1..).unwrap_or_default();
    let parsed = phonenumber::parse(None, raw.as_str()).map_err(|_| Refusal::Unparsable)?;
    let code = parsed.code().value().to_string();
    let written = digits
        .strip_prefix(code.as_str())
        .ok_or(Refusal::Unparsable)?;
    let e164 = parsed.format().mode(Mode::E164).to_string();
    let national = e164
        .strip_prefix('+')
        .and_then(|d| d.strip_prefix(code.as_str()))
        .ok_or(Refusal::Unparsable)?;
    if national != written {
        // The metadata dropped a national (trunk) prefix written after the country code.
        // When that prefix is the country code itself (`+1 1 …` in the NANP), the number is
        // the country code written twice, not a trunk prefix.
        let dropped = written.strip_suffix(national).ok_or(Refusal::Unparsable)?;
        if dropped == code {
            return Err(Refusal::DoubleCountryCode);
        }
    }
    if !parsed.is_valid() {
        // `+44 44 7400 123456`: the rest after a repeated country code is a valid number.
        if let Some(rest) = written.strip_prefix(code.as_str())
            && PhoneNumber::parse(&format!("+{code}{rest}"))
                .ok()
                .and_then(|p| phonenumber::parse(None, p.as_str()).ok())
                .is_some_and(|p| p.is_valid())
        {
            return Err(Refusal::DoubleCountryCode);
        }
        return Err(Refusal::NotValid);
    }
    let kind = NumberType::from(parsed.number_type(&DATABASE));
    let region = parsed.country().id().map(Region);
    let phone = PhoneNumber::parse(&e164).map_err(|_| Refusal::NotValid)?;
    Ok(Destination {
        phone,
        region,
        kind,
    })
}

/// The region of a number, for routing (`None` when it has none or is not valid).
pub fn region_of(phone: &PhoneNumber) -> Option<Region> {
    classify(phone).ok().and_then(|d| d.region)
}

/// The regions whose numbers start with a country calling code, as the metadata lists them
/// (the main region first): what an old `allowed_countries` entry covered.
pub fn regions_of_code(code: &CallingCode) -> Vec<String> {
    code.as_str()
        .parse::<u16>()
        .ok()
        .and_then(|c| DATABASE.by_code(&c))
        .map(|metas| {
            metas
                .iter()
                .map(|m| m.id().to_owned())
                .filter(|id| Region::parse(id).is_ok())
                .collect()
        })
        .unwrap_or_default()
}

otpgate_core::text_form!(Region, NotARegion, to_string);

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(n: &str) -> Result<(String, Option<String>, NumberType), Refusal> {
        let raw = PhoneNumber::parse(n).expect(n);
        classify(&raw).map(|d| {
            (
                d.phone.as_str().to_owned(),
                d.region.map(|r| r.to_string()),
                d.kind,
            )
        })
    }

    #[test]
    fn numbers_are_classified_with_the_metadata() {
        use NumberType as T;
        let mut wrong = Vec::new();
        let mut ok = |n: &str, e164: &str, region: &str, kind: NumberType| {
            let got = judge(n);
            if got != Ok((e164.to_owned(), Some(region.to_owned()), kind)) {
                wrong.push(format!("{n}: {got:?}"));
            }
        };
        ok(
            "+1 415 555 0123",
            "+14155550123",
            "US",
            T::FixedLineOrMobile,
        );
        ok(
            "+1 604 555 0123",
            "+16045550123",
            "CA",
            T::FixedLineOrMobile,
        );
        ok("+44 7400 123456", "+447400123456", "GB", T::Mobile);
        ok("+44 (0)7400 123456", "+447400123456", "GB", T::Mobile);
        ok("+44 20 7946 0123", "+442079460123", "GB", T::FixedLine);
        ok("+33 6 12 34 56 78", "+33612345678", "FR", T::Mobile);
        ok("+33 (0)6 12 34 56 78", "+33612345678", "FR", T::Mobile);
        ok("+49 151 23456789", "+4915123456789", "DE", T::Mobile);
        ok("+351 912 345 678", "+351912345678", "PT", T::Mobile);
        ok("+1 876 210 1234", "+18762101234", "JM", T::Mobile);
        ok("+44 7797 123456", "+447797123456", "JE", T::Mobile);
        ok("+44 7624 123456", "+447624123456", "IM", T::Mobile);
        ok("+44 7781 123456", "+447781123456", "GG", T::Mobile);
        ok("+1 900 555 0123", "+19005550123", "US", T::PremiumRate);
        ok("+49 900 1234567", "+499001234567", "DE", T::PremiumRate);
        ok("+33 8 99 12 34 56", "+33899123456", "FR", T::PremiumRate);
        ok("+44 909 8790123", "+449098790123", "GB", T::PremiumRate);
        ok("+49 180 1234567", "+491801234567", "DE", T::SharedCost);
        ok("+33 810 12 34 56", "+33810123456", "FR", T::SharedCost);
        ok("+1 800 555 0123", "+18005550123", "US", T::TollFree);
        ok("+44 800 123 4567", "+448001234567", "GB", T::TollFree);
        ok("+44 56 1234 5678", "+445612345678", "GB", T::Voip);
        ok("+44 70 1234 5678", "+447012345678", "GB", T::PersonalNumber);
        ok("+34 612 345 678", "+34612345678", "ES", T::Mobile);
        ok("+49 (0)151 23456789", "+4915123456789", "DE", T::Mobile);
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(judge("+44 7400 123"), Err(Refusal::NotValid));
        assert_eq!(judge("+1 555 555 0100"), Err(Refusal::NotValid));
        assert_eq!(judge("+44 7700 900123"), Err(Refusal::NotValid));
        assert_eq!(judge("+1 1 900 555 0123"), Err(Refusal::DoubleCountryCode));
        assert_eq!(judge("+1 1 415 555 0123"), Err(Refusal::DoubleCountryCode));
        assert_eq!(judge("+44 44 7400 123456"), Err(Refusal::DoubleCountryCode));
    }

    proptest::proptest! {
        /// Every plausible E.164 number is judged without a panic, and an accepted one is
        /// plausible E.164 again with the same country code.
        #[test]
        fn any_plausible_number_is_judged(digits in "[1-9][0-9]{7,14}") {
            let raw = PhoneNumber::parse(&format!("+{digits}"));
            if let Ok(raw) = raw
                && let Ok(d) = classify(&raw)
            {
                proptest::prop_assert_eq!(d.phone.country_code(), raw.country_code());
            }
        }
    }

    #[test]
    fn regions_and_types_parse_strictly() {
        assert_eq!(Region::parse("GB").map(|r| r.to_string()), Ok("GB".into()));
        for wrong in ["UK", "gb", "G", "GBR", "", "44", "ZZ"] {
            assert!(Region::parse(wrong).is_err(), "{wrong:?}");
        }
        assert!(serde_json::from_str::<NumberType>("\"fixed_line_or_mobile\"").is_ok());
        assert!(serde_json::from_str::<NumberType>("\"FixedLine\"").is_err());
        let nanp = regions_of_code(&CallingCode::parse("1").expect("code"));
        assert!(
            nanp.len() > 10 && nanp.contains(&"JM".to_owned()),
            "{nanp:?}"
        );
        let uk = regions_of_code(&CallingCode::parse("44").expect("code"));
        assert_eq!(uk.first().map(String::as_str), Some("GB"));
    }
}

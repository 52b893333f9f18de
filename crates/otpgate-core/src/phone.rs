//! Phone numbers in E.164 form and their country calling codes.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::wire::ErrorCode;

/// Why a phone number was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Not `+` followed by 8–15 digits (spaces, dots, dashes and parentheses allowed when typing).
    #[error("phone number must be in E.164 form: + and 8 to 15 digits")]
    NotE164,
    /// The digits after `+` start with no assigned country calling code.
    #[error("unknown country calling code")]
    UnknownCountryCode,
    /// Nothing was typed.
    #[error("enter a phone number")]
    Empty,
    /// A character that is neither a digit nor a typing separator.
    #[error("a phone number has only digits (spaces, dashes, dots and brackets are fine)")]
    BadCharacter,
    /// A `+` anywhere but first.
    #[error("a + may only come first")]
    MisplacedPlus,
    /// Fewer than 8 digits with the country code.
    #[error("that number is too short")]
    TooShort,
    /// More than 15 digits with the country code.
    #[error("that number is too long: at most 15 digits with the country code")]
    TooLong,
    /// Not an assigned country calling code (digits, optionally after `+`).
    #[error("not a country calling code")]
    NotACallingCode,
    /// A number range that is not 1 to 15 digits (optionally after `+`).
    #[error("a number range is 1 to 15 digits, optionally after +")]
    BadPrefix,
}

impl PhoneError {
    /// The stable code of this refusal on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotE164
            | Self::Empty
            | Self::BadCharacter
            | Self::MisplacedPlus
            | Self::TooShort
            | Self::TooLong
            | Self::BadPrefix => ErrorCode::InvalidPhone,
            Self::UnknownCountryCode | Self::NotACallingCode => ErrorCode::UnknownCountryCode,
        }
    }
}

/// A validated E.164 number: `+` and 8–15 digits with a known country calling code.
#[derive(Clone, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    cc_len: u8,
}

impl PhoneNumber {
    /// Parses a number, allowing the separators people type (space, `.`, `-`, `(`, `)`).
    ///
    /// # Errors
    /// [`PhoneError`] for anything but a plausible international number.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        // Bound the work before looking at the content: no real number is this long.
        if input.len() > 32 {
            return Err(PhoneError::NotE164);
        }
        let rest = input.trim().strip_prefix('+').ok_or(PhoneError::NotE164)?;
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(PhoneError::NotE164),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(PhoneError::NotE164);
        }
        let cc_len = country_code_len(&digits).ok_or(PhoneError::UnknownCountryCode)?;
        Ok(Self {
            e164: format!("+{digits}"),
            cc_len,
        })
    }

    /// `+` and the digits.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code without `+`, e.g. `"44"`.
    pub fn country_code(&self) -> &str {
        &self.e164[1..=usize::from(self.cc_len)]
    }

    /// The first `n` digits after `+` (or all of them): the key of per-prefix budgets.
    pub fn prefix(&self, n: usize) -> &str {
        &self.e164[1..(1 + n).min(self.e164.len())]
    }

    /// The last two digits, the only part of a number that logs and audit entries show.
    pub fn last_two(&self) -> &str {
        &self.e164[self.e164.len() - 2..]
    }

    /// A masked form for logs: `+44•••••••89`.
    pub fn masked(&self) -> String {
        let cc = self.country_code();
        let hidden = self.e164.len() - 1 - cc.len() - 2;
        format!("+{cc}{}{}", "•".repeat(hidden), self.last_two())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    /// Displays the masked form: a full number must never reach a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A country calling code (an ITU-T E.164 assignment such as `44` or `1`), written with or
/// without `+`; kept as its digits.
#[derive(Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallingCode(String);

impl CallingCode {
    /// Parses a calling code.
    ///
    /// # Errors
    /// [`PhoneError::NotACallingCode`] unless the digits are exactly an assigned code.
    pub fn parse(text: &str) -> Result<Self, PhoneError> {
        let digits = text.strip_prefix('+').unwrap_or(text);
        let exact = digits.bytes().all(|b| b.is_ascii_digit())
            && country_code_len(digits).map(usize::from) == Some(digits.len());
        if exact {
            Ok(Self(digits.to_owned()))
        } else {
            Err(PhoneError::NotACallingCode)
        }
    }

    /// The digits, without `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `number` is in this country calling code.
    pub fn contains(&self, number: &PhoneNumber) -> bool {
        number.country_code() == self.0
    }
}

/// A range of numbers given by its leading digits (`+4470`), matched against the digits of
/// a normalised E.164 number; written with or without `+`, kept as its digits.
#[derive(Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NumberPrefix(String);

impl NumberPrefix {
    /// Parses a range.
    ///
    /// # Errors
    /// [`PhoneError::BadPrefix`] unless it is 1 to 15 ASCII digits after an optional `+`.
    pub fn parse(text: &str) -> Result<Self, PhoneError> {
        let digits = text.strip_prefix('+').unwrap_or(text);
        if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits.to_owned()))
        } else {
            Err(PhoneError::BadPrefix)
        }
    }

    /// The digits, without `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `number` lies in this range.
    pub fn contains(&self, number: &PhoneNumber) -> bool {
        number.as_str()[1..].starts_with(&self.0)
    }
}

/// The country a phone field assumes for a number typed without `+`: its calling code and
/// the national trunk prefix people type before a national number (`0` in most of Europe,
/// `1` in the NANP), if there is one to drop.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HomeCountry {
    dial: String,
    trunk: Option<String>,
}

impl HomeCountry {
    /// A home country from its calling code (digits, no `+`) and trunk prefix (digits).
    ///
    /// # Errors
    /// [`PhoneError::UnknownCountryCode`] when `dial` is not exactly an assigned calling code;
    /// [`PhoneError::BadCharacter`] for a trunk prefix that is not 1–2 digits.
    pub fn new(dial: &str, trunk: Option<&str>) -> Result<Self, PhoneError> {
        if country_code_len(dial).map(usize::from) != Some(dial.len()) {
            return Err(PhoneError::UnknownCountryCode);
        }
        let trunk = trunk.filter(|t| !t.is_empty());
        if let Some(t) = trunk
            && (t.len() > 2 || !t.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(PhoneError::BadCharacter);
        }
        Ok(Self {
            dial: dial.to_owned(),
            trunk: trunk.map(str::to_owned),
        })
    }
}

/// The light normalisation a phone field does before the issuer judges the number: the
/// separators people type are dropped, a leading `+` or `00` means an international number,
/// anything else is national to `home` (its trunk prefix dropped when the rest is still a
/// plausible number), and the result must be a plausible E.164 number. Whether the number
/// exists, and whether it may be sent to, is the issuer's judgement, not this one's.
///
/// # Errors
/// [`PhoneError`] with a sentence a person can act on.
pub fn normalize(typed: &str, home: &HomeCountry) -> Result<PhoneNumber, PhoneError> {
    if typed.len() > 64 {
        return Err(PhoneError::TooLong);
    }
    let typed = typed.trim();
    if typed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for (i, c) in typed.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            '+' if i == 0 => plus = true,
            '+' => return Err(PhoneError::MisplacedPlus),
            _ => return Err(PhoneError::BadCharacter),
        }
    }
    let international = if plus {
        true
    } else if let Some(rest) = digits.strip_prefix("00") {
        digits = rest.to_owned();
        true
    } else {
        false
    };
    if !international {
        if let Some(trunk) = &home.trunk
            && digits.len() > 6
            && digits.starts_with(trunk.as_str())
        {
            digits.drain(..trunk.len());
        }
        digits.insert_str(0, &home.dial);
    }
    if digits.len() < 8 {
        return Err(PhoneError::TooShort);
    }
    if digits.len() > 15 {
        return Err(PhoneError::TooLong);
    }
    PhoneNumber::parse(&format!("+{digits}"))
}

/// The length of the country calling code that `digits` starts with (ITU-T E.164 assignments).
pub fn country_code_len(digits: &str) -> Option<u8> {
    let b = digits.as_bytes();
    match *b.first()? {
        // Zones 1 (NANP) and 7 (Russia, Kazakhstan) are one digit.
        b'1' | b'7' => Some(1),
        _ => {
            if TWO_DIGIT.contains(&leading_number(b, 2)?) {
                return Some(2);
            }
            THREE_DIGIT.contains(&leading_number(b, 3)?).then_some(3)
        }
    }
}

/// The number written by the first `n` bytes of `b`, if they are all ASCII digits.
fn leading_number(b: &[u8], n: usize) -> Option<u16> {
    b.get(..n)?.iter().try_fold(0u16, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u16::from(d - b'0'))
    })
}

// The codes as numbers, not strings: a table of 204 `&str` (pointer and length each) was
// 2.2 KB of the npm package's wasm data.
const TWO_DIGIT: &[u16] = &[
    20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56,
    57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
];

const THREE_DIGIT: &[u16] = &[
    211, 212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233,
    234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252,
    253, 254, 255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297,
    298, 299, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376,
    377, 378, 379, 380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504,
    505, 506, 507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674,
    675, 676, 677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 800, 808,
    850, 852, 853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888, 960, 961, 962, 963, 964, 965,
    966, 967, 968, 970, 971, 972, 973, 974, 975, 976, 977, 979, 992, 993, 994, 995, 996, 998,
];

crate::text_form!(PhoneNumber, PhoneError, as_str);

crate::text_form!(CallingCode, PhoneError, as_str);

crate::text_form!(NumberPrefix, PhoneError, as_str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_and_their_country_codes() {
        for (input, e164, cc) in [
            ("+14155550123", "+14155550123", "1"),
            ("+44 7400 900123", "+447400900123", "44"),
            ("+33 (6) 12-34-56-78", "+33612345678", "33"),
            ("+351912345678", "+351912345678", "351"),
            ("+79161234567", "+79161234567", "7"),
            ("+8613812345678", "+8613812345678", "86"),
        ] {
            let p = PhoneNumber::parse(input).expect(input);
            assert_eq!(p.as_str(), e164);
            assert_eq!(p.country_code(), cc);
        }
    }

    #[test]
    fn invalid_numbers_are_refused() {
        for input in [
            "",
            "5551234567",
            "+",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+44 7400 900123 ext 5",
            "+44\u{0663}7400900123",
            "+44/7400900123",
            &format!("+{}", "1".repeat(40)),
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(PhoneError::NotE164),
                "{input:?}"
            );
        }
        assert_eq!(
            PhoneNumber::parse("+2901234567").map(|p| p.country_code().to_owned()),
            Ok("290".into())
        );
        assert_eq!(
            PhoneNumber::parse("+9991234567"),
            Err(PhoneError::UnknownCountryCode)
        );
    }

    #[test]
    fn masking_keeps_only_country_code_and_last_two_digits() {
        let p = PhoneNumber::parse("+447400900123").expect("valid");
        assert_eq!(p.masked(), "+44••••••••23");
        assert_eq!(format!("{p}"), "+44••••••••23");
        assert!(!format!("{p:?}").contains("7400900"));
        assert_eq!(p.last_two(), "23");
        assert_eq!(p.prefix(5), "44740");
        assert_eq!(p.prefix(50), "447400900123");
    }

    #[test]
    fn normalize_reads_what_people_type() {
        let fr = HomeCountry::new("33", Some("0")).expect("France");
        let us = HomeCountry::new("1", Some("1")).expect("NANP");
        let it = HomeCountry::new("39", None).expect("Italy");
        for (typed, home, want) in [
            ("06 12 34 56 78", &fr, "+33612345678"),
            ("6.12.34.56.78", &fr, "+33612345678"),
            ("+44 7400 123456", &fr, "+447400123456"),
            ("0044 7400 123456", &fr, "+447400123456"),
            ("(415) 555-0123", &us, "+14155550123"),
            ("1 415 555 0123", &us, "+14155550123"),
            ("06 1234 5678", &it, "+390612345678"),
        ] {
            assert_eq!(
                normalize(typed, home).map(|p| p.as_str().to_owned()),
                Ok(want.to_owned()),
                "{typed:?}"
            );
        }
        for (typed, err) in [
            ("", PhoneError::Empty),
            ("   ", PhoneError::Empty),
            ("06 12 ab", PhoneError::BadCharacter),
            ("06+1234567", PhoneError::MisplacedPlus),
            ("0612", PhoneError::TooShort),
            ("+33 6 12 34 56 78 90 12 34", PhoneError::TooLong),
            (&"1".repeat(100), PhoneError::TooLong),
            ("+999 1234 5678", PhoneError::UnknownCountryCode),
        ] {
            assert_eq!(normalize(typed, &fr), Err(err.clone()), "{typed:?}");
            assert_eq!(
                err.code().as_str() == "unknown_country_code",
                err == PhoneError::UnknownCountryCode
            );
        }
        assert_eq!(
            HomeCountry::new("999", None),
            Err(PhoneError::UnknownCountryCode)
        );
        assert_eq!(
            HomeCountry::new("4", None),
            Err(PhoneError::UnknownCountryCode)
        );
        assert_eq!(
            HomeCountry::new("44", Some("0x")),
            Err(PhoneError::BadCharacter)
        );
    }

    #[test]
    fn calling_codes_and_ranges() {
        for ok in ["44", "+33", "1", "7", "+358", "212"] {
            let c = CallingCode::parse(ok).expect(ok);
            assert_eq!(c.as_str(), ok.trim_start_matches('+'));
        }
        for wrong in [
            "999", "0", "44 ", "4", "441", "12", "+", "", "٤٤", "1234", "++44",
        ] {
            assert_eq!(
                CallingCode::parse(wrong),
                Err(PhoneError::NotACallingCode),
                "{wrong:?}"
            );
        }
        let uk = PhoneNumber::parse("+447400123456").expect("valid");
        assert!(CallingCode::parse("44").expect("uk").contains(&uk));
        assert!(!CallingCode::parse("4").is_ok_and(|c| c.contains(&uk)));
        assert!(NumberPrefix::parse("+4474").expect("range").contains(&uk));
        assert!(!NumberPrefix::parse("4470").expect("range").contains(&uk));
        for wrong in ["", "+", "44 70", "+4470x", &"1".repeat(16)] {
            assert_eq!(
                NumberPrefix::parse(wrong),
                Err(PhoneError::BadPrefix),
                "{wrong:?}"
            );
        }
        assert!(serde_json::from_str::<CallingCode>("\"999\"").is_err());
        assert!(serde_json::from_str::<NumberPrefix>("\"+4470\"").is_ok());
        // The numeric tables read only leading ASCII digits.
        for (digits, len) in [
            ("447400", Some(2)),
            ("2125", Some(3)),
            ("3581", Some(3)),
            ("4x", None),
            ("2a1", None),
            ("21", None),
            ("99", None),
            ("٤٤", None),
            ("", None),
        ] {
            assert_eq!(country_code_len(digits), len, "{digits:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let p: PhoneNumber = serde_json::from_str("\"+14155550123\"").expect("valid");
        assert_eq!(serde_json::to_string(&p).expect("json"), "\"+14155550123\"");
        assert!(serde_json::from_str::<PhoneNumber>("\"12\"").is_err());
    }
}

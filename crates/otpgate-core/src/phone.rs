//! Phone numbers in E.164 form and their country calling codes.

use core::fmt;

use serde::{Deserialize, Serialize};

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
}

impl PhoneError {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotE164 => "invalid_phone",
            Self::UnknownCountryCode => "unknown_country_code",
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

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> Self {
        p.e164.clone()
    }
}

/// The length of the country calling code that `digits` starts with (ITU-T E.164 assignments).
pub fn country_code_len(digits: &str) -> Option<u8> {
    let b = digits.as_bytes();
    let first = *b.first()?;
    match first {
        // Zones 1 (NANP) and 7 (Russia, Kazakhstan) are one digit.
        b'1' | b'7' => Some(1),
        _ => {
            let two = digits.get(..2)?;
            if TWO_DIGIT.contains(&two) {
                return Some(2);
            }
            let three = digits.get(..3)?;
            THREE_DIGIT.contains(&three).then_some(3)
        }
    }
}

const TWO_DIGIT: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

const THREE_DIGIT: &[&str] = &[
    "211", "212", "213", "216", "218", "220", "221", "222", "223", "224", "225", "226", "227",
    "228", "229", "230", "231", "232", "233", "234", "235", "236", "237", "238", "239", "240",
    "241", "242", "243", "244", "245", "246", "247", "248", "249", "250", "251", "252", "253",
    "254", "255", "256", "257", "258", "260", "261", "262", "263", "264", "265", "266", "267",
    "268", "269", "290", "291", "297", "298", "299", "350", "351", "352", "353", "354", "355",
    "356", "357", "358", "359", "370", "371", "372", "373", "374", "375", "376", "377", "378",
    "379", "380", "381", "382", "383", "385", "386", "387", "389", "420", "421", "423", "500",
    "501", "502", "503", "504", "505", "506", "507", "508", "509", "590", "591", "592", "593",
    "594", "595", "596", "597", "598", "599", "670", "672", "673", "674", "675", "676", "677",
    "678", "679", "680", "681", "682", "683", "685", "686", "687", "688", "689", "690", "691",
    "692", "800", "808", "850", "852", "853", "855", "856", "870", "878", "880", "881", "882",
    "883", "886", "888", "960", "961", "962", "963", "964", "965", "966", "967", "968", "970",
    "971", "972", "973", "974", "975", "976", "977", "979", "992", "993", "994", "995", "996",
    "998",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_and_their_country_codes() {
        for (input, e164, cc) in [
            ("+15551234567", "+15551234567", "1"),
            ("+44 7700 900123", "+447700900123", "44"),
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
            "+44 7700 900123 ext 5",
            "+44\u{0663}7700900123",
            "+44/7700900123",
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
        let p = PhoneNumber::parse("+447700900123").expect("valid");
        assert_eq!(p.masked(), "+44••••••••23");
        assert_eq!(format!("{p}"), "+44••••••••23");
        assert!(!format!("{p:?}").contains("7700900"));
        assert_eq!(p.last_two(), "23");
        assert_eq!(p.prefix(5), "44770");
        assert_eq!(p.prefix(50), "447700900123");
    }

    #[test]
    fn serde_validates() {
        let p: PhoneNumber = serde_json::from_str("\"+15551234567\"").expect("valid");
        assert_eq!(serde_json::to_string(&p).expect("json"), "\"+15551234567\"");
        assert!(serde_json::from_str::<PhoneNumber>("\"12\"").is_err());
    }
}

//! GSM-7 / UCS-2 segment counting.
//!
//! A single SMS carries 140 octets of user data: 160 septets of the GSM 03.38 default alphabet
//! or 70 UTF-16 code units (UCS-2). A concatenated message spends 6 octets of each part on the
//! user-data header, leaving 153 septets or 67 units per part.
//!
//! Rules (reference `otp-formats.md` §5, matching Twilio's `message-segment-calculator` and
//! `split-sms`):
//! - The message is GSM-7 if and only if every character is in the basic table (1 septet) or
//!   the extension table (`^ { } \ [ ~ ] | €` and FF, 2 septets: ESC + code). One character
//!   outside them switches the whole message to UCS-2.
//! - In UCS-2 a character outside the Basic Multilingual Plane (emoji, …) is a surrogate pair
//!   and counts 2 units.
//! - Parts are packed greedily, and an escape pair or a surrogate pair is never split across
//!   two parts, so `152×a + € + 152×a` (306 septets) needs 3 parts, not 2. Grapheme clusters
//!   (e.g. an emoji with a skin-tone modifier) may be split between their code points, as
//!   `split-sms` does; Twilio keeps them whole, which can cost one more part in rare cases.
//! - National language shift tables are not used.
//! - The empty message is 1 segment of 0 units: an empty SMS still takes one PDU, and Twilio's
//!   calculator says so too (`SegmentedMessage._buildSegments` starts from one segment, so
//!   `new SegmentedMessage("").segmentsCount` is 1).
//!
//! Counting allocates nothing and reads the text at most twice (the second pass only for
//! messages that need more than one part).

use serde::Serialize;

/// Septets per single (unconcatenated) GSM-7 message.
pub const GSM7_SINGLE: u32 = 160;
/// Septets per part of a concatenated GSM-7 message.
pub const GSM7_PART: u32 = 153;
/// UTF-16 units per single UCS-2 message.
pub const UCS2_SINGLE: u32 = 70;
/// UTF-16 units per part of a concatenated UCS-2 message.
pub const UCS2_PART: u32 = 67;

/// The encoding a message needs.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, Serialize)]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet (with its extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 / UTF-16.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name printed by `otpgate sms segments`: `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }

    /// Units that fit one unconcatenated message (160 or 70).
    pub fn single_limit(self) -> u32 {
        match self {
            Self::Gsm7 => GSM7_SINGLE,
            Self::Ucs2 => UCS2_SINGLE,
        }
    }

    /// Units per part of a concatenated message (153 or 67).
    pub fn part_limit(self) -> u32 {
        match self {
            Self::Gsm7 => GSM7_PART,
            Self::Ucs2 => UCS2_PART,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `otpgate sms segments` prints.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, Serialize)]
pub struct Segments {
    /// The encoding.
    pub encoding: Encoding,
    /// Number of SMS parts (1 for the empty message).
    pub segments: u32,
    /// Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2).
    pub units: u32,
}

impl Segments {
    /// Whether the message fits one unconcatenated SMS.
    pub fn is_single(&self) -> bool {
        self.segments <= 1
    }

    /// The bytes of user data the message occupies on the air: septets packed 7 bits each
    /// (rounded up to whole octets) or 2 octets per UTF-16 unit; the user-data headers of
    /// concatenated parts are not counted.
    pub fn bytes(&self) -> u64 {
        match self.encoding {
            Encoding::Gsm7 => (u64::from(self.units) * 7).div_ceil(8),
            Encoding::Ucs2 => u64::from(self.units) * 2,
        }
    }
}

/// Per ASCII byte: 0 = not in GSM 03.38, 1 = basic table, 2 = extension table.
const ASCII_WIDTH: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0x20;
    while i < 0x7f {
        t[i] = 1;
        i += 1;
    }
    t[b'\n' as usize] = 1;
    t[b'\r' as usize] = 1;
    // Form feed is in the extension table (ESC 0x0A).
    t[0x0c] = 2;
    // No backtick in GSM 03.38.
    t[b'`' as usize] = 0;
    let ext = b"^{}\\[~]|";
    let mut j = 0;
    while j < ext.len() {
        t[ext[j] as usize] = 2;
        j += 1;
    }
    t
};

/// Septets `ch` takes in GSM-7: 1 (basic table), 2 (extension table) or 0 (not encodable).
pub fn gsm7_width(ch: char) -> u32 {
    if ch.is_ascii() {
        return u32::from(ASCII_WIDTH[ch as usize]);
    }
    match ch {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => 1,
        '€' => 2,
        _ => 0,
    }
}

/// Whether every character of `text` is in the GSM 03.38 basic or extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_width(c) != 0)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Counts the segments of `text`.
///
/// ```
/// use otpgate_core::sms::{Encoding, segments};
/// let s = segments("Your code is 123456");
/// assert_eq!((s.encoding, s.segments, s.units), (Encoding::Gsm7, 1, 19));
/// assert_eq!(segments("Code 123456 ✓").encoding, Encoding::Ucs2);
/// ```
pub fn segments(text: &str) -> Segments {
    // Pass 1: encoding and total units.
    let (encoding, units) = if text.is_ascii() {
        let mut septets = 0usize;
        let mut gsm = true;
        for &b in text.as_bytes() {
            let w = ASCII_WIDTH[usize::from(b)];
            if w == 0 {
                gsm = false;
                break;
            }
            septets += usize::from(w);
        }
        if gsm {
            (Encoding::Gsm7, septets)
        } else {
            // ASCII is one UTF-16 unit per byte.
            (Encoding::Ucs2, text.len())
        }
    } else {
        let mut septets = 0usize;
        let mut utf16 = 0usize;
        let mut gsm = true;
        for ch in text.chars() {
            utf16 += ch.len_utf16();
            if gsm {
                match gsm7_width(ch) {
                    0 => gsm = false,
                    w => septets += w as usize,
                }
            }
        }
        if gsm {
            (Encoding::Gsm7, septets)
        } else {
            (Encoding::Ucs2, utf16)
        }
    };
    let units = to_u32(units);
    if units <= encoding.single_limit() {
        return Segments {
            encoding,
            segments: 1,
            units,
        };
    }
    // Pass 2: greedy packing; a character's units (escape pair, surrogate pair) stay together.
    let part = encoding.part_limit() as usize;
    let mut parts = 1usize;
    let mut fill = 0usize;
    for ch in text.chars() {
        let w = match encoding {
            Encoding::Gsm7 => gsm7_width(ch) as usize,
            Encoding::Ucs2 => ch.len_utf16(),
        };
        if fill + w > part {
            parts += 1;
            fill = w;
        } else {
            fill += w;
        }
    }
    Segments {
        encoding,
        segments: to_u32(parts),
        units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str) -> (Encoding, u32, u32) {
        let s = segments(text);
        (s.encoding, s.segments, s.units)
    }

    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";

    #[test]
    fn tables_have_exactly_127_plus_10_characters() {
        assert_eq!(BASIC.chars().count(), 127);
        assert!(BASIC.chars().all(|c| gsm7_width(c) == 1), "basic");
        assert_eq!(EXTENSION.chars().count(), 10);
        assert!(EXTENSION.chars().all(|c| gsm7_width(c) == 2), "extension");
        // Exhaustive over the BMP and beyond: nothing else is GSM-7.
        let mut n1 = 0;
        let mut n2 = 0;
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            match gsm7_width(c) {
                1 => n1 += 1,
                2 => n2 += 1,
                _ => {}
            }
        }
        assert_eq!((n1, n2), (127, 10));
    }

    #[test]
    fn characters_that_look_gsm_but_are_not() {
        for c in [
            '`', '\t', 'ç', '’', '\u{a0}', '\u{200b}', 'á', 'í', 'ó', 'ú', 'â', 'ê', '\u{1b}',
        ] {
            assert_eq!(gsm7_width(c), 0, "{c:?}");
        }
    }

    #[test]
    fn calculator_cases() {
        use Encoding::{Gsm7, Ucs2};
        let a = |n: usize| "a".repeat(n);
        let cases: Vec<(String, (Encoding, u32, u32))> = vec![
            (String::new(), (Gsm7, 1, 0)),
            ("a".into(), (Gsm7, 1, 1)),
            (a(160), (Gsm7, 1, 160)),
            (a(161), (Gsm7, 2, 161)),
            (a(306), (Gsm7, 2, 306)),
            (a(307), (Gsm7, 3, 307)),
            (a(153 * 2 + 1), (Gsm7, 3, 307)),
            (a(459), (Gsm7, 3, 459)),
            (a(460), (Gsm7, 4, 460)),
            // Extension characters count 2.
            ("€".repeat(80), (Gsm7, 1, 160)),
            (format!("{}€", a(159)), (Gsm7, 2, 161)),
            (format!("{}^", a(158)), (Gsm7, 1, 160)),
            // An escape pair is never split: 152 a + € + 152 a = 306 septets, 3 parts.
            (format!("{}€{}", a(152), a(152)), (Gsm7, 3, 306)),
            (format!("{}€{}", a(151), a(153)), (Gsm7, 2, 306)),
            // UCS-2.
            ("ç".repeat(70), (Ucs2, 1, 70)),
            ("ç".repeat(71), (Ucs2, 2, 71)),
            ("ç".repeat(134), (Ucs2, 2, 134)),
            ("ç".repeat(135), (Ucs2, 3, 135)),
            (format!("{}ç", a(69)), (Ucs2, 1, 70)),
            (format!("{}ç", a(70)), (Ucs2, 2, 71)),
            // Extension chars are 1 unit in UCS-2.
            (format!("€{}’", a(10)), (Ucs2, 1, 12)),
            // Surrogate pairs count 2 and are never split.
            ("😀".repeat(35), (Ucs2, 1, 70)),
            (format!("{}😀", a(69)), (Ucs2, 2, 71)),
            (format!("{}😀{}", a(66), a(66)), (Ucs2, 3, 134)),
            (format!("{}😀{}", a(65), a(67)), (Ucs2, 2, 134)),
            // Tab and backtick force UCS-2.
            ("a\tb".into(), (Ucs2, 1, 3)),
            ("`".into(), (Ucs2, 1, 1)),
            ("\u{c}".into(), (Gsm7, 1, 2)),
            (
                "<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu".into(),
                (Gsm7, 1, 64),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(seg(&text), want, "{text:?}");
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(segments(&"a".repeat(160)).bytes(), 140);
        assert_eq!(segments(&"ç".repeat(70)).bytes(), 140);
        assert_eq!(segments("").bytes(), 0);
        assert_eq!(segments("a").bytes(), 1);
    }

    proptest::proptest! {
        #[test]
        fn invariants(text in "(?s)[a€ç😀\\^\n`é ]{0,400}") {
            let s = segments(&text);
            let gsm = text.chars().all(|c| gsm7_width(c) != 0);
            proptest::prop_assert_eq!(s.encoding == Encoding::Gsm7, gsm);
            proptest::prop_assert_eq!(s.segments == 1, s.units <= s.encoding.single_limit());
            proptest::prop_assert!(s.segments >= 1);
            let want_units: usize = if gsm {
                text.chars().map(|c| gsm7_width(c) as usize).sum()
            } else {
                text.encode_utf16().count()
            };
            proptest::prop_assert_eq!(s.units as usize, want_units);
            if s.segments > 1 {
                let part = s.encoding.part_limit();
                proptest::prop_assert!(s.units <= s.segments * part);
                proptest::prop_assert!(s.units > (s.segments - 1) * (part - 1));
            }
        }

        #[test]
        fn units_and_segments_are_monotonic(text in "(?s)[a€ç😀\\^\n]{0,300}", extra in "[a€ç😀]") {
            let longer = format!("{text}{extra}");
            let (s, l) = (segments(&text), segments(&longer));
            if s.encoding == l.encoding {
                proptest::prop_assert!(l.units > s.units);
                proptest::prop_assert!(l.segments >= s.segments);
            }
        }
    }
}

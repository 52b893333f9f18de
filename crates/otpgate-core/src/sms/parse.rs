//! Parsing of received OTP SMS: what a phone or a browser would extract from a message.
//!
//! Three things are looked for, independently:
//!
//! 1. **The origin-bound one-time code** (WebOTP in Chrome, AutoFill in Safari), following the
//!    WICG "SMS one-time codes" algorithm (`WICG/sms-one-time-codes` §3.2) to the letter:
//!    - the newlines are normalised (CRLF and CR become LF) and the **last line** is taken, so a
//!      message ending in a newline has an empty last line and no origin-bound code;
//!    - the line must start with `@` followed by a non-empty run of non-ASCII-whitespace code
//!      points: the top-level host;
//!    - then exactly one U+0020 SPACE;
//!    - then `#` followed by a non-empty run of non-ASCII-whitespace code points: the code
//!      (it may contain `#`, `@`, emoji, …);
//!    - then, optionally, one U+0020 and an `@host` token: the embedded (iframe) host;
//!    - anything after that is ignored.
//!
//!    ASCII whitespace is TAB, LF, FF, CR and SPACE. On top of the current spec text, hosts
//!    are validated as the spec did from 2020 to 2021 (and as Chromium does): a host is ASCII
//!    letters, digits and hyphens in non-empty dot-separated labels (≤ 63 octets each, ≤ 253 in
//!    all), or a dotted-quad IPv4 address; a host whose last label is numeric must be a valid
//!    dotted quad (`0`–`255`, no leading zeros), as in the URL standard. An invalid top-level
//!    host means no origin-bound code; an invalid or missing embedded host just means none.
//!    Hosts are returned **as sent** (no lower-casing): host comparison belongs to the caller,
//!    which must compare case-insensitively (browsers lower-case origins).
//!
//! 2. **The SMS User Consent candidate** (used as `code` when there is no origin-bound code):
//!    Android's consent prompt fires for "a 4–10 character alphanumeric string with at least
//!    one number". Tokens are the maximal runs of ASCII letters and digits (every other
//!    character, including punctuation, non-ASCII letters and whitespace, is a boundary), so
//!    `G-123456` gives `123456` and `1234ABC.` gives `1234ABC`. The first token of 4 to 10
//!    characters with at least one digit wins. The `<#>` marker has no alphanumerics and the
//!    app hash token (below) is skipped.
//!
//! 3. **The SMS Retriever app hash**: the last whitespace-separated token of the message (after
//!    any trailing whitespace), if it is exactly 11 characters of the standard base64 alphabet
//!    `[A-Za-z0-9+/]`. To avoid taking a plain word (`Application`, `information`) or a long
//!    number for a hash, the token must contain at least one ASCII letter, and at least one
//!    digit, `+` or `/`, or mixed case beyond a leading capital (an upper-case letter after
//!    the first character and a lower-case letter). A random hash fails this test with
//!    probability below 0.2 %.
//!
//! [`parse_ref`] does all this without allocating; [`parse`] copies the result into owned
//! strings.

use serde::Serialize;

/// An origin-bound one-time code (the `@host #code [@iframe-host]` last line).
#[derive(Clone, Eq, PartialEq, Serialize)]
pub struct OriginBound {
    /// The top-level host, as sent.
    pub host: String,
    /// The code.
    pub code: String,
    /// The embedded (iframe) host, if any, as sent.
    pub iframe_host: Option<String>,
}

impl std::fmt::Debug for OriginBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginBound")
            .field("host", &self.host)
            .field("code", &"[redacted]")
            .field("iframe_host", &self.iframe_host)
            .finish()
    }
}

/// What `otpgate sms parse` prints:
/// `{"code": s|null, "webotp": {"host": s, "code": s, "iframe_host": s|null}|null, "app_hash": s|null}`.
#[derive(Clone, Default, Eq, PartialEq, Serialize)]
pub struct Parsed {
    /// The code: the origin-bound one, else the SMS User Consent candidate.
    pub code: Option<String>,
    /// The origin-bound line.
    pub webotp: Option<OriginBound>,
    /// A trailing 11-character SMS Retriever app hash.
    pub app_hash: Option<String>,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("code", &self.code.as_ref().map(|_| "[redacted]"))
            .field("webotp", &self.webotp)
            .field("app_hash", &self.app_hash)
            .finish()
    }
}

/// [`OriginBound`], borrowed from the message.
#[derive(Clone, Copy, Eq, PartialEq)]
pub struct OriginBoundRef<'a> {
    /// The top-level host, as sent.
    pub host: &'a str,
    /// The code.
    pub code: &'a str,
    /// The embedded (iframe) host, if any, as sent.
    pub iframe_host: Option<&'a str>,
}

impl std::fmt::Debug for OriginBoundRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginBoundRef")
            .field("host", &self.host)
            .field("code", &"[redacted]")
            .field("iframe_host", &self.iframe_host)
            .finish()
    }
}

/// [`Parsed`], borrowed from the message (no allocation).
#[derive(Clone, Copy, Default, Eq, PartialEq)]
pub struct ParsedRef<'a> {
    /// The code: the origin-bound one, else the SMS User Consent candidate.
    pub code: Option<&'a str>,
    /// The origin-bound line.
    pub webotp: Option<OriginBoundRef<'a>>,
    /// A trailing 11-character SMS Retriever app hash.
    pub app_hash: Option<&'a str>,
}

impl std::fmt::Debug for ParsedRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedRef")
            .field("code", &self.code.map(|_| "[redacted]"))
            .field("webotp", &self.webotp)
            .field("app_hash", &self.app_hash)
            .finish()
    }
}

impl ParsedRef<'_> {
    /// Copies into owned strings.
    pub fn to_owned(&self) -> Parsed {
        Parsed {
            code: self.code.map(str::to_owned),
            webotp: self.webotp.map(|w| OriginBound {
                host: w.host.to_owned(),
                code: w.code.to_owned(),
                iframe_host: w.iframe_host.map(str::to_owned),
            }),
            app_hash: self.app_hash.map(str::to_owned),
        }
    }
}

/// Parses a message.
///
/// ```
/// use otpgate_core::sms::parse;
/// let p = parse("<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu");
/// assert_eq!(p.code.as_deref(), Some("123456"));
/// assert_eq!(p.webotp.as_ref().map(|w| w.host.as_str()), Some("example.com"));
/// assert_eq!(p.app_hash.as_deref(), Some("FA+9qCX9VSu"));
/// ```
pub fn parse(text: &str) -> Parsed {
    parse_ref(text).to_owned()
}

/// Parses a message without allocating; see the module documentation.
pub fn parse_ref(text: &str) -> ParsedRef<'_> {
    let webotp = origin_bound(text);
    let app_hash = app_hash_span(text);
    let code = match webotp {
        Some(w) => Some(w.code),
        None => consent_code(text, app_hash.map(|(start, _)| start)),
    };
    ParsedRef {
        code,
        webotp,
        app_hash: app_hash.map(|(_, h)| h),
    }
}

/// ASCII whitespace in the WHATWG sense: TAB, LF, FF, CR, SPACE.
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The last line after CRLF/CR normalisation: everything after the last CR or LF.
fn last_line(text: &str) -> &str {
    match text
        .as_bytes()
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
    {
        // The byte at `i` is ASCII, so `i + 1` is a char boundary.
        Some(i) => &text[i + 1..],
        None => text,
    }
}

/// "Extract a marked token" at the start of `s`: `marker` then a non-empty run of
/// non-ASCII-whitespace code points. Returns the token and the rest.
fn marked_token(s: &str, marker: u8) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&marker) {
        return None;
    }
    // Non-ASCII bytes are never whitespace, so scanning bytes keeps UTF-8 boundaries: the
    // stop position is either the end or an ASCII byte.
    let end = bytes[1..]
        .iter()
        .position(|&b| is_ascii_ws(b))
        .map_or(bytes.len(), |p| p + 1);
    if end == 1 {
        return None;
    }
    Some((&s[1..end], &s[end..]))
}

/// The origin-bound code of `text`, WICG algorithm plus host validation.
pub fn origin_bound(text: &str) -> Option<OriginBoundRef<'_>> {
    let line = last_line(text);
    let (host, rest) = marked_token(line, b'@')?;
    if !is_valid_host(host) {
        return None;
    }
    let rest = rest.strip_prefix(' ')?;
    let (code, rest) = marked_token(rest, b'#')?;
    let iframe_host = rest
        .strip_prefix(' ')
        .and_then(|r| marked_token(r, b'@'))
        .map(|(h, _)| h)
        .filter(|h| is_valid_host(h));
    Some(OriginBoundRef {
        host,
        code,
        iframe_host,
    })
}

/// Whether `host` is ASCII letters/digits/hyphens in non-empty dot-separated labels (≤ 63
/// octets each, ≤ 253 in all), or a dotted-quad IPv4 address. A host whose last label is all
/// digits must be a valid dotted quad (each part 0–255 without leading zeros).
pub fn is_valid_host(host: &str) -> bool {
    let bytes = host.as_bytes();
    if bytes.is_empty() || bytes.len() > 253 {
        return false;
    }
    let mut labels = 0usize;
    let mut last_numeric = false;
    for label in bytes.split(|&b| b == b'.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return false;
        }
        labels += 1;
        last_numeric = label.iter().all(u8::is_ascii_digit);
    }
    if last_numeric {
        return labels == 4 && bytes.split(|&b| b == b'.').all(is_ipv4_part);
    }
    true
}

fn is_ipv4_part(part: &[u8]) -> bool {
    if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if part.len() > 1 && part[0] == b'0' {
        return false;
    }
    let n = part.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    n <= 255
}

/// The trailing app hash: its byte offset and text.
fn app_hash_span(text: &str) -> Option<(usize, &str)> {
    let bytes = text.as_bytes();
    let end = bytes.iter().rposition(|&b| !is_ascii_ws(b))? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|&b| is_ascii_ws(b))
        .map_or(0, |p| p + 1);
    let token = &bytes[start..end];
    if is_app_hash_like(token) {
        // `start` and `end` border ASCII bytes (or the ends), so they are char boundaries.
        Some((start, &text[start..end]))
    } else {
        None
    }
}

/// Whether `token` looks like an SMS Retriever hash (see the module documentation).
pub fn is_app_hash_like(token: &[u8]) -> bool {
    if token.len() != 11 {
        return false;
    }
    let mut letter = false;
    let mut digit_or_symbol = false;
    let mut inner_upper = false;
    let mut lower = false;
    for (i, &b) in token.iter().enumerate() {
        match b {
            b'a'..=b'z' => {
                letter = true;
                lower = true;
            }
            b'A'..=b'Z' => {
                letter = true;
                inner_upper |= i > 0;
            }
            b'0'..=b'9' | b'+' | b'/' => digit_or_symbol = true,
            _ => return false,
        }
    }
    letter && (digit_or_symbol || (inner_upper && lower))
}

/// The first SMS User Consent candidate before `stop` (the app hash, if any).
fn consent_code(text: &str, stop: Option<usize>) -> Option<&str> {
    let bytes = &text.as_bytes()[..stop.unwrap_or(text.len())];
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digit = false;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            digit |= bytes[i].is_ascii_digit();
            i += 1;
        }
        let len = i - start;
        if digit && (4..=10).contains(&len) {
            // Both ends border ASCII bytes (or the ends), so they are char boundaries.
            return Some(&text[start..i]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected origin-bound result: (host, code, iframe host).
    type Want = Option<(&'static str, &'static str, Option<&'static str>)>;

    fn ob(text: &str) -> Want {
        origin_bound(text).map(|w| {
            // Leak is fine in tests: lets the table compare against 'static strs.
            let s = |x: &str| -> &'static str { Box::leak(x.to_owned().into_boxed_str()) };
            (s(w.host), s(w.code), w.iframe_host.map(s))
        })
    }

    /// Chromium `content/browser/sms/sms_parser_unittest.cc`, with the spec result where the
    /// two differ (marked "spec").
    #[test]
    fn chromium_sms_parser_unittest_cases() {
        let cases: &[(&str, &str, Want)] = &[
            ("NoToken", "foo", None),
            ("NoSpace", "@example.com#12345", None),
            ("MultipleSpace", "@example.com  #12345", None),
            ("WhiteSpaceThatIsNotSpace", "@example.com\t#12345", None),
            ("WordInBetween", "@example.com random #12345", None),
            ("InvalidUrl", "@//example.com #123", None),
            ("FtpScheme", "@ftp://example.com #123", None),
            ("Mailto", "@mailto:goto@chromium.org #123", None),
            ("MissingOneTimeCodeParameter", "@example.com", None),
            ("MissingOneTimeCodeParameter2", "@example.com #", None),
            (
                "Basic",
                "@example.com #12345",
                Some(("example.com", "12345", None)),
            ),
            (
                "Realistic",
                "<#> Your OTP is 1234ABC.\n@example.com #12345",
                Some(("example.com", "12345", None)),
            ),
            (
                "OneTimeCode",
                "@example.com #123",
                Some(("example.com", "123", None)),
            ),
            // Chromium: http://localhost; the spec always means https.
            (
                "LocalhostForDevelopment",
                "@localhost #123",
                Some(("localhost", "123", None)),
            ),
            (
                "LocalhostIp",
                "@127.0.0.1 #123",
                Some(("127.0.0.1", "123", None)),
            ),
            ("Paths", "@example.com/foobar #123", None),
            (
                "Message",
                "hello world\n@example.com #123",
                Some(("example.com", "123", None)),
            ),
            (
                "Whitespace",
                "hello world\n@example.com #123 ",
                Some(("example.com", "123", None)),
            ),
            (
                "Dashes",
                "@web-otp-example.herokuapp.com #123",
                Some(("web-otp-example.herokuapp.com", "123", None)),
            ),
            // Chromium lower-cases through GURL; we keep the host as sent.
            (
                "CapitalLetters",
                "@Example.com #123",
                Some(("Example.com", "123", None)),
            ),
            (
                "Numbers",
                "@example1.com #123",
                Some(("example1.com", "123", None)),
            ),
            ("ForbiddenCharacters1", "@example.com!bar #123", None),
            ("ForbiddenCharacters2", "@exa$mple.com #123", None),
            ("ForbiddenCharacters3", "@exa%mple.com #123", None),
            ("ForbiddenCharacters4", "@exa&mple.com #123", None),
            ("ForbiddenCharacters5", "@exa'mple.com #123", None),
            ("ForbiddenCharacters6", "@exa(mple.com #123", None),
            ("ForbiddenCharacters7", "@exa)mple.com #123", None),
            ("ForbiddenCharacters8", "@exa*mple.com #123", None),
            ("ForbiddenCharacters9", "@exa+mple.com #123", None),
            ("ForbiddenCharacters10", "@exa,mple.com #123", None),
            ("ForbiddenCharacters11", "@exa;mple.com #123", None),
            ("ForbiddenCharacters12", "@exa=mple.com #123", None),
            ("ForbiddenCharacters13", "@exa_mple.com #123", None),
            ("ForbiddenCharacters14", "@exa~mple.com #123", None),
            ("ForbiddenCharacters15", "@exa[mple.com #123", None),
            ("ForbiddenCharacters16", "@exa]mple.com #123", None),
            ("ForbiddenCharacters17", "@exa\"mple.com #123", None),
            // Chromium accepts a trailing newline; the spec's last line is then empty.
            ("Newlines (spec)", "hello world\n@example.com #123\n", None),
            // Chromium takes b.com; the spec fails (the host token is `a.com`, then `@b.com`
            // is not `#code`).
            ("TwoTokens (spec)", "@a.com @b.com #123", None),
            ("Ports", "@a.com:8443 #123", None),
            ("Username", "@username@a.com #123", None),
            ("QueryParams", "@a.com/?foo=123 #123", None),
            ("HarmlessOriginsButInvalid", "@data://123 #123", None),
            (
                "AppHash",
                "<#> Hello World\nApp Hash: s3LhKBB0M33\n@example.com #1234",
                Some(("example.com", "1234", None)),
            ),
            (
                "OneTimeCodeCharRanges1",
                "@example.com #123456",
                Some(("example.com", "123456", None)),
            ),
            (
                "OneTimeCodeCharRanges2",
                "@example.com #abcdef",
                Some(("example.com", "abcdef", None)),
            ),
            (
                "OneTimeCodeCharRanges3",
                "@example.com #AbCdEf",
                Some(("example.com", "AbCdEf", None)),
            ),
            (
                "OneTimeCodeCharRanges4",
                "@example.com #0a1b2c",
                Some(("example.com", "0a1b2c", None)),
            ),
            (
                "OneTimeCodeCharRanges5",
                "@example.com #7+8=15",
                Some(("example.com", "7+8=15", None)),
            ),
            (
                "OneTimeCodeCharRanges6",
                "@example.com #aBc-_=.~",
                Some(("example.com", "aBc-_=.~", None)),
            ),
            (
                "OneTimeCodeCharRanges7",
                "@example.com #can-contain-emoji-😀",
                Some(("example.com", "can-contain-emoji-😀", None)),
            ),
            // Chromium cuts at `#`; the spec keeps it in the code.
            (
                "OneTimeCodeCharRanges8 (spec)",
                "@example.com #cannot-contain-hashes#yes",
                Some(("example.com", "cannot-contain-hashes#yes", None)),
            ),
            (
                "OneTimeCodeCharRanges9",
                "@example.com #can-contain-at@",
                Some(("example.com", "can-contain-at@", None)),
            ),
            (
                "EmbeddedIFrame",
                "@top.com #123 @iframe.com",
                Some(("top.com", "123", Some("iframe.com"))),
            ),
            (
                "EmbeddedIFrameTrailingSpace",
                "@top.com #123 @iframe.com ",
                Some(("top.com", "123", Some("iframe.com"))),
            ),
            (
                "EmbeddedIFrameTrailingText",
                "@top.com #123 @iframe.com foo bar",
                Some(("top.com", "123", Some("iframe.com"))),
            ),
            // Chromium fails the whole parse when the iframe host is bad; the spec + host
            // validation just drops it.
            (
                "EmbeddedIFrameInvalid (spec)",
                "@top.com #123 @ifr%ame.com",
                Some(("top.com", "123", None)),
            ),
            (
                "EmbeddedIFrameEmpty",
                "@top.com #123 @",
                Some(("top.com", "123", None)),
            ),
            // Chromium accepts the first line; the spec's last line has no code.
            (
                "EmbeddedIFrameNewline (spec)",
                "@top.com #123\n@embedded.com",
                None,
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(ob(text), *want, "{name}: {text:?}");
        }
    }

    /// The invalid examples of the WICG explainer and spec, and developer.chrome.com's "bad
    /// examples".
    #[test]
    fn wicg_invalid_examples() {
        for text in [
            "something @example.com #747723",
            "#747723 @ecommerce.example @example.com",
            "@example.com code #747723",
            "@example.com  #747723",
            "@example.com\t#747723",
            "@ #747723",
            "@example.com #",
            "@example.com",
            "example.com #747723",
            "@example.com 747723",
            "Here is your code for @example.com #123456",
            "@example.com #123456\n\nMambo Jumbo",
            "Your code is 123456\n\nApp hash #oudf08lkjsdf834",
            "@https://example.com #123456",
            "@example.com:443 #123456",
            "@example.com/path #123456",
            "@exam ple.com #123456",
            "@example.com #123456\r\n",
            "@example.com #123456\r",
            "",
            "\n",
        ] {
            assert_eq!(origin_bound(text), None, "{text:?}");
        }
    }

    #[test]
    fn spec_valid_examples() {
        let cases: &[(&str, Want)] = &[
            (
                "747723 is your ExampleCo authentication code.\n\n@example.com #747723",
                Some(("example.com", "747723", None)),
            ),
            (
                "Your code is 123456\r\n@example.com #123456",
                Some(("example.com", "123456", None)),
            ),
            (
                "Your code is 123456\r@example.com #123456",
                Some(("example.com", "123456", None)),
            ),
            (
                "x\n@ecommerce.example #747723 @example.com",
                Some(("ecommerce.example", "747723", Some("example.com"))),
            ),
            // `%host` (Apple's old doc) is trailing text.
            (
                "@shop.example #1234 %bank.example",
                Some(("shop.example", "1234", None)),
            ),
            // Two spaces before the iframe host: no embedded origin.
            ("@top.com #123  @iframe.com", Some(("top.com", "123", None))),
            ("@top.com #123\t@iframe.com", Some(("top.com", "123", None))),
            // Form feed is ASCII whitespace and ends the code.
            ("@top.com #123\u{c}x", Some(("top.com", "123", None))),
            // Non-ASCII whitespace (NBSP) is part of the code.
            ("@top.com #12\u{a0}3", Some(("top.com", "12\u{a0}3", None))),
            (
                "@top.com #123 @a.com @b.com",
                Some(("top.com", "123", Some("a.com"))),
            ),
            (
                "@xn--bcher-kva.example #1",
                Some(("xn--bcher-kva.example", "1", None)),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ob(text), *want, "{text:?}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "a",
            "example.com",
            "a-b.c-d",
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "localhost",
            "123abc.com",
            "a.b.c.d.e",
            "-a.com",
            &"a".repeat(63),
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "example.123",
            "ex ample",
            "exämple.com",
            "[::1]",
            "a:1",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(125)),
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn consent_codes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Your code is 123456", Some("123456")),
            ("G-123456 is your Google verification code.", Some("123456")),
            ("<#> Your OTP is 1234ABC.\nsomething", Some("1234ABC")),
            ("Code: ab12", Some("ab12")),
            ("Your code is 123", None),
            ("Your code is 12345678901", None),
            ("Your code is abcdef", None),
            ("Your 2FA code: 98765", Some("98765")),
            ("code=0000;", Some("0000")),
            ("Ihr Code für Example lautet 4711", Some("4711")),
            ("é1234é", Some("1234")),
            ("", None),
            // The app hash is skipped even though `9qCX9VSu` would qualify.
            ("<#> Hello FA+9qCX9VSu", None),
            ("<#> Your code is 5555 FA+9qCX9VSu", Some("5555")),
            // An origin-bound code wins.
            ("Your code is 123456\n@example.com #654321", Some("654321")),
            // An invalid origin line falls back to the consent candidate.
            ("Code 123456\n@exa_mple.com #654321", Some("123456")),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).code.as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn app_hashes() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "<#> Your ExampleApp code is: 123ABC78 FA+9qCX9VSu",
                Some("FA+9qCX9VSu"),
            ),
            ("Your code is 123ABC78\nFA+9qCX9VSu", Some("FA+9qCX9VSu")),
            ("Your code is 123ABC78\nFA+9qCX9VSu\n", Some("FA+9qCX9VSu")),
            ("<#> 1234 kFUwfusCq/+", Some("kFUwfusCq/+")),
            ("<#> 1234 8JbtsPvGnRR", Some("8JbtsPvGnRR")),
            ("<#> 1234 kFUwfusCqAb", Some("kFUwfusCqAb")),
            ("@example.com #123456 FA+9qCX9VSu", Some("FA+9qCX9VSu")),
            ("Thanks for the Application", None),
            ("thanks for the information", None),
            ("THANKS FOR THE INFORMATION", None),
            ("Your code is 12345678901", None),
            ("hash FA+9qCX9VS", None),
            ("hash FA+9qCX9VSuu", None),
            ("hash FA-9qCX9VSu", None),
            ("hash:FA+9qCX9VSu", None),
            ("FA+9qCX9VSu", Some("FA+9qCX9VSu")),
            ("", None),
            ("   ", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).app_hash.as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn json_shape_has_every_key() {
        let none = serde_json::to_string(&parse("hello")).expect("serialise");
        assert_eq!(none, r#"{"code":null,"webotp":null,"app_hash":null}"#);
        let full = serde_json::to_string(&parse(
            "<#> Your Example code is 123456\n@example.com #123456 @bank.example FA+9qCX9VSu",
        ))
        .expect("serialise");
        assert_eq!(
            full,
            r#"{"code":"123456","webotp":{"host":"example.com","code":"123456","iframe_host":"bank.example"},"app_hash":"FA+9qCX9VSu"}"#
        );
    }

    #[test]
    fn debug_redacts_codes() {
        let p = parse("Your code is 123456\n@example.com #654321");
        let dbg = format!("{p:?} {:?}", parse_ref("@example.com #654321"));
        assert!(!dbg.contains("123456") && !dbg.contains("654321"), "{dbg}");
        assert!(dbg.contains("example.com"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(?s).{0,200}") {
            let p = parse(&text);
            if let Some(w) = &p.webotp {
                proptest::prop_assert!(is_valid_host(&w.host));
                proptest::prop_assert!(!w.code.is_empty());
                proptest::prop_assert_eq!(p.code.as_deref(), Some(w.code.as_str()));
            }
        }

        #[test]
        fn never_panics_on_otp_like_text(text in "(?s)[@# \n\r\t\u{c}a-z0-9.é😀+/-]{0,80}") {
            let p = parse(&text);
            if let Some(w) = &p.webotp {
                // The origin-bound line is the last line.
                let last = last_line(&text);
                let prefix = format!("@{} #{}", w.host, w.code);
                proptest::prop_assert!(last.starts_with(&prefix));
            }
        }
    }
}

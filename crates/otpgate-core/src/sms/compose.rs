//! Composition of OTP SMS.
//!
//! One message has to satisfy several readers at once (reference `otp-formats.md` §0 and §6):
//! SMS Retriever (the 11-character app hash; the legacy rules also want the message to begin
//! with `<#>` and end with the hash), SMS User Consent (a 4–10 character alphanumeric code with
//! a digit in the text), WebOTP in Chrome and AutoFill in Safari (the last line is
//! `@host #code`, optionally followed by ` @iframe-host`, with no trailing newline). The default
//! layout, [`Layout::Combined`], is
//!
//! ```text
//! <#> Your Example code is 123456
//! @example.com #123456 FA+9qCX9VSu
//! ```
//!
//! The app hash is trailing text of the origin-bound line (ignored by the spec and by Chromium)
//! and still the last 11 characters of the message. Without an app hash the `<#> ` prefix and
//! the hash are left out; without an origin the `@host #code` line is left out (and with an app
//! hash the hash goes on its own last line); without either the message is the human text.
//!
//! The human text comes from a [`Template`]: the request's own, else the app's
//! [`TemplateSet`] for the locale, else the built-in one for the locale (`en`, `es`, `fr`,
//! `de`, `pt`, `it`, `nl`; `pt-BR` uses `pt`, anything unknown uses `en`). The built-in wording
//! stays inside GSM-7 so the message keeps 160 characters instead of 70 (`es` and `pt` write
//! `codigo` without its accent, as many senders in those markets do for this reason).
//!
//! Every composed message is checked before it is returned, by parsing it back with
//! [`super::parse`]: the origin-bound line must give back exactly the origin, code and iframe
//! origin; without an origin there must be no origin-bound line (a template cannot fake one)
//! and no other SMS User Consent candidate before the code; the app hash must be the last token;
//! and the whole message must fit one unconcatenated SMS.
//!
//! App names are refused (not sanitised) when they contain control characters (newlines
//! included), line or paragraph separators, `@` or `#`: a name is configuration, and a
//! silently altered brand name is worse than a clear error. Placeholders are substituted in one
//! pass, so a `{code}` inside an app name stays literal text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use super::app_hash::is_valid_app_hash;
use super::app_hash::verify_app_hash;
use super::parse::{is_valid_host, parse_ref};
use super::segments::{Encoding, Segments, gsm7_width, segments};

/// Longest accepted app name, in characters.
pub const MAX_APP_LEN: usize = 40;

/// The built-in human texts, by primary language subtag. Each mentions `{app}` and `{code}`
/// and is GSM-7 only.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("en", "Your {app} code is {code}"),
    ("es", "Tu codigo de {app} es {code}"),
    ("fr", "Votre code {app} est {code}"),
    ("de", "Ihr Code für {app} lautet {code}"),
    ("pt", "Seu codigo {app} é {code}"),
    ("it", "Il tuo codice {app} è {code}"),
    ("nl", "Je {app} code is {code}"),
];

/// A human-text template with `{app}`, `{code}`, `{origin}`, `{app_hash}` placeholders
/// (`{{` and `}}` are literal braces). The composer adds the `<#>` marker, the origin-bound
/// line and the app hash around it according to the [`Layout`].
///
/// A `Template` can only be made through [`Template::new`] (deserializing calls it too), so
/// every template in hand is a checked one.
#[derive(Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template(String);

impl TryFrom<String> for Template {
    type Error = ComposeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(text)
    }
}

impl From<Template> for String {
    fn from(t: Template) -> Self {
        t.0
    }
}

impl Template {
    /// A checked template: known placeholders only, balanced braces, `{code}` present.
    ///
    /// # Errors
    /// [`ComposeError::UnknownPlaceholder`], [`ComposeError::BadTemplate`],
    /// [`ComposeError::CodeMissing`].
    pub fn new(text: impl Into<String>) -> Result<Self, ComposeError> {
        let t = Self(text.into());
        t.check()?;
        Ok(t)
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<(), ComposeError> {
        check_template_chars(&self.0)?;
        let mut has_code = false;
        for piece in Pieces::new(&self.0) {
            if let Piece::Placeholder(Placeholder::Code) = piece? {
                has_code = true;
            }
        }
        if has_code {
            Ok(())
        } else {
            Err(ComposeError::CodeMissing)
        }
    }

    /// Whether the template's own wording (outside its placeholders) needs UCS-2.
    pub fn forces_ucs2(&self) -> bool {
        Pieces::new(&self.0).any(|p| match p {
            Ok(Piece::Literal(s)) => s.chars().any(|c| gsm7_width(c) == 0),
            _ => false,
        })
    }
}

/// An app's templates by locale (`"en"`, `"pt"`, `"pt-br"`, …; tags are matched
/// case-insensitively and `_` equals `-`).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateSet(pub BTreeMap<String, Template>);

impl TemplateSet {
    /// The template for `tag` (exact tag first, then its primary subtag).
    pub fn find(&self, tag: &str) -> Option<(&str, &Template)> {
        let tag = normalize_locale(tag);
        let primary = tag.split('-').next().unwrap_or_default();
        [tag.as_str(), primary].into_iter().find_map(|want| {
            self.0
                .iter()
                .find(|(k, _)| normalize_locale(k) == want)
                .map(|(k, t)| (k.as_str(), t))
        })
    }
}

/// Where the machine-readable parts go.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layout {
    /// `<#> {text}\n@origin #code [@iframe] {app_hash}`: satisfies every documented rule
    /// (legacy and current SMS Retriever, the WebOTP spec, Chromium, Safari).
    #[default]
    Combined,
    /// `{text}\n{app_hash}\n@origin #code [@iframe]`: no trailing text after the code; fails
    /// only the legacy Retriever "end with the hash" rule.
    HashLine,
}

/// What to compose.
#[derive(Clone, Copy, Default)]
pub struct ComposeRequest<'a> {
    /// The app name shown to the user (`{app}`).
    pub app: &'a str,
    /// The one-time code (`{code}`): 4–10 ASCII letters or digits.
    pub code: &'a str,
    /// The top-level origin's host for WebOTP / Safari (`{origin}`), e.g. `example.com`;
    /// lower-cased before use.
    pub origin: Option<&'a str>,
    /// The embedded (iframe) origin's host, for a code entered inside a cross-site iframe.
    pub iframe_origin: Option<&'a str>,
    /// The 11-character SMS Retriever hash (`{app_hash}`).
    pub app_hash: Option<&'a str>,
    /// The recipient's locale (BCP 47, e.g. `pt-BR`); `en` when absent or unknown.
    pub locale: Option<&'a str>,
    /// A template that overrides the app's and the built-in ones.
    pub template: Option<&'a Template>,
    /// The app's templates by locale, consulted before the built-in ones.
    pub templates: Option<&'a TemplateSet>,
    /// Where the machine-readable parts go.
    pub layout: Layout,
}

impl<'a> ComposeRequest<'a> {
    /// A request for `app` and `code` with no origin, no app hash and the English text.
    pub fn new(app: &'a str, code: &'a str) -> Self {
        Self {
            app,
            code,
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for ComposeRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposeRequest")
            .field("app", &self.app)
            .field("code", &"[redacted]")
            .field("origin", &self.origin)
            .field("iframe_origin", &self.iframe_origin)
            .field("app_hash", &self.app_hash)
            .field("locale", &self.locale)
            .field("template", &self.template)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A composed message.
#[derive(Clone, Eq, PartialEq, Serialize)]
pub struct Composed {
    /// The SMS text (no trailing newline).
    pub text: String,
    /// The locale whose template was used (`"en"`, `"pt"`, an app template's key, or the
    /// requested locale for an explicit template; `"und"` if there was none or it does not
    /// look like a BCP 47 tag).
    pub locale: String,
    /// Its encoding and length (always one segment).
    pub segments: Segments,
    /// Whether the template's own wording needs UCS-2 (e.g. `ç` or `’`); the app name or the
    /// hosts can also force UCS-2, which this does not report.
    pub ucs2_forced_by_template: bool,
}

impl std::fmt::Debug for Composed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composed")
            .field("text", &"[redacted]")
            .field("locale", &self.locale)
            .field("segments", &self.segments)
            .field("ucs2_forced_by_template", &self.ucs2_forced_by_template)
            .finish()
    }
}

/// Why a message could not be composed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The app name is empty, too long, or contains a control character, a line separator,
    /// `@` or `#`.
    #[error("bad app name: {0}")]
    BadApp(&'static str),
    /// The code is not 4–10 ASCII letters or digits.
    #[error("the code must be 4 to 10 ASCII letters or digits")]
    BadCode,
    /// The origin is not a host (ASCII letters, digits, hyphens in dot-separated labels, or a
    /// dotted-quad IPv4 address; no scheme, port or path).
    #[error("bad origin host (expected e.g. example.com, without scheme, port or path)")]
    BadOrigin,
    /// The iframe origin is not a host.
    #[error("bad iframe origin host (expected e.g. bank.example, without scheme, port or path)")]
    BadIframeOrigin,
    /// An iframe origin was given without a top-level origin.
    #[error("an iframe origin needs a top-level origin")]
    IframeWithoutOrigin,
    /// The app hash is not 11 characters of the standard base64 alphabet.
    #[error("the app hash must be 11 characters of A-Z a-z 0-9 + /")]
    BadAppHash,
    /// The template names a placeholder other than `{app}`, `{code}`, `{origin}`, `{app_hash}`.
    #[error("unknown placeholder {{{0}}} (known: {{app}}, {{code}}, {{origin}}, {{app_hash}})")]
    UnknownPlaceholder(String),
    /// The template has an unbalanced `{` or `}` (write `{{` and `}}` for literal braces).
    #[error("bad template: {0}")]
    BadTemplate(&'static str),
    /// The template uses a placeholder whose value the request does not have.
    #[error("the template uses {{{0}}} but no value was given")]
    MissingValue(&'static str),
    /// The human text does not contain the code (SMS User Consent and people need it).
    #[error("the human text does not contain the code")]
    CodeMissing,
    /// Another SMS User Consent candidate (4–10 alphanumerics with a digit) comes before the
    /// code, so an app reading the first candidate would take the wrong one.
    #[error("the text has another code-like token before the code")]
    AmbiguousCode,
    /// The message does not fit one unconcatenated SMS.
    #[error("message does not fit one SMS ({units} {encoding} units, limit {limit})")]
    TooLong {
        /// The encoding the message needs.
        encoding: Encoding,
        /// Its length in that encoding's units.
        units: u32,
        /// The single-SMS limit (160 or 70).
        limit: u32,
    },
    /// Parsing the message back does not give the origin-bound line it was meant to carry.
    #[error("the message breaks the `@origin #code` last-line rule")]
    OriginLineBroken,
    /// The message carries an origin-bound line although no origin was requested (a template
    /// trying to bind the code to some host).
    #[error("the message contains an `@host #code` line although no origin was given")]
    FakeOriginLine,
    /// The app hash is not the last token of the message.
    #[error("the app hash is not the last token of the message")]
    AppHashNotLast,
}

impl ComposeError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadApp(_) => "bad_app_name",
            Self::BadCode => "bad_code",
            Self::BadOrigin => "bad_origin",
            Self::BadIframeOrigin => "bad_iframe_origin",
            Self::IframeWithoutOrigin => "iframe_without_origin",
            Self::BadAppHash => "bad_app_hash",
            Self::UnknownPlaceholder(_) => "unknown_placeholder",
            Self::BadTemplate(_) => "bad_template",
            Self::MissingValue(_) => "missing_value",
            Self::CodeMissing => "code_missing",
            Self::AmbiguousCode => "ambiguous_code",
            Self::TooLong { .. } => "too_long",
            Self::OriginLineBroken => "origin_line_broken",
            Self::FakeOriginLine => "fake_origin_line",
            Self::AppHashNotLast => "app_hash_not_last",
        }
    }
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Placeholder {
    App,
    Code,
    Origin,
    AppHash,
}

#[derive(Debug, Eq, PartialEq)]
enum Piece<'t> {
    Literal(&'t str),
    Placeholder(Placeholder),
}

/// The pieces of a template, in order.
struct Pieces<'t> {
    rest: &'t str,
    failed: bool,
}

impl<'t> Pieces<'t> {
    fn new(template: &'t str) -> Self {
        Self {
            rest: template,
            failed: false,
        }
    }
}

impl<'t> Iterator for Pieces<'t> {
    type Item = Result<Piece<'t>, ComposeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let s = self.rest;
        let fail = |me: &mut Self, e| {
            me.failed = true;
            Some(Err(e))
        };
        match s.find(['{', '}']) {
            None => {
                self.rest = "";
                Some(Ok(Piece::Literal(s)))
            }
            Some(0) => {
                if let Some(r) = s.strip_prefix("{{") {
                    self.rest = r;
                    return Some(Ok(Piece::Literal("{")));
                }
                if let Some(r) = s.strip_prefix("}}") {
                    self.rest = r;
                    return Some(Ok(Piece::Literal("}")));
                }
                if s.starts_with('}') {
                    return fail(
                        self,
                        ComposeError::BadTemplate("unmatched '}' (write '}}')"),
                    );
                }
                let Some(end) = s.find('}') else {
                    return fail(self, ComposeError::BadTemplate("unclosed '{' (write '{{')"));
                };
                let name = &s[1..end];
                let p = match name {
                    "app" => Placeholder::App,
                    "code" => Placeholder::Code,
                    "origin" => Placeholder::Origin,
                    "app_hash" => Placeholder::AppHash,
                    _ if name.contains('{') => {
                        return fail(self, ComposeError::BadTemplate("unclosed '{' (write '{{')"));
                    }
                    _ => {
                        let shown: String = name.chars().take(32).collect();
                        return fail(self, ComposeError::UnknownPlaceholder(shown));
                    }
                };
                self.rest = &s[end + 1..];
                Some(Ok(Piece::Placeholder(p)))
            }
            Some(i) => {
                self.rest = &s[i..];
                Some(Ok(Piece::Literal(&s[..i])))
            }
        }
    }
}

/// Lower-cases a BCP 47 tag and writes `_` as `-`.
fn normalize_locale(tag: &str) -> String {
    tag.trim()
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A BCP 47-looking tag: 1–35 ASCII letters, digits and hyphens, starting with a letter.
fn is_plausible_locale(tag: &str) -> bool {
    (1..=35).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The built-in template for `tag` (by primary subtag), if there is one.
pub fn builtin_template(tag: &str) -> Option<(&'static str, &'static str)> {
    let tag = normalize_locale(tag);
    let primary = tag.split('-').next().unwrap_or_default();
    BUILTIN_TEMPLATES
        .iter()
        .copied()
        .find(|(l, _)| *l == primary)
}

/// Templates may span lines (LF) but carry no other control character (CR, FF, TAB, …) and no
/// Unicode line or paragraph separator: those would move or hide line breaks.
fn check_template_chars(template: &str) -> Result<(), ComposeError> {
    if template
        .chars()
        .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(ComposeError::BadTemplate(
            "control character or line separator other than a newline",
        ));
    }
    Ok(())
}

fn check_app(app: &str) -> Result<(), ComposeError> {
    if app.trim().is_empty() {
        return Err(ComposeError::BadApp("empty"));
    }
    if app.chars().count() > MAX_APP_LEN {
        return Err(ComposeError::BadApp("longer than 40 characters"));
    }
    if app
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(ComposeError::BadApp(
            "contains a control character or line break",
        ));
    }
    if app.contains(['@', '#']) {
        return Err(ComposeError::BadApp("contains '@' or '#'"));
    }
    Ok(())
}

fn check_code(code: &str) -> Result<(), ComposeError> {
    if (4..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ComposeError::BadCode)
    }
}

fn check_host(host: &str, err: ComposeError) -> Result<String, ComposeError> {
    let lower = host.to_ascii_lowercase();
    if is_valid_host(&lower) {
        Ok(lower)
    } else {
        Err(err)
    }
}

/// Whether `code` appears in `text` as a whole alphanumeric token.
fn contains_token(text: &str, code: &str) -> bool {
    // Byte windows rather than `match_indices`: the code is ASCII (checked first), so a match
    // is on character boundaries, and a plain scan keeps core's two-way string searcher (2 KB)
    // out of the wasm. Overlapping windows find the same tokens: a token is a whole run of
    // letters and digits.
    let (t, c) = (text.as_bytes(), code.as_bytes());
    !c.is_empty()
        && t.windows(c.len()).enumerate().any(|(i, w)| {
            w == c
                && !(i > 0 && t[i - 1].is_ascii_alphanumeric())
                && !t.get(i + c.len()).is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// Composes the OTP SMS for `req`; see the module documentation.
///
/// ```
/// use otpgate_core::sms::{ComposeRequest, compose};
/// let msg = compose(ComposeRequest {
///     origin: Some("example.com"),
///     app_hash: Some("FA+9qCX9VSu"),
///     ..ComposeRequest::new("Example", "123456")
/// })?;
/// assert_eq!(msg.text, "<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu");
/// assert_eq!(msg.segments.segments, 1);
/// # Ok::<(), otpgate_core::sms::ComposeError>(())
/// ```
///
/// # Errors
/// [`ComposeError`]: bad input, a bad template, or a message that would not parse back or
/// not fit one SMS.
pub fn compose(req: ComposeRequest<'_>) -> Result<Composed, ComposeError> {
    check_app(req.app)?;
    check_code(req.code)?;
    let origin = req
        .origin
        .map(|o| check_host(o, ComposeError::BadOrigin))
        .transpose()?;
    let iframe = req
        .iframe_origin
        .map(|o| check_host(o, ComposeError::BadIframeOrigin))
        .transpose()?;
    if iframe.is_some() && origin.is_none() {
        return Err(ComposeError::IframeWithoutOrigin);
    }
    if let Some(h) = req.app_hash {
        if !is_valid_app_hash(h) {
            return Err(ComposeError::BadAppHash);
        }
    }

    let (locale, template): (String, &str) = if let Some(t) = req.template {
        (
            req.locale
                .map(normalize_locale)
                .filter(|l| is_plausible_locale(l))
                .unwrap_or_else(|| "und".to_owned()),
            t.as_str(),
        )
    } else if let Some((l, t)) = req.templates.zip(req.locale).and_then(|(s, l)| s.find(l)) {
        (l.to_owned(), t.as_str())
    } else if let Some((l, t)) = req.locale.and_then(builtin_template) {
        (l.to_owned(), t)
    } else if let Some((l, t)) = req.templates.and_then(|s| s.find("en")) {
        (l.to_owned(), t.as_str())
    } else {
        ("en".to_owned(), BUILTIN_TEMPLATES[0].1)
    };

    check_template_chars(template)?;
    // Render the human text in one pass (values are never re-scanned for placeholders).
    let mut human = String::with_capacity(template.len() + 48);
    let mut forced = false;
    for piece in Pieces::new(template) {
        match piece? {
            Piece::Literal(s) => {
                forced |= s.chars().any(|c| gsm7_width(c) == 0);
                human.push_str(s);
            }
            Piece::Placeholder(Placeholder::App) => human.push_str(req.app),
            Piece::Placeholder(Placeholder::Code) => human.push_str(req.code),
            Piece::Placeholder(Placeholder::Origin) => {
                human.push_str(
                    origin
                        .as_deref()
                        .ok_or(ComposeError::MissingValue("origin"))?,
                );
            }
            Piece::Placeholder(Placeholder::AppHash) => {
                human.push_str(req.app_hash.ok_or(ComposeError::MissingValue("app_hash"))?);
            }
        }
    }
    // Leading and trailing whitespace (blank lines included) is dropped: the layout adds its
    // own line breaks, and a trailing newline would hide the origin-bound line.
    let human = human.trim_matches(|c: char| c.is_ascii_whitespace());
    if !contains_token(human, req.code) {
        return Err(ComposeError::CodeMissing);
    }

    // Lay out the machine-readable parts.
    let mut text = String::with_capacity(human.len() + 64);
    if req.app_hash.is_some() && req.layout == Layout::Combined {
        text.push_str("<#> ");
    }
    text.push_str(human);
    let origin_line = origin.as_ref().map(|o| {
        let mut line = format!("@{o} #{}", req.code);
        if let Some(f) = &iframe {
            let _ = write!(line, " @{f}");
        }
        line
    });
    match (req.layout, &origin_line, req.app_hash) {
        (_, None, None) => {}
        (_, None, Some(h)) => {
            text.push('\n');
            text.push_str(h);
        }
        (_, Some(line), None) => {
            text.push('\n');
            text.push_str(line);
        }
        (Layout::Combined, Some(line), Some(h)) => {
            text.push('\n');
            text.push_str(line);
            text.push(' ');
            text.push_str(h);
        }
        (Layout::HashLine, Some(line), Some(h)) => {
            text.push('\n');
            text.push_str(h);
            text.push('\n');
            text.push_str(line);
        }
    }

    // Parse it back as a phone and a browser would.
    let back = parse_ref(&text);
    match (&origin, back.webotp) {
        (None, None) => {
            if back.code.is_some_and(|c| c != req.code) {
                return Err(ComposeError::AmbiguousCode);
            }
        }
        (None, Some(_)) => return Err(ComposeError::FakeOriginLine),
        (Some(_), None) => return Err(ComposeError::OriginLineBroken),
        (Some(o), Some(w)) => {
            if w.host != o || w.code != req.code || w.iframe_host != iframe.as_deref() {
                return Err(ComposeError::OriginLineBroken);
            }
        }
    }
    if let Some(h) = req.app_hash {
        // Combined: the last token, ending the text (legacy Retriever rule); HashLine: a
        // token of its own (current rule).
        let ok = match req.layout {
            Layout::Combined => text
                .strip_suffix(h)
                .is_some_and(|head| head.ends_with([' ', '\n'])),
            Layout::HashLine => verify_app_hash(&text, h),
        };
        if !ok {
            return Err(ComposeError::AppHashNotLast);
        }
    }

    let segs = segments(&text);
    if segs.segments > 1 {
        return Err(ComposeError::TooLong {
            encoding: segs.encoding,
            units: segs.units,
            limit: segs.encoding.single_limit(),
        });
    }
    Ok(Composed {
        text,
        locale,
        segments: segs,
        ucs2_forced_by_template: forced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::parse;

    fn req<'a>(app: &'a str, code: &'a str) -> ComposeRequest<'a> {
        ComposeRequest::new(app, code)
    }

    #[test]
    fn default_layouts() {
        let full = ComposeRequest {
            origin: Some("example.com"),
            app_hash: Some("FA+9qCX9VSu"),
            ..req("Example", "123456")
        };
        let cases: Vec<(ComposeRequest<'_>, &str)> = vec![
            (
                full,
                "<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu",
            ),
            (
                ComposeRequest {
                    iframe_origin: Some("bank.example"),
                    ..full
                },
                "<#> Your Example code is 123456\n@example.com #123456 @bank.example FA+9qCX9VSu",
            ),
            (
                ComposeRequest {
                    layout: Layout::HashLine,
                    ..full
                },
                "Your Example code is 123456\nFA+9qCX9VSu\n@example.com #123456",
            ),
            (
                ComposeRequest {
                    app_hash: None,
                    ..full
                },
                "Your Example code is 123456\n@example.com #123456",
            ),
            (
                ComposeRequest {
                    origin: None,
                    ..full
                },
                "<#> Your Example code is 123456\nFA+9qCX9VSu",
            ),
            (req("Example", "123456"), "Your Example code is 123456"),
            (
                ComposeRequest {
                    origin: Some("Example.COM"),
                    app_hash: None,
                    ..full
                },
                "Your Example code is 123456\n@example.com #123456",
            ),
        ];
        for (r, want) in cases {
            let c = compose(r).expect("composes");
            assert_eq!(c.text, want);
            assert_eq!(c.segments.encoding, Encoding::Gsm7);
            assert_eq!(c.segments.segments, 1);
            assert!(!c.ucs2_forced_by_template);
        }
    }

    #[test]
    fn reference_layout_is_64_septets() {
        let c = compose(ComposeRequest {
            origin: Some("example.com"),
            app_hash: Some("FA+9qCX9VSu"),
            ..req("Example", "123456")
        })
        .expect("composes");
        assert_eq!(c.segments.units, 64);
        let p = parse(&c.text);
        assert_eq!(p.code.as_deref(), Some("123456"));
        assert_eq!(p.app_hash.as_deref(), Some("FA+9qCX9VSu"));
    }

    #[test]
    fn builtin_locales() {
        for (tag, want_locale, needle) in [
            ("en", "en", "Your Acme code is 4711"),
            ("es-MX", "es", "Tu codigo de Acme es 4711"),
            ("fr_CA", "fr", "Votre code Acme est 4711"),
            ("DE", "de", "Ihr Code für Acme lautet 4711"),
            ("pt-BR", "pt", "Seu codigo Acme é 4711"),
            ("it", "it", "Il tuo codice Acme è 4711"),
            ("nl-BE", "nl", "Je Acme code is 4711"),
            ("ja", "en", "Your Acme code is 4711"),
            ("<script>", "en", "Your Acme code is 4711"),
            ("", "en", "Your Acme code is 4711"),
        ] {
            let c = compose(ComposeRequest {
                locale: Some(tag),
                ..req("Acme", "4711")
            })
            .expect("composes");
            assert_eq!(
                (c.locale.as_str(), c.text.as_str()),
                (want_locale, needle),
                "{tag}"
            );
            assert_eq!(c.segments.encoding, Encoding::Gsm7, "{tag}");
        }
        for (_, t) in BUILTIN_TEMPLATES {
            let t = Template::new(*t).expect("valid");
            assert!(!t.forces_ucs2());
        }
    }

    #[test]
    fn app_templates_and_ucs2_by_template() {
        let mut set = TemplateSet::default();
        set.0.insert(
            "fr".into(),
            Template::new("Ton code {app} : {code} ’").expect("valid"),
        );
        set.0.insert(
            "pt-BR".into(),
            Template::new("Código {app}: {code}").expect("valid"),
        );
        set.0.insert(
            "pt".into(),
            Template::new("PT {app}: {code}").expect("valid"),
        );
        let base = ComposeRequest {
            templates: Some(&set),
            ..req("Acme", "4711")
        };
        let c = compose(ComposeRequest {
            locale: Some("fr-FR"),
            ..base
        })
        .expect("composes");
        assert_eq!(c.locale, "fr");
        assert_eq!(c.segments.encoding, Encoding::Ucs2);
        assert!(c.ucs2_forced_by_template);
        let c = compose(ComposeRequest {
            locale: Some("pt_br"),
            ..base
        })
        .expect("composes");
        assert_eq!(
            (c.locale.as_str(), c.text.as_str()),
            ("pt-BR", "Código Acme: 4711")
        );
        assert!(c.ucs2_forced_by_template);
        let c = compose(ComposeRequest {
            locale: Some("pt-PT"),
            ..base
        })
        .expect("composes");
        assert_eq!(c.text, "PT Acme: 4711");
        assert!(!c.ucs2_forced_by_template);
        // A locale the app lacks falls back to the built-in one.
        let c = compose(ComposeRequest {
            locale: Some("de"),
            ..base
        })
        .expect("composes");
        assert_eq!(c.locale, "de");
        // An app name can force UCS-2 without the template being blamed.
        let c = compose(req("Açaí", "4711")).expect("composes");
        assert_eq!(c.segments.encoding, Encoding::Ucs2);
        assert!(!c.ucs2_forced_by_template);
    }

    #[test]
    fn explicit_template_with_all_placeholders() {
        let t = Template::new("{{{app}}} {code} for {origin}; hash {app_hash}.").expect("valid");
        let c = compose(ComposeRequest {
            template: Some(&t),
            origin: Some("example.com"),
            app_hash: Some("FA+9qCX9VSu"),
            locale: Some("en-GB"),
            ..req("Acme", "4711")
        })
        .expect("composes");
        assert_eq!(
            c.text,
            "<#> {Acme} 4711 for example.com; hash FA+9qCX9VSu.\n@example.com #4711 FA+9qCX9VSu"
        );
        assert_eq!(c.locale, "en-gb");
        for (locale, want) in [
            (None, "und"),
            (Some("<b>x</b>"), "und"),
            (Some("pt_BR"), "pt-br"),
        ] {
            let r = ComposeRequest {
                template: Some(&t),
                locale,
                origin: Some("example.com"),
                app_hash: Some("FA+9qCX9VSu"),
                ..req("Acme", "4711")
            };
            assert_eq!(compose(r).map(|c| c.locale).as_deref(), Ok(want));
        }
    }

    #[test]
    fn errors() {
        let t = |s: &str| Template::new(s).expect("a valid template");
        // A template that cannot be one is refused when it is made (and when it is read).
        for (text, code) in [
            ("Your {app} code is {code} {oops}", "unknown_placeholder"),
            ("Your {app code is {code}", "bad_template"),
            ("Your } code is {code}", "bad_template"),
            ("Your {app} code", "code_missing"),
        ] {
            assert_eq!(
                Template::new(text).map_err(|e| e.code()),
                Err(code),
                "{text:?}"
            );
            let json = serde_json::to_string(text).expect("json");
            assert!(serde_json::from_str::<Template>(&json).is_err(), "{text:?}");
        }
        let uses_origin = t("{code} for {origin}");
        let fake = t("Your code is {code}\n@evil.example #{code}");
        let ambiguous = t("Order A1234 code {code}");
        let long = t(&format!("{} {{code}}", "x".repeat(150)));
        let good = ComposeRequest {
            origin: Some("example.com"),
            app_hash: Some("FA+9qCX9VSu"),
            ..req("Example", "123456")
        };
        let a41 = "A".repeat(41);
        let umlauts = "ç".repeat(40);
        let cases: Vec<(ComposeRequest<'_>, &str)> = vec![
            (req("", "123456"), "bad_app_name"),
            (req("  ", "123456"), "bad_app_name"),
            (req(&a41, "123456"), "bad_app_name"),
            (req("Evil\n@evil.example #123456", "123456"), "bad_app_name"),
            (req("Evil\r", "123456"), "bad_app_name"),
            (req("Evil\u{2028}x", "123456"), "bad_app_name"),
            (req("Evil\u{85}x", "123456"), "bad_app_name"),
            (req("a@b", "123456"), "bad_app_name"),
            (req("<#>", "123456"), "bad_app_name"),
            (req("Example", "123"), "bad_code"),
            (req("Example", "12345678901"), "bad_code"),
            (req("Example", "12 34"), "bad_code"),
            (req("Example", "12#34"), "bad_code"),
            (req("Example", "１２３４"), "bad_code"),
            (
                ComposeRequest {
                    origin: Some("https://example.com"),
                    ..good
                },
                "bad_origin",
            ),
            (
                ComposeRequest {
                    origin: Some("example.com:443"),
                    ..good
                },
                "bad_origin",
            ),
            (
                ComposeRequest {
                    origin: Some("exa mple.com"),
                    ..good
                },
                "bad_origin",
            ),
            (
                ComposeRequest {
                    origin: Some(""),
                    ..good
                },
                "bad_origin",
            ),
            (
                ComposeRequest {
                    origin: Some("example.com\n"),
                    ..good
                },
                "bad_origin",
            ),
            (
                ComposeRequest {
                    iframe_origin: Some("a/b"),
                    ..good
                },
                "bad_iframe_origin",
            ),
            (
                ComposeRequest {
                    origin: None,
                    iframe_origin: Some("bank.example"),
                    ..good
                },
                "iframe_without_origin",
            ),
            (
                ComposeRequest {
                    app_hash: Some("FA+9qCX9VS"),
                    ..good
                },
                "bad_app_hash",
            ),
            (
                ComposeRequest {
                    app_hash: Some("FA-9qCX9VSu"),
                    ..good
                },
                "bad_app_hash",
            ),
            (
                ComposeRequest {
                    app_hash: Some("FA+9qCX9VS\n"),
                    ..good
                },
                "bad_app_hash",
            ),
            (
                ComposeRequest {
                    template: Some(&uses_origin),
                    origin: None,
                    ..good
                },
                "missing_value",
            ),
            (
                ComposeRequest {
                    template: Some(&fake),
                    origin: None,
                    app_hash: None,
                    ..good
                },
                "fake_origin_line",
            ),
            (
                ComposeRequest {
                    template: Some(&ambiguous),
                    origin: None,
                    app_hash: None,
                    ..good
                },
                "ambiguous_code",
            ),
            (
                ComposeRequest {
                    template: Some(&long),
                    ..good
                },
                "too_long",
            ),
            (
                ComposeRequest {
                    app: &umlauts,
                    ..good
                },
                "too_long",
            ),
        ];
        for (r, want) in cases {
            let got = compose(r).map(|c| c.text).map_err(|e| e.code());
            assert_eq!(got, Err(want), "{r:?}");
        }
        assert_eq!(
            Template::new("{code} {nope}").map_err(|e| e.code()),
            Err("unknown_placeholder")
        );
        assert_eq!(
            Template::new("no code").map_err(|e| e.code()),
            Err("code_missing")
        );
    }

    #[test]
    fn template_whitespace_is_trimmed() {
        let t = Template::new("\n  Code {code}\nfor {app} \n\n").expect("valid");
        for (origin, want) in [
            (None, "Code 123456\nfor Example"),
            (
                Some("example.com"),
                "Code 123456\nfor Example\n@example.com #123456",
            ),
        ] {
            let r = ComposeRequest {
                template: Some(&t),
                origin,
                ..req("Example", "123456")
            };
            assert_eq!(compose(r).map(|c| c.text).as_deref(), Ok(want));
        }
    }

    #[test]
    fn placeholders_in_app_name_stay_literal() {
        let c = compose(ComposeRequest {
            origin: Some("example.com"),
            ..req("{code}{origin}", "4711")
        })
        .expect("composes");
        assert_eq!(
            c.text,
            "Your {code}{origin} code is 4711\n@example.com #4711"
        );
        let p = parse(&c.text);
        assert_eq!(
            p.webotp.map(|w| (w.host, w.code)),
            Some(("example.com".into(), "4711".into()))
        );
    }

    #[test]
    fn fits_exactly_one_sms() {
        // 160 septets is fine, 161 is not.
        let base = "Your {code} ".len() - "{code}".len() + 6;
        let fill =
            |n: usize| Template::new(format!("Your {{code}} {}", "x".repeat(n))).expect("valid");
        let t160 = fill(160 - base);
        let t161 = fill(161 - base);
        let c = compose(ComposeRequest {
            template: Some(&t160),
            ..req("A", "123456")
        })
        .expect("fits");
        assert_eq!(c.segments.units, 160);
        let e = compose(ComposeRequest {
            template: Some(&t161),
            ..req("A", "123456")
        });
        assert_eq!(
            e.map(|c| c.text),
            Err(ComposeError::TooLong {
                encoding: Encoding::Gsm7,
                units: 161,
                limit: 160
            })
        );
    }

    #[test]
    fn debug_redacts_the_code() {
        let r = req("Example", "987654");
        let c = compose(r).expect("composes");
        let dbg = format!("{r:?} {c:?}");
        assert!(!dbg.contains("987654"), "{dbg}");
    }

    proptest::proptest! {
        #[test]
        fn compose_parse_round_trip(
            code in "[A-Z0-9]{4,10}",
            labels in proptest::collection::vec("[a-z0-9][a-z0-9-]{0,10}", 1..4),
            tld in "[a-z]{2,6}",
            iframe in proptest::option::of("[a-z]{1,10}\\.[a-z]{2,5}"),
            app in "[A-Za-z][A-Za-z0-9 .&'{}éüñ€-]{0,19}",
            hash in proptest::option::of("[A-Za-z0-9+/]{11}"),
            locale in proptest::option::of("(en|es|fr|de|pt|it|nl|ja)(-[A-Z]{2})?"),
            hash_line in proptest::bool::ANY,
        ) {
            let host = format!("{}.{}", labels.join("."), tld);
            let r = ComposeRequest {
                app: &app,
                code: &code,
                origin: Some(&host),
                iframe_origin: iframe.as_deref(),
                app_hash: hash.as_deref(),
                locale: locale.as_deref(),
                layout: if hash_line { Layout::HashLine } else { Layout::Combined },
                ..ComposeRequest::default()
            };
            match compose(r) {
                Ok(c) => {
                    let p = parse(&c.text);
                    let w = p.webotp.expect("origin-bound line");
                    proptest::prop_assert_eq!(&w.host, &host);
                    proptest::prop_assert_eq!(&w.code, &code);
                    proptest::prop_assert_eq!(w.iframe_host.as_deref(), iframe.as_deref());
                    proptest::prop_assert_eq!(p.code.as_deref(), Some(code.as_str()));
                    let spaced = format!(" {code}");
                    proptest::prop_assert!(c.text.contains(&spaced));
                    proptest::prop_assert!(!c.text.ends_with('\n'));
                    proptest::prop_assert_eq!(c.segments.segments, 1);
                    if let Some(h) = &hash {
                        proptest::prop_assert!(verify_app_hash(&c.text, h));
                        if !hash_line {
                            let last = c.text.split_ascii_whitespace().last();
                            proptest::prop_assert_eq!(last, Some(h.as_str()));
                        }
                    }
                }
                Err(ComposeError::TooLong { .. }) => {}
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }

        #[test]
        fn compose_never_panics(
            app in "(?s).{0,30}", code in "(?s).{0,12}", origin in proptest::option::of("(?s).{0,20}"),
            tpl in proptest::option::of("(?s)[{}a-z_ @#\n]{0,40}"),
        ) {
            let t = tpl.map(Template);
            let r = ComposeRequest { app: &app, code: &code, origin: origin.as_deref(),
                template: t.as_ref(), ..ComposeRequest::default() };
            if let Ok(c) = compose(r) {
                let p = parse(&c.text);
                match origin {
                    Some(_) => proptest::prop_assert_eq!(p.webotp.map(|w| w.code), Some(code.clone())),
                    None => proptest::prop_assert!(p.webotp.is_none()),
                }
            }
        }
    }
}

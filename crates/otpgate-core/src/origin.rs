//! Hosts and web origins as the issuer's configuration names them: the host on the WebOTP
//! line and the browser origins CORS accepts. Both are checked once, when they are made.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::sms::parse::is_valid_host;

/// Why a host or an origin was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not `scheme://host[:port]`.
    #[error("expected scheme://host[:port]")]
    NotAnOrigin,
    /// A scheme other than `http` or `https`.
    #[error("scheme must be http or https")]
    BadScheme,
    /// A path, query, fragment or user info after the host.
    #[error("an origin has no path, query or user info")]
    ExtraParts,
    /// A port that is not 0–65535.
    #[error("bad port")]
    BadPort,
    /// Not a host name (ASCII letters, digits, hyphens in dot-separated labels) or a
    /// dotted-quad IPv4 address.
    #[error("bad host")]
    BadHost,
}

impl OriginError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnOrigin => "not_an_origin",
            Self::BadScheme => "bad_scheme",
            Self::ExtraParts => "origin_extra_parts",
            Self::BadPort => "bad_port",
            Self::BadHost => "bad_host",
        }
    }
}

/// A host name or a dotted-quad IPv4 address, lower case: the WebOTP rule
/// ([`is_valid_host`]) and no label that starts or ends with a hyphen.
#[derive(Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Host(String);

impl Host {
    /// Parses a host (case-insensitive; kept in lower case).
    ///
    /// # Errors
    /// [`OriginError::BadHost`].
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let ok = is_valid_host(text)
            && text
                .split('.')
                .all(|l| !l.starts_with('-') && !l.ends_with('-'));
        if ok {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(OriginError::BadHost)
        }
    }

    /// The host.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A browser origin: `http(s)://host[:port]`, or `http(s)://host:*` (any port; the issuer
/// allows that in dev mode only).
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin {
    https: bool,
    host: Host,
    port: Option<u16>,
    any_port: bool,
}

impl Origin {
    /// Parses an origin; one trailing `/` is allowed.
    ///
    /// # Errors
    /// [`OriginError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = text.split_once("://").ok_or(OriginError::NotAnOrigin)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(OriginError::BadScheme);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(OriginError::ExtraParts);
        }
        let (host, port, any_port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, None, true),
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| OriginError::BadPort)?),
                false,
            ),
            None => (rest, None, false),
        };
        Ok(Self {
            https,
            host: Host::parse(host)?,
            port,
            any_port,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port as written; `None` means the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether any port matches (`host:*`).
    pub fn any_port(&self) -> bool {
        self.any_port
    }

    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// Whether the `Origin` header value `presented` is this origin (a wildcard is never
    /// accepted from a browser).
    pub fn matches(&self, presented: &str) -> bool {
        let Ok(p) = Self::parse(presented) else {
            return false;
        };
        !p.any_port
            && p.https == self.https
            && p.host == self.host
            && (self.any_port || p.effective_port() == self.effective_port())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.host)?;
        match (self.any_port, self.port) {
            (true, _) => f.write_str(":*"),
            (false, Some(p)) => write!(f, ":{p}"),
            (false, None) => Ok(()),
        }
    }
}

crate::text_form!(Host, OriginError, as_str);

crate::text_form!(Origin, OriginError, to_string);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_match() {
        let o = Origin::parse("https://Shop.Example.com/").expect("valid");
        assert_eq!(o.to_string(), "https://shop.example.com");
        assert_eq!(o.host().as_str(), "shop.example.com");
        assert!(o.matches("https://shop.example.com"));
        assert!(o.matches("https://shop.example.com:443"));
        assert!(!o.matches("http://shop.example.com"));
        assert!(!o.matches("https://shop.example.com:8443"));
        assert!(!o.matches("https://evil.example.com"));
        assert!(!o.matches("null"));
        let dev = Origin::parse("http://localhost:*").expect("valid");
        assert!(dev.any_port());
        assert!(dev.matches("http://localhost:5173"));
        assert!(!dev.matches("http://localhost:*"));
        assert_eq!(dev.to_string(), "http://localhost:*");
        let ip = Origin::parse("http://127.0.0.1:8080").expect("valid");
        assert!(ip.matches("http://127.0.0.1:8080"));
    }

    #[test]
    fn bad_origins_say_why() {
        for (text, err) in [
            ("shop.example.com", OriginError::NotAnOrigin),
            ("ftp://shop.example.com", OriginError::BadScheme),
            ("https://shop.example.com/path", OriginError::ExtraParts),
            ("https://user@shop.example.com", OriginError::ExtraParts),
            ("https://shop.example.com?q", OriginError::ExtraParts),
            ("https://shop.example.com:99999", OriginError::BadPort),
            ("https://shop.example.com:", OriginError::BadPort),
            ("https://", OriginError::BadHost),
            ("https://-shop.example.com", OriginError::BadHost),
            ("https://shop_1.example.com", OriginError::BadHost),
            ("https://999.1.1.1", OriginError::BadHost),
            ("https://1.2.3", OriginError::BadHost),
            ("https://exa mple.com", OriginError::BadHost),
        ] {
            assert_eq!(Origin::parse(text), Err(err), "{text:?}");
        }
        assert!(serde_json::from_str::<Origin>("\"https://a.example/x\"").is_err());
        let o: Origin = serde_json::from_str("\"https://a.example:8443\"").expect("valid");
        assert_eq!(
            serde_json::to_string(&o).expect("json"),
            "\"https://a.example:8443\""
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            Host::parse("A.Example").map(String::from),
            Ok("a.example".into())
        );
        assert!(Host::parse("10.0.0.1").is_ok());
        assert!(Host::parse("a-.example").is_err());
        assert!(Host::parse("").is_err());
        assert!(Host::parse(&"a".repeat(64)).is_err());
    }
}

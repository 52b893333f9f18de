//! The client's address: the socket's peer, or, behind proxies the operator lists in
//! `[server] trusted_proxies`, the right-most `X-Forwarded-For` hop that is not one of them.
//!
//! # The walk
//! With no trusted proxy (the default) the header is ignored: the client is the peer. When
//! the peer is a trusted proxy, the hops of every `X-Forwarded-For` line (in order, joined)
//! are read from the right: a hop that is a trusted proxy is stepped over, the first one that
//! is not is the client. Ports are stripped (`203.0.113.7:4711`, `[2001:db8::1]:443`), and
//! IPv4-mapped IPv6 addresses are read as IPv4. A hop that does not parse (`unknown`, an
//! obfuscated identifier, bytes that are not text) ends the walk and is the client: every such
//! client is the one address [`UNPARSABLE_CLIENT`], so they share one budget. When every hop
//! is a trusted proxy, the left-most is the client.
//!
//! # Security
//! Only a proxy listed here can name the client: a client that sends its own
//! `X-Forwarded-For` through a trusted proxy only adds hops to the *left* of the one the proxy
//! appends, and the walk stops at that one. Listing a proxy that passes the header through
//! without appending the peer lets every client pick its address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The client of a request whose right-most untrusted `X-Forwarded-For` hop does not parse:
/// `100::` (RFC 6666 discard-only prefix, never a real peer). IP budgets count IPv6 per /64,
/// so every such client shares one budget.
pub const UNPARSABLE_CLIENT: IpAddr = IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0));

/// Hops read at most; a longer chain of trusted proxies ends as [`UNPARSABLE_CLIENT`].
const MAX_HOPS: usize = 32;

/// Why a `trusted_proxies` entry was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Not an address or a CIDR (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    #[error("`{0}` is not an IP address or a CIDR such as 10.0.0.0/8 or ::1/128")]
    Malformed(String),
    /// A CIDR with bits set after its prefix (`10.0.0.1/8`): probably a typo.
    #[error("`{given}` has host bits set: did you mean {network}?")]
    HostBits {
        /// The entry.
        given: String,
        /// The network it lies in.
        network: String,
    },
}

/// `[server] trusted_proxies`: the networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a list of CIDRs (a bare address is a /32 or /128).
    ///
    /// # Errors
    /// The first entry that is not one, with its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, ProxyError)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_net(e.as_ref()).map_err(|err| (i, err)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted (the header is then ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks, as configured.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers` (see the module docs).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let lines: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let mut client = peer;
        let hops = lines
            .iter()
            .rev()
            .flat_map(|line| line.rsplit(|&b| b == b','));
        for (n, hop) in hops.enumerate() {
            if n >= MAX_HOPS {
                return UNPARSABLE_CLIENT;
            }
            let Some(ip) = parse_hop(hop) else {
                return UNPARSABLE_CLIENT;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = (usize, ProxyError);

    /// A comma-separated list (`OTPGATE_TRUSTED_PROXIES`); empty means none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entries: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        Self::parse(&entries)
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        Self::parse(&entries).map_err(|(i, e)| serde::de::Error::custom(format!("entry {i}: {e}")))
    }
}

/// One `trusted_proxies` entry.
fn parse_net(entry: &str) -> Result<IpNet, ProxyError> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net = e
        .parse::<IpNet>()
        .map_err(|_| ProxyError::Malformed(entry.to_owned()))?;
    if net.addr() != net.network() {
        return Err(ProxyError::HostBits {
            given: entry.to_owned(),
            network: net.trunc().to_string(),
        });
    }
    Ok(net)
}

/// One `X-Forwarded-For` hop: an address, with or without a port.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(|v6| IpAddr::V6(v6).to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(l).expect("value"));
        }
        h
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).expect("valid")
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), &xff(&["198.51.100.9"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_peer_that_is_not_trusted_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client_ip(ip("203.0.113.5"), &xff(&["198.51.100.9"])),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "::1/128"]);
        let table: &[(&[&str], &str)] = &[
            // The client's own header is left of what the proxy appended.
            (&["6.6.6.6, 198.51.100.9"], "198.51.100.9"),
            (&["6.6.6.6, 198.51.100.9, 10.1.2.3"], "198.51.100.9"),
            // Several lines are one list, in order.
            (&["6.6.6.6", "198.51.100.9", "10.1.2.3"], "198.51.100.9"),
            // Ports are stripped, IPv6 with and without brackets.
            (&["198.51.100.9:4711"], "198.51.100.9"),
            (&["[2001:db8::7]:443"], "2001:db8::7"),
            (&["[2001:db8::7]"], "2001:db8::7"),
            (&["2001:db8::7"], "2001:db8::7"),
            (&["::ffff:198.51.100.9"], "198.51.100.9"),
            // An unparsable hop ends the walk and is the client.
            (&["198.51.100.9, unknown"], "100::"),
            (&["198.51.100.9, unknown, 10.0.0.2"], "100::"),
            (&["198.51.100.9,"], "100::"),
            // Garbage the client sent, left of a good hop, is never reached.
            (&["nonsense, 198.51.100.9"], "198.51.100.9"),
            // Every hop trusted: the left-most.
            (&["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            // No header: the (trusted) peer itself.
            (&[], "10.9.9.9"),
        ];
        for (lines, want) in table {
            assert_eq!(
                p.client_ip(ip("10.9.9.9"), &xff(lines)),
                ip(want),
                "{lines:?}"
            );
        }
        // A dual-stack listener's IPv4-mapped peer matches an IPv4 network.
        assert_eq!(
            p.client_ip(ip("::ffff:10.9.9.9"), &xff(&["198.51.100.9"])),
            ip("198.51.100.9")
        );
        // Bytes that are not text are one unparsable hop.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes"),
        );
        assert_eq!(p.client_ip(ip("10.9.9.9"), &h), UNPARSABLE_CLIENT);
        // A chain longer than MAX_HOPS of trusted proxies.
        let long = vec!["10.0.0.1"; MAX_HOPS + 1].join(",");
        assert_eq!(
            p.client_ip(ip("10.9.9.9"), &xff(&[&long])),
            UNPARSABLE_CLIENT
        );
    }

    #[test]
    fn entries_parse_as_cidrs_or_addresses() {
        let p = proxies(&["10.0.0.0/8", "::1/128", "192.0.2.7", " 2001:db8::/32 "]);
        assert!(p.trusts(ip("10.200.0.1")));
        assert!(p.trusts(ip("::1")));
        assert!(p.trusts(ip("192.0.2.7")));
        assert!(!p.trusts(ip("192.0.2.8")));
        assert!(p.trusts(ip("2001:db8:1::1")));
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.0/8", "nope"]),
            Err((1, ProxyError::Malformed("nope".into())))
        );
        let host_bits = TrustedProxies::parse(&["10.0.0.1/8"]).expect_err("host bits");
        assert_eq!(host_bits.0, 0);
        assert!(host_bits.1.to_string().contains("10.0.0.0/8"));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "/8", "10.0.0.0/8/8", ""] {
            assert!(TrustedProxies::parse(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/8, ::1/128".parse::<TrustedProxies>(),
            Ok(proxies(&["10.0.0.0/8", "::1/128"]))
        );
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
    }
}

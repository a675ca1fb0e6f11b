//! Which address a request came from, when reverse proxies sit in front.
//!
//! `X-Forwarded-For` is a list the client starts and every proxy appends to,
//! so only the entries our own proxies appended can be believed. The rule:
//! headers are consulted only when the direct peer is a trusted proxy; then the
//! list is walked from the right, skipping trusted proxies, and the first
//! address that is not one is the client. An entry that is not an IP address
//! ends the walk at the peer address (a proxy we trust would not write one); a
//! list made only of trusted proxies also gives the peer address.

use std::net::IpAddr;

use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// `TRUST_PROXY_HEADERS=true`: whatever connects directly is a proxy.
    direct_peer: bool,
}

impl TrustedProxies {
    /// `TRUSTED_PROXIES` (comma-separated CIDRs or single addresses) plus the
    /// `TRUST_PROXY_HEADERS` shorthand. Errors name the variable and the bad entry.
    pub fn parse(list: Option<&str>, direct_peer: bool) -> Result<Self, String> {
        let mut nets = Vec::new();
        let mut bad = Vec::new();
        for entry in list
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match entry.parse::<IpNet>() {
                Ok(net) => nets.push(net.trunc()),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => nets.push(IpNet::from(ip)),
                    Err(_) => bad.push(format!("`{entry}`")),
                },
            }
        }
        if bad.is_empty() {
            Ok(Self { nets, direct_peer })
        } else {
            Err(format!(
                "`TRUSTED_PROXIES` must be a comma-separated list of CIDRs such as `10.0.0.0/8,127.0.0.1/32` (not a CIDR: {})",
                bad.join(", ")
            ))
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy, else the
    /// right-most untrusted `X-Forwarded-For` entry (see the module comment).
    /// `forwarded` are the header values in the order they arrived.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if !(self.direct_peer || self.trusts(peer)) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev().map(|h| h.trim()) {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return ip,
                Err(_) => return peer,
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse(Some("10.0.0.0/8, 127.0.0.1/32"), false).expect("ok");
        let peer = ip("10.1.2.3");
        // (forwarded header, client, why)
        let cases = [
            ("", "10.1.2.3", "no header: the peer"),
            ("203.0.113.9", "203.0.113.9", "one hop"),
            (
                "1.1.1.1, 203.0.113.9",
                "203.0.113.9",
                "the client-written left hop is ignored",
            ),
            (
                "1.1.1.1, 203.0.113.9, 10.0.0.7",
                "203.0.113.9",
                "trusted hops are skipped",
            ),
            (
                "203.0.113.9, junk",
                "10.1.2.3",
                "an unparsable hop ends the walk at the peer",
            ),
            (
                "10.0.0.1, 127.0.0.1",
                "10.1.2.3",
                "only trusted hops: the peer",
            ),
            ("2001:db8::1", "2001:db8::1", "IPv6"),
        ];
        for (header, client, why) in cases {
            assert_eq!(
                proxies.client(peer, [header].into_iter()),
                ip(client),
                "{why}"
            );
        }
        let untrusted = ip("198.51.100.1");
        assert_eq!(
            proxies.client(untrusted, ["203.0.113.9"].into_iter()),
            untrusted,
            "an untrusted peer's headers are ignored"
        );
        assert_eq!(
            proxies.client(peer, ["1.1.1.1", "203.0.113.9, 10.0.0.2"].into_iter()),
            ip("203.0.113.9"),
            "several headers read as one list"
        );
    }

    #[test]
    fn the_shorthand_trusts_exactly_the_direct_peer() {
        let proxies = TrustedProxies::parse(None, true).expect("ok");
        let peer = ip("192.0.2.1");
        assert_eq!(
            proxies.client(peer, ["1.1.1.1, 203.0.113.9"].into_iter()),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(peer, ["1.1.1.1"].into_iter()),
            peer
        );
    }

    #[test]
    fn a_bad_cidr_is_an_error_naming_the_variable_and_the_entry() {
        let err = TrustedProxies::parse(Some("10.0.0.0/8, 10.0.0.0/33, proxy"), false)
            .expect_err("bad entries");
        assert!(err.contains("`TRUSTED_PROXIES`"), "{err}");
        assert!(
            err.contains("`10.0.0.0/33`") && err.contains("`proxy`"),
            "{err}"
        );
        assert!(TrustedProxies::parse(Some(" , "), false).is_ok());
    }
}

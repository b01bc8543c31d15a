//! Which targets herald may send to. A target is an http or https URL whose host resolves only to
//! public addresses, unless `HERALD_ALLOW_TARGETS` allows a private, loopback or link-local range.
//!
//! The check runs twice: when a subscription is saved (to say at once what is wrong), and in the
//! HTTP client's resolver at every connection, so that a DNS answer that changes after the first
//! check (rebinding) cannot reach a refused address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("'{0}' is not a URL")]
    Malformed(String),
    #[error("the URL must start with http:// or https://, not {0}://")]
    Scheme(String),
    #[error("only https targets are allowed here (delivery.https_only)")]
    NotHttps,
    #[error("the URL has no host")]
    NoHost,
    #[error(
        "the URL carries credentials (user:password@), which would be sent and shown in clear; put them in the hook's authorization header field (authorization) instead"
    )]
    Credentials,
    #[error("the URL is {0} characters long; a target URL may have at most {MAX_TARGET_URL}")]
    TooLong(usize),
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
    #[error(
        "the host {host} resolves to {}, a {kind} address; targets there are refused unless HERALD_ALLOW_TARGETS allows them",
        shown(address)
    )]
    Refused {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
}

/// The longest target URL herald takes, in characters: receivers and proxies refuse longer request
/// lines (8 KiB is a common limit for the whole line and headers).
pub const MAX_TARGET_URL: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allow: Vec<IpNet>,
    /// Refuse plain http targets.
    pub https_only: bool,
}

impl TargetPolicy {
    pub fn new(allow: Vec<IpNet>) -> TargetPolicy {
        TargetPolicy {
            allow,
            https_only: false,
        }
    }

    /// The policy of `settings`: its allowed ranges and its https-only mode.
    pub fn of(settings: &crate::config::DeliverySettings) -> TargetPolicy {
        TargetPolicy {
            allow: settings.allow_targets.clone(),
            https_only: settings.https_only,
        }
    }

    /// The URL's shape: parses, http or https, has a host.
    pub fn parse(&self, text: &str) -> Result<Url, TargetError> {
        let url = Url::parse(text.trim()).map_err(|_| TargetError::Malformed(text.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Scheme(url.scheme().to_owned()));
        }
        if self.https_only && url.scheme() != "https" {
            return Err(TargetError::NotHttps);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::NoHost);
        }
        Ok(url)
    }

    /// Why `address` is refused, if it is. An IPv6 address that embeds an IPv4 one is refused
    /// if either is (NAT64's and 6to4's prefixes are public, the address they lead to may not be),
    /// and allowed if either is allowed.
    pub fn refusal(&self, address: IpAddr) -> Option<&'static str> {
        let embedded = match address {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |ip: &IpAddr| self.allow.iter().any(|net| net.contains(ip));
        if allowed(&address) || embedded.as_ref().is_some_and(allowed) {
            return None;
        }
        embedded
            .and_then(special_range)
            .or_else(|| special_range(address))
    }

    /// Parses the URL and resolves its host; every address it resolves to must be allowed. What a
    /// new target must also be: short enough to send, and free of credentials (a hook saved before
    /// these rules keeps being sent to as it was).
    pub async fn check(&self, text: &str) -> Result<Url, TargetError> {
        let length = text.trim().chars().count();
        if length > MAX_TARGET_URL {
            return Err(TargetError::TooLong(length));
        }
        let url = self.parse(text)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let addresses: Vec<IpAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => {
                let port = url.port_or_known_default().unwrap_or(80);
                let lookup = tokio::net::lookup_host((host.as_str(), port));
                match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    _ => Vec::new(),
                }
            }
        };
        if addresses.is_empty() {
            return Err(TargetError::Unresolvable(host));
        }
        for address in addresses {
            if let Some(kind) = self.refusal(address) {
                return Err(TargetError::Refused {
                    host,
                    address,
                    kind,
                });
            }
        }
        Ok(url)
    }
}

/// Ranges the IANA special-purpose address registries mark as not globally reachable (and
/// multicast, which is not unicast at all), with what to call them in a refusal. More specific
/// entries come first: the first range that holds an address decides.
const REFUSED_V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast or reserved"),
    ("240.0.0.0/4", "multicast or reserved"),
];

/// IPv6's: those that embed an IPv4 address are judged by that address instead (`embedded_v4`).
const REFUSED_V6: &[(&str, &str)] = &[
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    // Within the IETF protocol assignments, these are globally reachable (the registry's own
    // exceptions): anycast for PCP and TURN, AMT, AS112, ORCHIDv2, drone identifiers.
    ("2001:1::1/128", ""),
    ("2001:1::2/128", ""),
    ("2001:3::/32", ""),
    ("2001:4:112::/48", ""),
    ("2001:20::/28", ""),
    ("2001:30::/28", ""),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignment"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast or reserved"),
];

fn ranges(table: &'static [(&'static str, &'static str)]) -> Vec<(IpNet, &'static str)> {
    table
        .iter()
        .map(|(net, kind)| (net.parse().expect("a valid range"), *kind))
        .collect()
}

static REFUSED: std::sync::LazyLock<Vec<(IpNet, &'static str)>> = std::sync::LazyLock::new(|| {
    let mut all = ranges(REFUSED_V4);
    all.extend(ranges(REFUSED_V6));
    all
});

/// The IPv4 address an IPv6 address stands for, where the address only wraps one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, not
/// `::` or `::1`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`). A packet to any of
/// them can reach that IPv4 address through a translator, so it gets the IPv4 address's rules.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// An address as a refusal names it: with the IPv4 address it leads to, if it embeds one.
fn shown(address: &IpAddr) -> String {
    match address {
        IpAddr::V6(v6) => match embedded_v4(*v6) {
            Some(v4) => format!("{v6} (that is {v4})"),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn special_range(address: IpAddr) -> Option<&'static str> {
    REFUSED
        .iter()
        .find(|(net, _)| net.contains(&address))
        .and_then(|(_, kind)| (!kind.is_empty()).then_some(*kind))
}

/// The HTTP client's resolver: resolves as the system does, then drops refused addresses, so the
/// address actually connected to is always one that passed the policy.
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.refusal(a.ip()) {
                    Some(kind) => {
                        refused = Some(TargetError::Refused {
                            host: host.clone(),
                            address: a.ip(),
                            kind,
                        });
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let error = refused.unwrap_or(TargetError::Unresolvable(host));
                return Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_first() {
        let policy = TargetPolicy::default();
        assert_eq!(
            policy.parse("ftp://example.com/x"),
            Err(TargetError::Scheme("ftp".into()))
        );
        assert_eq!(
            policy.parse("not a url"),
            Err(TargetError::Malformed("not a url".into()))
        );
        assert!(policy.parse("https://example.com/hooks").is_ok());
    }

    #[test]
    fn special_ranges_are_refused_unless_allowed() {
        let policy = TargetPolicy::default();
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("64:ff9b::169.254.169.254", "link-local"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
            ("2002:a00:1::", "private"),
            ("::10.0.0.1", "private"),
            ("::0.0.0.2", "unspecified"),
            ("::ffff:0:192.168.1.1", "private"),
            ("2001::1", "Teredo"),
            ("2001:db8::1", "documentation"),
            ("2001:2::1", "IETF protocol assignment"),
            ("100::1", "discard-only"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.0.0.170", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("203.0.113.1", "documentation"),
            ("224.0.0.1", "multicast or reserved"),
            ("255.255.255.255", "multicast or reserved"),
            ("ff02::1", "multicast or reserved"),
        ] {
            assert_eq!(policy.refusal(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for public in [
            "93.184.216.34",
            "198.17.255.255",
            "198.20.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::",
            "::ffff:8.8.8.8",
            "2001:4:112::1",
            "2001:20::1",
        ] {
            assert_eq!(policy.refusal(public.parse().unwrap()), None, "{public}");
        }
        let allowing = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(allowing.refusal("127.0.0.1".parse().unwrap()), None);
        assert_eq!(
            allowing.refusal("10.0.0.1".parse().unwrap()),
            Some("private")
        );
    }

    #[tokio::test]
    async fn literal_and_resolved_addresses_are_checked() {
        let policy = TargetPolicy::default();
        let err = policy.check("http://127.0.0.1:9/x").await.unwrap_err();
        assert!(
            err.to_string().contains("127.0.0.1, a loopback address"),
            "{err}"
        );
        let err = policy.check("http://localhost:9/x").await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let allowing = TargetPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(allowing.check("http://localhost:9/x").await.is_ok());
    }

    #[test]
    fn https_only_refuses_plain_http() {
        let policy = TargetPolicy {
            allow: Vec::new(),
            https_only: true,
        };
        assert_eq!(
            policy.parse("http://example.com/hook"),
            Err(TargetError::NotHttps)
        );
        assert!(policy.parse("https://example.com/hook").is_ok());
    }
}

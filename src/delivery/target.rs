//! Which targets herald may send to. A target is an http or https URL whose host resolves only to
//! public addresses, unless `HERALD_ALLOW_TARGETS` allows a private, loopback or link-local range.
//!
//! The check runs twice: when a subscription is saved (to say at once what is wrong), and in the
//! HTTP client's resolver at every connection, so that a DNS answer that changes after the first
//! check (rebinding) cannot reach a refused address.

use std::net::{IpAddr, SocketAddr};
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
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
    #[error(
        "the host {host} resolves to {address}, a {kind} address; targets there are refused unless HERALD_ALLOW_TARGETS allows them"
    )]
    Refused {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
}

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

    /// Why `address` is refused, if it is.
    pub fn refusal(&self, address: IpAddr) -> Option<&'static str> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        if self.allow.iter().any(|net| net.contains(&address)) {
            return None;
        }
        special_range(address)
    }

    /// Parses the URL and resolves its host; every address it resolves to must be allowed.
    pub async fn check(&self, text: &str) -> Result<Url, TargetError> {
        let url = self.parse(text)?;
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

fn special_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_private() {
                Some("private")
            } else if ip.is_link_local() {
                Some("link-local")
            } else if ip.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if ip.is_multicast() {
                Some("multicast or reserved")
            } else {
                None
            }
        }
    }
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
        ] {
            assert_eq!(policy.refusal(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        assert_eq!(policy.refusal("93.184.216.34".parse().unwrap()), None);
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

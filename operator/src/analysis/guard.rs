//! Where analysis requests may go (SSRF defence): the operator's allow-list
//! (`--analysis-allow`) is checked on the URL's host, and again on every
//! address a host name resolves to, inside the HTTP client's DNS resolver, so
//! that a name that later resolves somewhere else (DNS rebinding) gains
//! nothing. Link-local and cloud-metadata addresses are refused always.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The Kubernetes cluster DNS domain when `--analysis-cluster-domain` is not set.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One `--analysis-allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// Kubernetes Services: `<svc>.<ns>`, `<svc>.<ns>.svc`,
    /// `<svc>.<ns>.svc.<cluster domain>`.
    InCluster,
    /// Exactly this host name.
    Host(String),
    /// `*.example.com`: any name ending in `.example.com` (not the bare name).
    Suffix(String),
    /// Addresses in this network, as an IP literal in the URL or as what a
    /// name resolves to.
    Network(Cidr),
}

impl FromStr for AllowEntry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if s == "in-cluster" {
            Ok(AllowEntry::InCluster)
        } else if s.contains("://") {
            Err(format!("{s:?}: write the host name, not a URL"))
        } else if s.contains('/') || s.parse::<IpAddr>().is_ok() {
            s.parse().map(AllowEntry::Network)
        } else if let Some(suffix) = s.strip_prefix("*.") {
            if valid_name(suffix) {
                Ok(AllowEntry::Suffix(format!(".{suffix}")))
            } else {
                Err(format!("{s:?} is not a *.domain wildcard"))
            }
        } else if valid_name(&s) {
            Ok(AllowEntry::Host(s))
        } else {
            Err(format!(
                "{s:?} is not a host name, *.domain, IP address, CIDR or in-cluster"
            ))
        }
    }
}

/// The addresses never connected to, whatever the allow-list says: IPv4
/// and IPv6 link-local (which hold the cloud metadata services of AWS, GCP,
/// Azure, OpenStack), AWS's IPv6 metadata address and Alibaba's.
pub fn always_refused(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == Ipv4Addr::new(100, 100, 100, 200),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// This host itself: reachable only through an explicit network entry.
fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_loopback() || ip.is_unspecified()
}

/// How a host name may be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// Allowed by name: resolve it as written.
    ByName,
    /// A Service name: resolve this absolute FQDN (trailing dot) instead, so
    /// that `evil.com` can only ever mean Service `evil` in namespace `com`.
    Service(String),
    /// Not allowed by name; allowed only if it resolves into a network entry.
    ByAddress,
}

/// The operator's allow-list of analysis endpoints.
#[derive(Debug, Clone)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
    cluster_domain: String,
}

impl AllowList {
    /// The list; `cluster_domain` is the Services' DNS domain (`cluster.local`).
    pub fn new(entries: Vec<AllowEntry>, cluster_domain: &str) -> Self {
        AllowList {
            entries,
            cluster_domain: cluster_domain.trim_matches('.').to_ascii_lowercase(),
        }
    }

    fn networks(&self) -> impl Iterator<Item = &Cidr> {
        self.entries.iter().filter_map(|e| match e {
            AllowEntry::Network(n) => Some(n),
            _ => None,
        })
    }

    /// Whether the client may connect to `ip` (reached through a name the
    /// list allows when `by_name`).
    pub fn permits_ip(&self, ip: IpAddr, by_name: bool) -> bool {
        if always_refused(ip) {
            return false;
        }
        if self.networks().any(|n| n.contains(ip)) {
            return true;
        }
        by_name && !is_local(ip)
    }

    /// `<svc>.<ns>[.svc[.<domain>]]` as the Service's absolute FQDN.
    fn service_fqdn(&self, host: &str) -> Option<String> {
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let full_suffix = format!(".svc.{}", self.cluster_domain);
        let short = host
            .strip_suffix(&full_suffix)
            .or_else(|| host.strip_suffix(".svc"))
            .unwrap_or(host);
        match short.split('.').collect::<Vec<_>>()[..] {
            [svc, ns] if dns_label(svc) && dns_label(ns) => {
                Some(format!("{svc}.{ns}.svc.{}.", self.cluster_domain))
            }
            _ => None,
        }
    }

    fn route(&self, host: &str) -> Option<Route> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let by_name = self.entries.iter().any(|e| match e {
            AllowEntry::Host(h) => *h == host,
            AllowEntry::Suffix(s) => host.ends_with(s.as_str()),
            _ => false,
        });
        if by_name {
            return Some(Route::ByName);
        }
        if self.entries.contains(&AllowEntry::InCluster)
            && let Some(fqdn) = self.service_fqdn(&host)
        {
            return Some(Route::Service(fqdn));
        }
        self.networks().next().map(|_| Route::ByAddress)
    }

    /// Checks a URL before any connection: an IP literal must be permitted
    /// now; a name must be allowed by name, be a Service name (`in-cluster`),
    /// or may resolve into a network entry (decided by [`Resolver`]).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        let refused = |what: String| {
            Err(format!(
                "{what} is not in the operator's allow-list (--analysis-allow)"
            ))
        };
        // The URL parser has already normalised IPv4 forms (`2130706433`,
        // `0x7f.1`) to dotted quads and bracketed IPv6 literals.
        let host = url.host_str().ok_or("the URL has no host")?;
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.check_ip(ip, refused),
            Err(_) => match self.route(host) {
                Some(_) => Ok(()),
                None => refused(format!("host {host:?}")),
            },
        }
    }

    fn check_ip(
        &self,
        ip: IpAddr,
        refused: impl Fn(String) -> Result<(), String>,
    ) -> Result<(), String> {
        if always_refused(ip) {
            Err(format!(
                "address {ip} is link-local or a cloud metadata address, which analysis never reads"
            ))
        } else if self.permits_ip(ip, false) {
            Ok(())
        } else {
            refused(format!("address {ip}"))
        }
    }
}

/// The HTTP client's DNS resolver: resolves only names the list routes, and
/// hands the client only the addresses the list permits.
#[derive(Debug, Clone)]
pub struct Resolver {
    allow: Arc<AllowList>,
}

impl Resolver {
    /// A resolver enforcing `allow`.
    pub fn new(allow: Arc<AllowList>) -> Self {
        Resolver { allow }
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let Some(route) = allow.route(&host) else {
                return Err(format!(
                    "host {host:?} is not in the operator's allow-list (--analysis-allow)"
                )
                .into());
            };
            let (lookup, by_name) = match &route {
                Route::ByName => (host.clone(), true),
                Route::Service(fqdn) => (fqdn.clone(), true),
                Route::ByAddress => (host.clone(), false),
            };
            let found: Vec<SocketAddr> = tokio::net::lookup_host((lookup.as_str(), 0))
                .await
                .map_err(|e| format!("cannot resolve {lookup}: {e}"))?
                .collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow.permits_ip(a.ip(), by_name))
                .collect();
            if permitted.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{lookup} resolves to {}, none of which the operator's allow-list \
                     (--analysis-allow) permits",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;

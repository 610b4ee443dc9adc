//! Which addresses the mirror may connect to: the SSRF guard.
//!
//! A client chooses the upstream (through `ns` or the path), and upstreams choose redirect targets, so neither may
//! steer the mirror into networks it should not reach. Every connection the pool opens goes through
//! `GuardedConnector`: it resolves the host once, checks every address against the `AddressGuard`, and connects to
//! exactly the addresses it checked (no second lookup that DNS rebinding could change). Hosts of listed registries
//! are trusted with any address; any other host (an unlisted namespace, a redirect target) must resolve only to
//! public addresses, unless the policy is `any`.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::RwLock;

use actix_service::Service;
use actix_tls::connect::tcp::TcpConnectorService;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use tokio::net::TcpStream;

/// `upstreamPolicy`: which namespaces that are not listed in `registries` may be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamPolicy {
    /// Only when every address the host resolves to is public (the default).
    #[default]
    Public,
    /// Only listed registries.
    Listed,
    /// Anything (trusted networks only).
    Any,
}

/// The address rules for every connection. Shared by all upstream clients.
#[derive(Debug, Default)]
pub struct AddressGuard {
    /// `Any` disables the address check.
    policy: UpstreamPolicy,
    /// Listed hosts (lower-case), trusted with any address: `host` (any port) or `host:port`. Token realms named by
    /// listed registries are added when they are first seen.
    trusted: RwLock<HashSet<String>>,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl AddressGuard {
    /// A guard for this policy that trusts these listed hosts (`host` or `host:port`).
    pub fn new(policy: UpstreamPolicy, trusted: impl IntoIterator<Item = String>) -> AddressGuard {
        let trusted = trusted.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        AddressGuard { policy, trusted: RwLock::new(trusted) }
    }

    /// Trust `host:port` from now on (the token realm of a listed registry: the operator trusts the registry, and
    /// the registry names its realm).
    pub fn trust(&self, host_port: String) {
        if let Ok(mut set) = self.trusted.write() {
            set.insert(host_port.to_ascii_lowercase());
        }
    }

    /// The policy.
    pub fn policy(&self) -> UpstreamPolicy {
        self.policy
    }

    fn is_trusted(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let Ok(set) = self.trusted.read() else { return false };
        set.contains(&bracketed) || set.contains(&format!("{bracketed}:{port}"))
    }

    /// Check the resolved addresses of `host:port`.
    pub fn check(&self, host: &str, port: u16, addrs: &[SocketAddr]) -> Result<(), Refused> {
        if self.policy == UpstreamPolicy::Any || self.is_trusted(host, port) {
            return Ok(());
        }
        match addrs.iter().find(|a| !is_public(a.ip())) {
            None if !addrs.is_empty() => Ok(()),
            None => Err(Refused(format!("{host}:{port} resolved to no address"))),
            Some(bad) => Err(Refused(format!(
                "connection to {host}:{port} ({}) refused: not a public address and not a listed registry \
                 (upstreamPolicy: {:?})",
                bad.ip(),
                self.policy
            ))),
        }
    }

    /// Resolve `host:port` once and check it: the addresses to connect to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        self.check(host, port, &addrs)?;
        Ok(addrs)
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local (cloud metadata lives at
/// 169.254.169.254), shared (CGNAT), documentation, benchmarking, multicast, broadcast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64, may map to private v4
                || seg[0] == 0x2002) // 6to4, may embed private v4
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240) // reserved
}

/// The TCP connector of every upstream client: resolve once, check, connect to what was checked.
#[derive(Clone)]
pub struct GuardedConnector {
    guard: Arc<AddressGuard>,
    tcp: TcpConnectorService,
}

impl GuardedConnector {
    /// A connector enforcing `guard`.
    pub fn new(guard: Arc<AddressGuard>) -> GuardedConnector {
        GuardedConnector { guard, tcp: TcpConnectorService::default() }
    }
}

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>>>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let guard = self.guard.clone();
        let tcp = self.tcp;
        Box::pin(async move {
            let host = req.hostname().to_string();
            let port = req.port();
            let addrs = guard.resolve(&host, port).await.map_err(|e| ConnectError::Resolver(Box::new(e)))?;
            tracing::debug!(%host, port, ?addrs, "connecting to upstream");
            tcp.call(req.set_addrs(addrs)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn public_addresses() {
        let cases = [
            ("8.8.8.8", true),
            ("151.101.1.1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("2606:4700::1111", true),
        ];
        for (ip, want) in cases {
            assert_eq!(is_public(ip.parse().expect("ip")), want, "is_public({ip})");
        }
    }

    #[test]
    fn listed_hosts_are_trusted_others_must_be_public() {
        let guard = AddressGuard::new(UpstreamPolicy::Public, ["127.0.0.1:5000".to_string(), "registry.lan".into()]);
        let local = |port| vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)];
        assert!(guard.check("127.0.0.1", 5000, &local(5000)).is_ok(), "listed host:port");
        assert!(guard.check("127.0.0.1", 5001, &local(5001)).is_err(), "same host, other port");
        assert!(guard.check("registry.lan", 443, &local(443)).is_ok(), "listed host, any port");
        assert!(guard.check("evil.example", 443, &local(443)).is_err(), "resolves to loopback");
        let mixed = vec![SocketAddr::new("8.8.8.8".parse().expect("ip"), 443), local(443)[0]];
        assert!(guard.check("rebind.example", 443, &mixed).is_err(), "any private address refuses the host");
        let any = AddressGuard::new(UpstreamPolicy::Any, []);
        assert!(any.check("evil.example", 443, &local(443)).is_ok());
        let v6 = AddressGuard::new(UpstreamPolicy::Public, ["[::1]:5000".to_string()]);
        assert!(v6.check("[::1]", 5000, &[SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5000)]).is_ok());
    }
}

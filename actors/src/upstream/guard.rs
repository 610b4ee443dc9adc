//! Which addresses the mirror may connect to: the SSRF guard.
//!
//! A client chooses the upstream (through `ns` or the path), and upstreams choose redirect targets and token realms,
//! so none of them may steer the mirror into networks it should not reach. Every connection the pool opens goes
//! through a `GuardedConnector`: it resolves the host once, checks every address against its registry's
//! `AddressGuard`, and connects to exactly the addresses it checked (no second lookup that DNS rebinding could
//! change).
//!
//! Trust is per port, and never reaches a namespace:
//! - The listed registries' endpoints and names, each on its own port only (the one named, else 443 for https and
//!   80 for http), are trusted at any address by the listed registries' connections: their own requests and their
//!   redirects (a registry that sends its blobs to another listed host). Connections of namespaces admitted by the
//!   policy trust none of them, and the front door checks an unlisted namespace with a guard that trusts nothing, so
//!   a listed host never becomes a namespace of its own.
//! - A token realm named by a listed registry's 401 is trusted for that registry's token requests only (they go
//!   through a client of their own), not for its other requests and not for any other registry or namespace.
//! - Anything else (an unlisted namespace, a redirect target) must resolve only to public addresses, unless the
//!   policy is `any`. An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
//!   Teredo) is judged by the IPv4 address it carries.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::RwLock;

use actix_service::Service;
use actix_tls::connect::tcp::TcpConnectorService;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use tokio::net::TcpStream;

use super::Upstream;

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

/// What a connection is for: a registry's own requests (and their redirects), or its token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Requests to the registry: manifests, blobs, and the redirects they follow.
    Registry,
    /// Requests to the token realms the registry named in its challenges.
    Token,
}

/// The `host:port` keys (see `key`) of the listed registries: each one's name and endpoint, each on its own port.
#[derive(Debug, Default)]
pub struct ListedHosts(HashSet<String>);

impl ListedHosts {
    /// The keys of registries given as (`name`, `base_url`): the name (`host[:port]`) on the port it names, else the
    /// base URL's scheme's (443 for https, 80 for http), and the base URL's authority.
    pub fn new<'a>(registries: impl IntoIterator<Item = (&'a str, &'a str)>) -> ListedHosts {
        let mut keys = HashSet::new();
        for (name, base_url) in registries {
            let default_port = if base_url.starts_with("http://") { 80 } else { 443 };
            let (host, port) = split_host_port(name, default_port);
            keys.insert(key(host, port));
            keys.extend(url_key(base_url));
        }
        ListedHosts(keys)
    }
}

/// The address rules of one registry's connections (or of the front door's namespace check).
#[derive(Debug, Default)]
pub struct AddressGuard {
    /// `Any` disables the address check.
    policy: UpstreamPolicy,
    /// Trusted at any address: the listed registries' hosts, for a listed registry. Empty for the front door and for
    /// namespaces admitted by the policy.
    trusted: Arc<ListedHosts>,
    /// `host:port` keys of token realms this registry named, trusted for `Purpose::Token` only. Filled as
    /// challenges arrive.
    realms: RwLock<HashSet<String>>,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The comparable form of `host` and `port`: lower-case, brackets stripped, IP literals in canonical form, IPv6
/// bracketed again, then `:port`.
fn key(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        Ok(IpAddr::V4(v4)) => format!("{v4}:{port}"),
        Err(_) => format!("{bare}:{port}"),
    }
}

/// The key of a URL's authority (its port made explicit from the scheme), if it has a host.
fn url_key(url: &str) -> Option<String> {
    let uri = url.parse::<Uri>().ok()?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    Some(key(uri.host()?, port))
}

/// `host` and `port` of a `host[:port]` namespace (IPv6 bracketed), the port defaulting to `default_port`.
pub fn split_host_port(host_port: &str, default_port: u16) -> (&str, u16) {
    match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => {
            (&host_port[..i], host_port[i + 1..].parse().unwrap_or(default_port))
        }
        _ => (host_port, default_port),
    }
}

impl AddressGuard {
    /// A guard for this policy that trusts nothing: for the front door's check of unlisted namespaces, and for the
    /// namespaces the policy admits.
    pub fn new(policy: UpstreamPolicy) -> AddressGuard {
        AddressGuard { policy, trusted: Arc::default(), realms: RwLock::default() }
    }

    /// The guard of a listed registry: it trusts the listed hosts (its own and the others', each on its own port),
    /// and the realms it names from now on.
    pub fn for_listed(policy: UpstreamPolicy, listed: Arc<ListedHosts>) -> AddressGuard {
        AddressGuard { policy, trusted: listed, realms: RwLock::default() }
    }

    /// Trust the host and port of `realm_url` for this registry's token requests from now on (the operator trusts
    /// the listed registry, and the registry names its realm). Requests of other purposes, and other registries,
    /// are not affected.
    pub fn trust_realm(&self, realm_url: &str) {
        if let (Some(k), Ok(mut realms)) = (url_key(realm_url), self.realms.write()) {
            realms.insert(k);
        }
    }

    /// The policy.
    pub fn policy(&self) -> UpstreamPolicy {
        self.policy
    }

    fn is_trusted(&self, host: &str, port: u16, purpose: Purpose) -> bool {
        let k = key(host, port);
        if self.trusted.0.contains(&k) {
            return true;
        }
        purpose == Purpose::Token && self.realms.read().is_ok_and(|realms| realms.contains(&k))
    }

    /// Check the resolved addresses of `host:port` for a connection of this purpose.
    pub fn check(&self, host: &str, port: u16, addrs: &[SocketAddr], purpose: Purpose) -> Result<(), Refused> {
        if self.policy == UpstreamPolicy::Any || self.is_trusted(host, port, purpose) {
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
    pub async fn resolve(&self, host: &str, port: u16, purpose: Purpose) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        self.check(host, port, &addrs, purpose)?;
        Ok(addrs)
    }
}

/// The pool's key for the client of `upstream` and `purpose`: one client per registry (namespace and base URL) and
/// purpose, because a client's connector carries the guard of the registry it was built for, and keeps connections
/// alive that only that registry's checks admitted.
pub fn client_key(upstream: &Upstream, purpose: Purpose) -> String {
    format!("{} {} {purpose:?}", upstream.namespace, upstream.base_url)
}

/// Whether an address is on the public internet: not loopback, private, link-local (cloud metadata lives at
/// 169.254.169.254), shared (CGNAT), documentation, benchmarking, multicast, broadcast, reserved or unspecified. An
/// IPv6 address carrying an IPv4 address is judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(carried) => carried.iter().all(|v4| is_public_v4(*v4)),
            None => is_public_v6(v6),
        },
    }
}

fn v4_at(seg: &[u16; 8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new((seg[i] >> 8) as u8, seg[i] as u8, (seg[i + 1] >> 8) as u8, seg[i + 1] as u8)
}

/// The IPv4 addresses an IPv6 address carries, if it is one of the forms that reach an IPv4 host: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, which includes `::` and `::1`), IPv4-translated
/// (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::/48`) and Teredo (`2001:0::/32`: the
/// server's address, and the client's, stored inverted).
fn embedded_v4(v6: Ipv6Addr) -> Option<Vec<Ipv4Addr>> {
    let seg = v6.segments();
    let last = v4_at(&seg, 6);
    match seg {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(vec![last]),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(vec![last]),
        [0x2002, ..] => Some(vec![v4_at(&seg, 1)]),
        [0x2001, 0, ..] => {
            let client = Ipv4Addr::from(!u32::from(last));
            Some(vec![v4_at(&seg, 2), client])
        }
        _ => None,
    }
}

/// Public IPv6: global unicast (`2000::/3`) outside documentation (`2001:db8::/32`, `3fff::/20`) and the IETF
/// protocol assignments (`2001::/23`, benchmarking and ORCHID among them). Everything else (loopback, unique local
/// `fc00::/7`, link-local, site-local, multicast, discard `100::/64`, local-use NAT64 `64:ff9b:1::/48`, whose IPv4
/// address cannot be located) is not.
fn is_public_v6(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    let global_unicast = (seg[0] & 0xe000) == 0x2000;
    let documentation = (seg[0] == 0x2001 && seg[1] == 0x0db8) || (seg[0] == 0x3fff && seg[1] < 0x1000);
    let ietf = seg[0] == 0x2001 && seg[1] < 0x0200;
    global_unicast && !documentation && !ietf
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

/// The TCP connector of every upstream client: resolve once, check against the registry's guard for the client's
/// purpose, connect to what was checked.
#[derive(Clone)]
pub struct GuardedConnector {
    guard: Arc<AddressGuard>,
    purpose: Purpose,
    tcp: TcpConnectorService,
    /// `SO_RCVBUF` for every connection (a capped upstream's: see `Budget::receive_buffer`).
    receive_buffer: Option<usize>,
}

impl GuardedConnector {
    /// A connector enforcing `guard` for connections of `purpose`.
    pub fn new(guard: Arc<AddressGuard>, purpose: Purpose) -> GuardedConnector {
        GuardedConnector { guard, purpose, tcp: TcpConnectorService::default(), receive_buffer: None }
    }

    /// Give every connection a receive buffer of `bytes` (the kernel stops growing it), when set.
    pub fn receive_buffer(self, bytes: Option<usize>) -> GuardedConnector {
        GuardedConnector { receive_buffer: bytes, ..self }
    }
}

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>>>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let guard = self.guard.clone();
        let purpose = self.purpose;
        let (tcp, receive_buffer) = (self.tcp, self.receive_buffer);
        Box::pin(async move {
            let host = req.hostname().to_string();
            let port = req.port();
            let addrs = guard.resolve(&host, port, purpose).await.map_err(|e| ConnectError::Resolver(Box::new(e)))?;
            tracing::debug!(%host, port, ?addrs, ?purpose, "connecting to upstream");
            let connection = tcp.call(req.set_addrs(addrs)).await?;
            if let Some(bytes) = receive_buffer {
                // Before the request goes out: what the upstream may send ahead of the budget stays this small.
                if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(connection.io_ref(), bytes) {
                    tracing::debug!(%host, error = %e, "could not set the receive buffer");
                }
            }
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("::", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("100::1", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("3fff:1000::1", true),
            ("2001:2::1", false),
            ("2606:4700::1111", true),
            ("2a00:1450:4001:80b::200e", true),
            // IPv4-mapped, IPv4-compatible and IPv4-translated: judged by the IPv4 address.
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false),
            ("::10.0.0.1", false),
            ("::8.8.8.8", true),
            ("::ffff:0:127.0.0.1", false),
            ("::ffff:0:8.8.8.8", true),
            // NAT64 (well-known prefix): the IPv4 address; local-use NAT64: never public.
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::192.168.0.1", false),
            ("64:ff9b::8.8.8.8", true),
            ("64:ff9b:1::7f00:1", false),
            ("64:ff9b:1::808:808", false),
            // 6to4: the IPv4 address in bits 16..48.
            ("2002:7f00:1::", false),
            ("2002:a9fe:a9fe::1", false),
            ("2002:808:808::1", true),
            // Teredo: server 65.54.227.120; client 8.8.8.8 stored inverted (f7f7:f7f7) or 127.0.0.1 (80ff:fffe).
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", true),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", false),
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", false),
        ];
        for (ip, want) in cases {
            assert_eq!(is_public(ip.parse().expect("ip")), want, "is_public({ip})");
        }
    }

    fn local(port: u16) -> Vec<SocketAddr> {
        vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]
    }

    fn listed(registries: &[(&str, &str)]) -> AddressGuard {
        AddressGuard::for_listed(UpstreamPolicy::Public, Arc::new(ListedHosts::new(registries.iter().copied())))
    }

    #[test]
    fn a_listed_registry_is_trusted_on_its_own_ports_only() {
        let reg = listed(&[("docker.io", "http://127.0.0.1:5000")]);
        assert!(reg.check("127.0.0.1", 5000, &local(5000), Purpose::Registry).is_ok(), "the endpoint");
        assert!(reg.check("127.0.0.1", 5001, &local(5001), Purpose::Registry).is_err(), "endpoint host, other port");
        assert!(reg.check("docker.io", 80, &local(80), Purpose::Registry).is_ok(), "the name, on the scheme's port");
        assert!(reg.check("docker.io", 443, &local(443), Purpose::Registry).is_err(), "the name, another port");

        let bare = listed(&[("localhost", "https://localhost")]);
        assert!(bare.check("localhost", 443, &local(443), Purpose::Registry).is_ok(), "https: 443");
        for port in [80, 5000, 8443, 22] {
            assert!(bare.check("localhost", port, &local(port), Purpose::Registry).is_err(), "localhost:{port}");
        }
        let http = listed(&[("registry.lan", "http://registry.lan")]);
        assert!(http.check("REGISTRY.lan", 80, &local(80), Purpose::Registry).is_ok(), "http: 80, any letter case");
        assert!(http.check("registry.lan", 443, &local(443), Purpose::Registry).is_err());

        let v6 = listed(&[("[::1]:5000", "https://[::1]:5000")]);
        let v6_addr = [SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5000)];
        assert!(v6.check("[::1]", 5000, &v6_addr, Purpose::Registry).is_ok());
        assert!(v6.check("[0:0::1]", 5000, &v6_addr, Purpose::Registry).is_ok(), "IPv6 compared canonically");
    }

    #[test]
    fn listed_hosts_are_redirect_targets_of_listed_registries_only() {
        let hosts = Arc::new(ListedHosts::new([("docker.io", "https://a.lan"), ("b.lan:5000", "http://b.lan:5000")]));
        let a = AddressGuard::for_listed(UpstreamPolicy::Public, hosts);
        assert!(a.check("b.lan", 5000, &local(5000), Purpose::Registry).is_ok(), "another listed registry");
        assert!(a.check("b.lan", 5001, &local(5001), Purpose::Registry).is_err(), "on its own port only");
        let admitted = AddressGuard::new(UpstreamPolicy::Public);
        assert!(admitted.check("b.lan", 5000, &local(5000), Purpose::Registry).is_err(), "not for admitted ones");
    }

    #[test]
    fn unlisted_hosts_must_be_public() {
        let front = AddressGuard::new(UpstreamPolicy::Public);
        assert!(front.check("evil.example", 443, &local(443), Purpose::Registry).is_err(), "resolves to loopback");
        let mixed = vec![SocketAddr::new("8.8.8.8".parse().expect("ip"), 443), local(443)[0]];
        assert!(front.check("rebind.example", 443, &mixed, Purpose::Registry).is_err(), "any private address refuses");
        let public = vec![SocketAddr::new("8.8.8.8".parse().expect("ip"), 443)];
        assert!(front.check("dns.google", 443, &public, Purpose::Registry).is_ok());
        let any = AddressGuard::new(UpstreamPolicy::Any);
        assert!(any.check("evil.example", 443, &local(443), Purpose::Registry).is_ok());
    }

    #[test]
    fn a_realm_is_trusted_for_token_requests_of_its_registry_only() {
        let reg = listed(&[("docker.io", "http://127.0.0.1:5000")]);
        let other = listed(&[("quay.io", "http://127.0.0.1:6000")]);
        assert!(reg.check("127.0.0.1", 7000, &local(7000), Purpose::Token).is_err(), "not yet named");
        reg.trust_realm("http://127.0.0.1:7000/token?service=x");
        assert!(reg.check("127.0.0.1", 7000, &local(7000), Purpose::Token).is_ok(), "named: token requests");
        assert!(reg.check("127.0.0.1", 7000, &local(7000), Purpose::Registry).is_err(), "not for its other requests");
        assert!(other.check("127.0.0.1", 7000, &local(7000), Purpose::Token).is_err(), "not for another registry");
        assert!(reg.check("127.0.0.1", 7001, &local(7001), Purpose::Token).is_err(), "the realm's port only");
        reg.trust_realm("https://auth.lan/token");
        assert!(reg.check("auth.lan", 443, &local(443), Purpose::Token).is_ok(), "https realm without a port: 443");
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host_port("localhost", 443), ("localhost", 443));
        assert_eq!(split_host_port("localhost:5000", 443), ("localhost", 5000));
        assert_eq!(split_host_port("[::1]", 80), ("[::1]", 80));
        assert_eq!(split_host_port("[::1]:5000", 80), ("[::1]", 5000));
    }
}

//! Replicas that share one store: who fetches a digest from the upstream.
//!
//! Every replica knows the replica set (`cluster.peers`, or the A records of `cluster.dns` re-read every
//! `DNS_REFRESH`) and orders it for a digest by rendezvous hashing: each replica's score is a hash of its URL and the
//! digest, the highest score owns the digest. All replicas compute the same order from the same set, so while the
//! membership is stable exactly one replica fetches a blob from the upstream; the others fetch it from that owner
//! over HTTP (marked as a peer request, which the owner never forwards again) and stream it to their clients as it
//! arrives, as they would from an upstream. When the owner cannot be reached the next replica in the order is asked,
//! and a replica that finds itself first fetches from the upstream itself. Nothing here needs the store to support
//! conditional writes (Garage does not enforce `If-None-Match`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;

use crate::digest::Digest;
use crate::upstream::auth::Credentials;
use crate::upstream::guard::{AddressGuard, UpstreamPolicy};
use crate::upstream::Upstream;

/// How often `cluster.dns` is resolved again.
const DNS_REFRESH: Duration = Duration::from_secs(10);
/// Requests in flight to one peer at most (blobs are long transfers; a rollout asks for many at once).
const PEER_CONCURRENCY: usize = 64;

/// How the replicas find each other.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This replica's base URL as the others reach it (`http://10.0.0.5:8080`).
    pub me: String,
    /// Every replica's base URL (this one included), when the set is static.
    pub peers: Vec<String>,
    /// A DNS name whose A (and AAAA) records are the replicas, with the scheme and port to reach them.
    pub dns: Option<DnsPeers>,
}

/// The replica set from DNS (a headless Service).
#[derive(Debug, Clone)]
pub struct DnsPeers {
    /// The name to resolve.
    pub name: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The port every replica listens on.
    pub port: u16,
}

/// See the module documentation.
pub struct Cluster {
    me: String,
    peers: RwLock<Arc<Vec<String>>>,
    /// One upstream description per peer (its own connection pool and breaker in the upstream pool).
    upstreams: DashMap<String, Arc<Upstream>>,
    tls: Arc<rustls::ClientConfig>,
    guard: Arc<AddressGuard>,
}

fn score(peer: &str, digest: &Digest) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(peer.as_bytes());
    h.update([0]);
    h.update(digest.to_string().as_bytes());
    h.finalize().into()
}

impl Cluster {
    /// A cluster from its settings; `tls` is used toward peers that listen on HTTPS.
    pub fn new(settings: &ClusterSettings, tls: Arc<rustls::ClientConfig>) -> Arc<Cluster> {
        let mut peers: Vec<String> = settings.peers.iter().map(|p| p.trim_end_matches('/').to_string()).collect();
        let me = settings.me.trim_end_matches('/').to_string();
        if !peers.contains(&me) {
            peers.push(me.clone());
        }
        peers.sort();
        let cluster = Arc::new(Cluster {
            me,
            peers: RwLock::new(Arc::new(peers)),
            upstreams: DashMap::new(),
            tls,
            // Peers are the mirror's own replicas, on the cluster network: any address is fine.
            guard: Arc::new(AddressGuard::new(UpstreamPolicy::Any)),
        });
        if let Some(dns) = settings.dns.clone() {
            let me = cluster.clone();
            actix_rt::spawn(async move {
                loop {
                    me.resolve(&dns).await;
                    tokio::time::sleep(DNS_REFRESH).await;
                }
            });
        }
        cluster
    }

    async fn resolve(&self, dns: &DnsPeers) {
        match tokio::net::lookup_host((dns.name.as_str(), dns.port)).await {
            Ok(addrs) => {
                let mut peers: Vec<String> = addrs
                    .map(|a| match a {
                        std::net::SocketAddr::V4(v4) => format!("{}://{}:{}", dns.scheme, v4.ip(), dns.port),
                        std::net::SocketAddr::V6(v6) => format!("{}://[{}]:{}", dns.scheme, v6.ip(), dns.port),
                    })
                    .collect();
                if !peers.contains(&self.me) {
                    peers.push(self.me.clone());
                }
                peers.sort();
                peers.dedup();
                let mut current = self.peers.write().unwrap_or_else(|p| p.into_inner());
                if **current != peers {
                    tracing::info!(peers = ?peers, "replica set changed");
                    *current = Arc::new(peers);
                }
            }
            Err(e) => {
                tracing::warn!(name = %dns.name, error = %e, "cannot resolve the replica set; keeping the last one")
            }
        }
    }

    /// The replicas in the order they own `digest`: the first fetches it from the upstream.
    pub fn owners(&self, digest: &Digest) -> Vec<String> {
        let peers = self.peers.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut scored: Vec<([u8; 32], &String)> = peers.iter().map(|p| (score(p, digest), p)).collect();
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        scored.into_iter().map(|(_, p)| p.clone()).collect()
    }

    /// Whether `peer` is this replica.
    pub fn is_me(&self, peer: &str) -> bool {
        peer == self.me
    }

    /// How the upstream pool reaches `peer`.
    pub(crate) fn peer(&self, peer: &str) -> Arc<Upstream> {
        self.upstreams
            .entry(peer.to_string())
            .or_insert_with(|| {
                let host = peer.split("://").nth(1).unwrap_or(peer);
                Arc::new(Upstream {
                    namespace: host.parse().unwrap_or_else(|_| "peer".parse().expect("a valid namespace")),
                    base_url: peer.to_string(),
                    tls: self.tls.clone(),
                    credentials: Credentials::Anonymous,
                    max_concurrent: PEER_CONCURRENCY,
                    guard: self.guard.clone(),
                    listed: true,
                    tag_ttl: None,
                    breaker: crate::upstream::breaker::Breaker::for_peer(),
                    // Replicas talk over the cluster's own network, not the site's uplink.
                    budget: Default::default(),
                    access: Default::default(),
                    pull_budget: Default::default(),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(me: &str, peers: &[&str]) -> Arc<Cluster> {
        let settings =
            ClusterSettings { me: me.into(), peers: peers.iter().map(|p| p.to_string()).collect(), dns: None };
        let tls = crate::upstream::tls::client_config(
            "",
            &crate::upstream::tls::TlsOptions { ca_only: true, ..Default::default() },
        )
        .expect("tls");
        Cluster::new(&settings, tls)
    }

    #[actix_rt::test]
    async fn every_replica_agrees_on_the_owner_and_owners_spread() {
        let peers = ["http://a:1", "http://b:1", "http://c:1"];
        let views: Vec<_> = peers.iter().map(|me| cluster(me, &peers)).collect();
        let mut first = std::collections::HashMap::new();
        for i in 0..300u32 {
            let d = Digest::sha256_of(&i.to_le_bytes());
            let orders: Vec<_> = views.iter().map(|c| c.owners(&d)).collect();
            assert!(orders.windows(2).all(|w| w[0] == w[1]), "same order on every replica");
            assert_eq!(orders[0].len(), 3);
            *first.entry(orders[0][0].clone()).or_insert(0) += 1;
        }
        assert_eq!(first.len(), 3, "every replica owns some digests");
        assert!(first.values().all(|n| *n > 60), "ownership is spread: {first:?}");
        // Removing a replica moves only its digests.
        let two = cluster("http://a:1", &["http://a:1", "http://b:1"]);
        for i in 0..100u32 {
            let d = Digest::sha256_of(&i.to_le_bytes());
            let owner3 = views[0].owners(&d)[0].clone();
            if owner3 != "http://c:1" {
                assert_eq!(two.owners(&d)[0], owner3, "a digest not owned by the removed replica keeps its owner");
            }
        }
    }
}

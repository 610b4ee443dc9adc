//! The keys of where the cache lives and who shares it: `storage` (`type: filesystem`, the default, or `s3` with
//! its bucket) and `cluster` (the replica set: `peers` and `self`, or the `dns` name of a headless Service).
//! Credentials are read at start from `accessKeyIdFile` / `secretAccessKeyFile`, else from the standard
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables; they are never shown.

use std::path::PathBuf;

use serde_yaml::Value;

use super::error::ConfigError;
use super::registry::parse_endpoint;
use super::yaml::{Section, Walker};

const STORAGE_KEYS: &[&str] = &["type", "s3"];
const S3_KEYS: &[&str] = &[
    "endpoint",
    "bucket",
    "region",
    "prefix",
    "pathStyle",
    "accessKeyIdFile",
    "secretAccessKeyFile",
    "localCacheSize",
];
const CLUSTER_KEYS: &[&str] = &["peers", "self", "dns", "port", "scheme"];

/// The local disk tier in front of a bucket when `localCacheSize` is not set.
pub const DEFAULT_LOCAL_CACHE_SIZE: u64 = 10 << 30;

/// `storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageSettings {
    /// `imagePath` holds everything.
    #[default]
    Filesystem,
    /// A bucket shared by replicas; `imagePath` is this replica's local tier.
    S3(S3Config),
}

/// `storage.s3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub local_cache_size: u64,
}

/// `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every replica's base URL.
    pub peers: Vec<String>,
    /// This replica's base URL as the others reach it (else `http://$POD_IP:port`).
    pub self_url: Option<String>,
    /// A headless Service name whose A records are the replicas.
    pub dns: Option<String>,
    /// The port replicas listen on (for `dns` and `$POD_IP`); the server's `port` when absent.
    pub port: Option<u16>,
    /// `http` or `https` toward peers (for `dns` and `$POD_IP`).
    pub scheme: String,
}

fn url(walker: &Walker, key: &str, text: &str) -> Result<String, ConfigError> {
    parse_endpoint(text).map_err(|reason| walker.invalid(key, &Value::String(text.to_string()), reason))
}

/// `storage` of the top section.
pub fn parse_storage(walker: &mut Walker, top: &Section<'_>) -> Result<StorageSettings, ConfigError> {
    let Some(value) = top.get("storage") else {
        return Ok(StorageSettings::Filesystem);
    };
    let section = walker.section("storage", value, STORAGE_KEYS)?;
    match walker.string(&section, "type")?.as_deref() {
        None | Some("filesystem") => Ok(StorageSettings::Filesystem),
        Some("s3") => {
            let Some(s3) = section.get("s3") else {
                return Err(walker.required_by("storage.s3", "storage.type: s3", "it names the bucket"));
            };
            let s3 = walker.section("storage.s3", s3, S3_KEYS)?;
            let need = |walker: &Walker, key: &str| -> Result<String, ConfigError> {
                walker.string(&s3, key)?.ok_or_else(|| walker.missing(&s3.key(key)))
            };
            let endpoint = need(walker, "endpoint")?;
            let endpoint = url(walker, &s3.key("endpoint"), &endpoint)?;
            Ok(StorageSettings::S3(S3Config {
                endpoint,
                bucket: need(walker, "bucket")?,
                region: walker.string(&s3, "region")?.unwrap_or_else(|| "us-east-1".into()),
                prefix: walker.string(&s3, "prefix")?.unwrap_or_default().trim_matches('/').to_string(),
                path_style: walker.boolean(&s3, "pathStyle")?,
                access_key_id_file: walker.string(&s3, "accessKeyIdFile")?.map(PathBuf::from),
                secret_access_key_file: walker.string(&s3, "secretAccessKeyFile")?.map(PathBuf::from),
                local_cache_size: walker.size(&s3, "localCacheSize")?.unwrap_or(DEFAULT_LOCAL_CACHE_SIZE),
            }))
        }
        Some(other) => {
            Err(walker.invalid(&section.key("type"), &Value::String(other.to_string()), "expected filesystem or s3"))
        }
    }
}

/// `cluster` of the top section.
pub fn parse_cluster(walker: &mut Walker, top: &Section<'_>) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(value) = top.get("cluster") else {
        return Ok(None);
    };
    let section = walker.section("cluster", value, CLUSTER_KEYS)?;
    let mut peers = Vec::new();
    if let Some(list) = section.get("peers") {
        let Value::Sequence(items) = list else {
            return Err(walker.invalid(&section.key("peers"), list, "expected a list of base URLs"));
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("{}[{i}]", section.key("peers"));
            let Value::String(text) = item else {
                return Err(walker.invalid(&key, item, "expected a base URL such as http://10.0.0.5:8080"));
            };
            peers.push(url(walker, &key, text)?);
        }
    }
    let self_url = match walker.string(&section, "self")? {
        Some(text) => Some(url(walker, &section.key("self"), &text)?),
        None => None,
    };
    let dns = walker.string(&section, "dns")?;
    if peers.is_empty() && dns.is_none() {
        return Err(walker.required_by("cluster.peers", "cluster", "or cluster.dns: how the replicas find each other"));
    }
    if !peers.is_empty() && dns.is_some() {
        return Err(walker.conflict("cluster.peers", "cluster.dns", "the replica set comes from one of them"));
    }
    let scheme = walker.string(&section, "scheme")?.unwrap_or_else(|| "http".into());
    if scheme != "http" && scheme != "https" {
        return Err(walker.invalid(&section.key("scheme"), &Value::String(scheme), "expected http or https"));
    }
    Ok(Some(ClusterConfig { peers, self_url, dns, port: walker.port(&section, "port", true)?, scheme }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_config;

    fn parse(text: &str) -> Result<(StorageSettings, Option<ClusterConfig>), String> {
        parse_config(text, "f.yaml", &|_| None).map(|(c, _)| (c.storage, c.cluster)).map_err(|e| e.to_string())
    }

    #[test]
    fn storage_and_cluster() {
        assert_eq!(parse("port: 1\n").expect("default"), (StorageSettings::Filesystem, None));
        let (storage, cluster) = parse(
            "storage:\n  type: s3\n  s3:\n    endpoint: http://127.0.0.1:3900/\n    bucket: b\n    region: garage\n    \
             prefix: /m/\n    pathStyle: true\n    localCacheSize: 2Gi\n\
             cluster:\n  peers: [http://10.0.0.1:8080, http://10.0.0.2:8080]\n  self: http://10.0.0.1:8080\n",
        )
        .expect("s3 and peers");
        let StorageSettings::S3(s3) = storage else { panic!("s3") };
        assert_eq!((s3.endpoint.as_str(), s3.bucket.as_str(), s3.prefix.as_str()), ("http://127.0.0.1:3900", "b", "m"));
        assert!(s3.path_style);
        assert_eq!(s3.local_cache_size, 2 << 30);
        let cluster = cluster.expect("cluster");
        assert_eq!(cluster.peers.len(), 2);
        assert_eq!(cluster.self_url.as_deref(), Some("http://10.0.0.1:8080"));
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            ("storage:\n  type: nfs\n", "storage.type"),
            ("storage:\n  type: s3\n", "storage.s3"),
            ("storage:\n  type: s3\n  s3:\n    bucket: b\n", "storage.s3.endpoint"),
            ("storage:\n  type: s3\n  s3:\n    endpoint: ftp://x\n    bucket: b\n", "storage.s3.endpoint"),
            ("cluster:\n  self: http://a:1\n", "cluster.peers"),
            ("cluster:\n  peers: [http://a:1]\n  dns: x\n", "cluster.peers"),
            ("cluster:\n  peers: [nonsense]\n", "cluster.peers[0]"),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}

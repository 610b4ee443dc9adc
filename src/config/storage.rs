//! The checks of `storage` and `cluster`, which become the actors' `StorageChoice` (with `S3Settings`) and
//! `ClusterSettings`: the bucket with its credentials, read now (from the files the config names, else from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`), and the replica set with this replica's own URL
//! (`cluster.self`, else `scheme://$POD_IP:port`).

use std::path::{Path, PathBuf};

use actors::{ClusterSettings, DnsPeers, S3Settings, StorageChoice};

use super::error::{Check, ConfigError};
use super::schema::{ClusterFile, StorageFile};

/// `storage`; `image_path` holds the local tier of a bucket, `capped` says whether `maxCacheSize` is set. The
/// bucket's replica name is the host name here, this replica's URL in a cluster (set by `settings`).
pub fn storage(
    check: &Check<'_>,
    storage: Option<StorageFile>,
    image_path: &Path,
    capped: bool,
) -> Result<StorageChoice, ConfigError> {
    let Some(storage) = storage.filter(|s| s.s3_type.get() == Some(true)) else {
        return Ok(StorageChoice::Filesystem);
    };
    let Some(s3) = storage.s3 else {
        return Err(check.required_by("storage.s3", "storage.type: s3", " (it names the bucket)"));
    };
    let endpoint = s3.endpoint.get().ok_or_else(|| check.missing("storage.s3.endpoint"))?;
    let bucket = s3.bucket.get().ok_or_else(|| check.missing("storage.s3.bucket"))?;
    if capped {
        return Err(check.conflict(
            "maxCacheSize",
            "storage.type",
            "the cap applies to a filesystem cache; with s3 the local tier is capped by storage.s3.localCacheSize \
             and the bucket's size by the bucket's own lifecycle rules",
        ));
    }
    let access_key_id = credential(check, s3.access_key_id_file.get(), "accessKeyIdFile", "AWS_ACCESS_KEY_ID")?;
    let secret = s3.secret_access_key_file.get();
    let secret_access_key = credential(check, secret, "secretAccessKeyFile", "AWS_SECRET_ACCESS_KEY")?;
    Ok(StorageChoice::S3(Box::new(S3Settings {
        endpoint,
        bucket,
        region: s3.region.get().unwrap_or_else(|| "us-east-1".into()),
        prefix: s3.prefix.get().unwrap_or_default().trim_matches('/').to_string(),
        path_style: s3.path_style.get().unwrap_or(false),
        access_key_id,
        secret_access_key,
        local_dir: image_path.to_path_buf(),
        // The local disk tier in front of the bucket.
        local_cache_size: s3.local_cache_size.get().unwrap_or(10 << 30),
        replica: (check.env)("HOSTNAME").unwrap_or_else(|| "ociregistry".to_string()),
    })))
}

/// One credential of the bucket: the text of the file `key` names, else the value of the environment `variable`.
fn credential(check: &Check<'_>, file: Option<PathBuf>, key: &str, variable: &str) -> Result<String, ConfigError> {
    let key = format!("storage.s3.{key}");
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|text| text.trim().to_string())
            .map_err(|err| check.invalid(&key, path.display().to_string(), format!("cannot read it: {err}"))),
        None => {
            let value = (check.env)(variable).map(|value| value.trim().to_string()).filter(|value| !value.is_empty());
            let note = format!(" (or set the {variable} environment variable)");
            value.ok_or_else(|| check.required_by(&key, "storage.type: s3", &note))
        }
    }
}

/// `cluster`; `port` is the server's, where replicas listen unless `cluster.port` says otherwise; `shared` says
/// whether `storage` is a bucket, which replicas need.
pub fn cluster(check: &Check<'_>, c: ClusterFile, port: u16, shared: bool) -> Result<ClusterSettings, ConfigError> {
    let peers = check.list("cluster.peers", c.peers)?;
    let dns = c.dns.get();
    if peers.is_empty() && dns.is_none() {
        let note = " (or cluster.dns: how the replicas find each other)";
        return Err(check.required_by("cluster.peers", "cluster", note));
    }
    if !peers.is_empty() && dns.is_some() {
        return Err(check.conflict("cluster.peers", "cluster.dns", "the replica set comes from one of them"));
    }
    if !shared {
        let note = " (replicas share their cache through storage.type: s3)";
        return Err(check.required_by("storage.type", "cluster", note));
    }
    let scheme = c.scheme.get().unwrap_or_else(|| "http".into());
    let port = c.port.get().flatten().unwrap_or(port);
    let me = match (c.self_url.get(), (check.env)("POD_IP")) {
        (Some(url), _) => url,
        (None, Some(ip)) if ip.parse::<std::net::IpAddr>().is_ok() => {
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
            format!("{scheme}://{host}:{port}")
        }
        _ => {
            let note = " (or set the POD_IP environment variable to this replica's address)";
            return Err(check.required_by("cluster.self", "cluster", note));
        }
    };
    Ok(ClusterSettings { me, peers, dns: dns.map(|name| DnsPeers { name, scheme, port }) })
}

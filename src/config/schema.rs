//! The config file's format (the Go server's `registry-config.yaml`, camelCase keys, and ours) as serde types: the
//! one list of keys there is. Every field is optional (`Val` or `Option`): what a file leaves out takes its default
//! in `validate.rs`, and the command line's options are laid over the same structure (`flags.rs`). Keys the Go
//! server has and this build ignores are here as `Val<Any>`, so they are not reported as unknown. No `Debug`: the
//! values include passwords.

use serde::Deserialize;

use super::kinds::*;

/// A config file.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of config keys")]
pub struct FileConfig {
    pub image_path: Val<ImagePath>,
    pub log_level: Val<Level>,
    pub log_format: Val<Format>,
    pub log_file: Val<PathText>,
    pub config_file: Val<Any>,
    pub preload_images: Val<Text>,
    pub image_file: Val<PathText>,
    pub port: Val<Port>,
    pub host: Val<Host>,
    pub os: Val<Text>,
    pub arch: Val<Text>,
    pub pull_timeout: Val<Millis>,
    pub connect_timeout: Val<Millis>,
    pub idle_timeout: Val<Millis>,
    pub shutdown_grace: Val<Millis>,
    pub client_idle_timeout: Val<Millis>,
    pub always_pull_latest: Val<Flag>,
    pub air_gapped: Val<Flag>,
    pub range_pass_through: Val<Flag>,
    /// Not supported yet: accepted only when false.
    pub hello_world: Val<Flag>,
    pub default_ns: Val<Text>,
    pub health: Val<OffPort>,
    pub metrics: Val<OffPort>,
    pub admin: Option<AdminFile>,
    pub registries: Option<Vec<RegistryFile>>,
    pub upstream_policy: Val<Policy>,
    pub prune_config: Option<PruneFile>,
    pub list_config: Option<ListFile>,
    pub server_tls_config: Option<ServerTlsFile>,
    pub min_free_space: Val<Size>,
    pub tag_ttl: Val<Ttl>,
    pub revalidate_timeout: Val<Millis>,
    pub negative_ttl: Val<Millis>,
    pub actor_idle_timeout: Val<Millis>,
    pub scrub_interval: Val<Never>,
    pub max_cache_size: Val<OffSize>,
    pub max_blob_size: Val<OffSize>,
    pub upstream_bandwidth: Val<Rate>,
    pub rate_limit_reserve: Val<Reserve>,
    pub storage: Option<StorageFile>,
    pub cluster: Option<ClusterFile>,
    pub pinned: Option<Vec<Val<Pattern>>>,
}

/// One `registries` entry.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct RegistryFile {
    pub name: Val<RegistryName>,
    pub description: Val<Any>,
    pub scheme: Val<SchemeKind>,
    pub endpoint: Val<Url>,
    pub max_concurrent: Val<Concurrency>,
    pub tag_ttl: Val<Ttl>,
    pub upstream_bandwidth: Val<Rate>,
    pub allow: Option<Vec<Val<RepoPath>>>,
    pub deny: Option<Vec<Val<RepoPath>>>,
    pub rate_limit_reserve: Val<Reserve>,
    pub auth: Option<AuthFile>,
    pub tls: Option<TlsFile>,
}

/// `registries[].auth`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys such as 'user' and 'passwordFromEnv'")]
pub struct AuthFile {
    pub user: Val<User>,
    pub password: Val<Password>,
    pub password_from_env: Val<Text>,
    pub helper: Val<HelperName>,
    pub helper_cache_time: Val<Millis>,
    pub token: Option<TokenFile>,
}

/// `registries[].auth.token`, the Go server's: only the `ecr` provider, mapped to the `ecr-login` helper.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping such as {provider: ecr}; or use 'auth.helper'")]
pub struct TokenFile {
    pub provider: Val<Text>,
    pub provider_opts: Val<Text>,
    pub expiry: Val<Expiry>,
}

/// `registries[].tls`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct TlsFile {
    pub ca: Val<PathText>,
    pub ca_only: Val<Flag>,
    pub cert: Val<PathText>,
    pub key: Val<PathText>,
    pub insecure_skip_verify: Val<Flag>,
}

/// `serverTlsConfig`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct ServerTlsFile {
    pub cert: Val<PathText>,
    pub key: Val<PathText>,
    pub ca: Val<PathText>,
    pub client_auth: Val<ClientAuthKind>,
}

/// `admin`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct AdminFile {
    pub port: Val<Port>,
    pub token_file: Val<PathText>,
}

/// `pruneConfig` (`dryRun` also spelled `dryrun`, as the Go server reads it).
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct PruneFile {
    pub enabled: Val<Flag>,
    #[serde(rename = "type")]
    pub kind: Val<PruneType>,
    pub duration: Val<Millis>,
    pub frequency: Val<Millis>,
    pub count: Val<Count>,
    pub expr: Val<Exprs>,
    pub dry_run: Val<Flag>,
    pub dryrun: Val<Flag>,
}

/// `listConfig`, the Go server's `list` options: no effect here.
#[derive(Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub struct ListFile {
    pub header: Val<Any>,
    pub expr: Val<Any>,
}

/// `storage`.
#[derive(Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub struct StorageFile {
    #[serde(rename = "type")]
    pub s3_type: Val<StorageType>,
    pub s3: Option<S3File>,
}

/// `storage.s3`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", expecting = "a mapping of keys")]
pub struct S3File {
    pub endpoint: Val<Url>,
    pub bucket: Val<Text>,
    pub region: Val<Text>,
    pub prefix: Val<Text>,
    pub path_style: Val<Flag>,
    pub access_key_id_file: Val<PathText>,
    pub secret_access_key_file: Val<PathText>,
    pub local_cache_size: Val<Size>,
}

/// `cluster`.
#[derive(Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub struct ClusterFile {
    pub peers: Option<Vec<Val<Peer>>>,
    #[serde(rename = "self")]
    pub self_url: Val<Url>,
    pub dns: Val<Text>,
    pub port: Val<OffPort>,
    pub scheme: Val<PeerScheme>,
}

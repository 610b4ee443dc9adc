//! What the `Prune` message carries: which images to prune (`PruneRequest`, its `PruneRule`s) and what went
//! (`PruneReport`). The cache decides and removes (`cache/prune.rs`); the `prune` command, the admin API and the
//! `pruneConfig` schedule build the request.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One condition an image must meet to be pruned.
#[derive(Debug, Clone)]
pub enum PruneRule {
    /// Not pulled for this long (`type: accessed`).
    NotPulledFor(Duration),
    /// First cached more than this long ago (`type: created`).
    CreatedMoreThan(Duration),
    /// First cached before this time, unix seconds (`prune --date`).
    CreatedBefore(i64),
    /// Its name (`ns/repo:tag`, `ns/repo@digest`) matches one of these (`type: pattern`, `prune --pattern`).
    Matches(Vec<Regex>),
}

/// What one prune does.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    /// Every rule must hold for an image to go; none: no image goes, only unneeded content is collected.
    pub rules: Vec<PruneRule>,
    /// At most this many images (`count`; `None`: no limit).
    pub limit: Option<usize>,
    /// Decide and report, remove nothing.
    pub dry_run: bool,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// The images (`ns/repo:tag`), in the order chosen.
    pub images: Vec<String>,
    /// Manifests removed.
    pub manifests: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes of those manifests and blobs.
    pub bytes: u64,
}

//! Listing a cache directory (`Backend::list`: a walk on the blocking pool, streamed), and the removal at open of
//! what earlier runs left in `tmp/`.
//!
//! Anything in `tmp/` is a write that never committed and is deleted when the store is opened, before anything is
//! served, so the scan that follows never races a write of this run; an unfinished blob download younger than a
//! week is kept, to be resumed by the next fetch of that blob.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::layout::Layout;
use crate::error::StoreError;
use crate::store::backend::Listed;
use crate::store::stamp::version_of;

/// Unfinished blob downloads older than this are deleted at start instead of being resumed.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Every file under the key `prefix` of `root` (directories are walked into; what is neither a file nor a directory
/// is listed as not plain), streamed from a walk on the blocking pool.
pub(super) fn list(root: &Path, prefix: &str) -> BoxStream<'static, Result<Listed, StoreError>> {
    let (tx, rx) = mpsc::channel(256);
    let (dir, prefix) = (root.join(prefix), prefix.to_string());
    tokio::task::spawn_blocking(move || walk(&dir, &prefix, &tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (Ok(l), rx)) }).boxed()
}

/// List `dir` (the key `prefix`) into `tx`; false once nobody listens.
fn walk(dir: &Path, prefix: &str, tx: &mpsc::Sender<Listed>) -> bool {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if !walk(&entry.path(), &format!("{key}/"), tx) {
                return false;
            }
            continue;
        }
        let listed = match entry.metadata() {
            Ok(meta) => Listed {
                key,
                size: meta.len(),
                stored: meta.mtime(),
                version: version_of(&meta),
                plain: meta.is_file(),
            },
            Err(_) => Listed { key, size: 0, stored: 0, version: crate::store::Version(0), plain: false },
        };
        if tx.blocking_send(listed).is_err() {
            return false;
        }
    }
    true
}

/// Remove what earlier runs left in `tmp/` (blocking; before anything is served). Returns how many.
pub(super) fn remove_unfinished(layout: &Layout) -> usize {
    let mut removed = 0;
    if let Ok(entries) = fs::read_dir(layout.tmp_dir()) {
        for entry in entries.flatten() {
            let path = entry.path();
            // An unfinished blob download is resumed by the next fetch of that blob, unless it is old.
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if name.starts_with("partial-") && age.is_some_and(|a| a < PARTIAL_MAX_AGE) {
                if !name.ends_with(".etag") {
                    tracing::info!(file = %path.display(), "keeping an unfinished download to resume");
                }
                continue;
            }
            tracing::info!(file = %path.display(), "removing unfinished write left by an earlier run");
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
            removed += 1;
        }
    }
    removed
}

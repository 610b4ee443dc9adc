//! `serve --preload-images FILE[,GLOB...]` (`preloadImages`): after start, load each file (an image list or an
//! archive, as `load` does) in the background, one after the other. Pulls are served meanwhile; `/ready` reports the
//! progress without waiting for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actors::preload::{LoadEvent, PlatformFilter};
use actors::Mirror;

use super::load::{run_local, LoadRequest};

/// How far the background preload is, for `/ready`.
#[derive(Debug, Default)]
pub struct PreloadStatus {
    planned: AtomicUsize,
    loaded: AtomicUsize,
    failed: AtomicUsize,
    done: AtomicBool,
    /// Why the image being loaded waits, if it does.
    waiting: std::sync::Mutex<Option<String>>,
}

impl PreloadStatus {
    /// One line for `/ready`.
    pub fn line(&self) -> String {
        let (planned, loaded, failed) = (
            self.planned.load(Ordering::Relaxed),
            self.loaded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        let state = if self.done.load(Ordering::Relaxed) { "done" } else { "running" };
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = waiting.as_ref().map(|w| format!("; waiting: {w}")).unwrap_or_default();
        format!("preload {state}: {loaded} of {planned} images loaded, {failed} failed{waiting}")
    }

    fn event(&self, event: &LoadEvent) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        *waiting = match event {
            LoadEvent::Waiting { image, reason } => Some(format!("{image}: {reason}")),
            _ => None,
        };
        drop(waiting);
        match event {
            LoadEvent::Planned { images } => drop(self.planned.fetch_add(*images, Ordering::Relaxed)),
            LoadEvent::Started { .. } | LoadEvent::Waiting { .. } => {}
            LoadEvent::Finished { result: Ok(_), .. } => drop(self.loaded.fetch_add(1, Ordering::Relaxed)),
            LoadEvent::Finished { result: Err(_), .. } => drop(self.failed.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// The files `FILE[,GLOB...]` names: each item a path, or a pattern with `*` and `?` in its file name.
pub fn expand(spec: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let path = Path::new(item);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            out.push(path.to_path_buf());
            continue;
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let re = regex::Regex::new(&format!("^{}$", regex::escape(&name).replace(r"\*", ".*").replace(r"\?", ".")))
            .map_err(|e| format!("{item}: {e}"))?;
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{item}: {}: {e}", dir.display()))?
            .flatten()
            .filter(|e| re.is_match(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Start the background preload; the status follows it.
pub fn spawn(mirror: Mirror, spec: String, platform: PlatformFilter) -> Arc<PreloadStatus> {
    let status = Arc::new(PreloadStatus::default());
    let tracked = status.clone();
    actix_rt::spawn(async move {
        let files = match expand(&spec) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!("preloadImages: {e}");
                tracked.done.store(true, Ordering::Relaxed);
                return;
            }
        };
        for file in files {
            tracing::info!(file = %file.display(), "preloading");
            let request = LoadRequest { file: file.clone(), resolve_ref: None, platform: platform.clone() };
            let summary = run_local(&mirror, &request, &|event: LoadEvent| {
                match &event {
                    LoadEvent::Finished { image, result: Err(e) } => {
                        tracing::warn!(image = %image, "preload failed: {e}")
                    }
                    LoadEvent::Finished { image, result: Ok(bytes) } => {
                        tracing::info!(image = %image, bytes, "preloaded")
                    }
                    _ => {}
                }
                tracked.event(&event);
            })
            .await;
            tracing::info!(
                file = %file.display(),
                loaded = summary.loaded.len(),
                failed = summary.failed.len(),
                bytes = summary.bytes,
                "preload of the file done"
            );
        }
        tracked.done.store(true, Ordering::Relaxed);
        tracing::info!("{}", tracked.line());
    });
    status
}

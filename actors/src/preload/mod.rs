//! Preloading the cache: from a list of image references, pulled through the configured upstreams exactly as a
//! client would pull them (through `Mirror`'s front door: the manifest, every platform's manifest, every blob read to
//! its end), or from an archive (`docker save`, OCI layout) with no upstream at all, every object entering the cache
//! verified through the cache actor (`import`).
//!
//! An image its registry's allow or deny list refuses is neither pulled nor loaded (`PreloadError::Refused`).
//!
//! Loading is additive and idempotent: what is cached already is not fetched again, a tag is recorded for what it
//! names now. One image failing does not stop the others; the summary says which failed and why.
//!
//! Files: this one runs a load and reports it; `names` (image references as people write them), `platform` (which
//! platforms of an index), `pull` (one image through the front door), `archive` (reading archives), `plan` (the
//! images an archive holds and their names), `unpack` (one image of an archive), `import` (an object into the
//! cache), `error` (why an image or a load failed).

pub mod archive;
mod error;
mod import;
mod names;
mod plan;
mod platform;
mod pull;
mod unpack;

use std::path::Path;

use serde::Deserialize;

use self::archive::{Source, SpoolBound};
use self::plan::{plan, PlanKind};
use crate::mirror::Mirror;
use crate::reference::Named;

pub use self::archive::is_archive;
pub use self::error::{BadImageRef, Fault, Object, PreloadError};
pub use self::names::{parse_image_ref, parse_list, ImageRef};
pub use self::platform::PlatformFilter;

/// Progress of a load, reported as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// How many images the file names.
    Planned {
        /// The number.
        images: usize,
    },
    /// An image is being loaded.
    Started {
        /// `ns/repo:tag`.
        image: String,
    },
    /// An image waits: its upstream keeps what is left of its pull budget for clients (`rateLimitReserve`).
    Waiting {
        /// `ns/repo:tag`.
        image: String,
        /// Why, and until when at most, in words.
        reason: String,
    },
    /// An image is done.
    Finished {
        /// `ns/repo:tag`.
        image: String,
        /// Bytes of its blobs (cached before or now), or why it failed (the `PreloadError`'s text: progress crosses
        /// the admin API as JSON).
        result: Result<u64, String>,
    },
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LoadSummary {
    /// Images now cached.
    pub loaded: Vec<String>,
    /// Images that failed, with the reason (the `PreloadError`'s text).
    pub failed: Vec<(String, String)>,
    /// Bytes of the loaded images' blobs.
    pub bytes: u64,
}

impl LoadSummary {
    /// Record how `image` ended, and tell `progress`.
    fn finish(&mut self, image: String, result: Result<u64, PreloadError>, progress: &dyn Fn(LoadEvent)) {
        let result = result.map_err(|e| e.to_string());
        match &result {
            Ok(bytes) => {
                self.loaded.push(image.clone());
                self.bytes += bytes;
            }
            Err(why) => self.failed.push((image.clone(), why.clone())),
        }
        progress(LoadEvent::Finished { image, result });
    }
}

impl Mirror {
    /// Pull every image of a list through the configured upstreams, as a client would, one image at a time.
    pub async fn load_list(&self, text: &str, platform: &PlatformFilter, progress: &dyn Fn(LoadEvent)) -> LoadSummary {
        let entries = parse_list(text);
        progress(LoadEvent::Planned { images: entries.len() });
        let mut summary = LoadSummary::default();
        for (line, parsed) in entries {
            let (name, result) = match parsed {
                Ok((image, reference)) => {
                    let name = Named(&image, &reference).to_string();
                    progress(LoadEvent::Started { image: name.clone() });
                    let result = match self.refusal(&image) {
                        Some(refusal) => Err(PreloadError::Refused { image: name.clone(), refusal }),
                        None => pull::pull_image(self, &image, &reference, platform, progress).await,
                    };
                    (name, result)
                }
                Err(why) => (line, Err(why.into())),
            };
            summary.finish(name, result, progress);
        }
        summary
    }

    /// Load an archive (an OCI layout directory or tar, a `docker save` tar; gzipped or not) with no upstream.
    /// `resolve_ref` names the image of a single-image archive (see `archive`).
    pub async fn load_archive(
        &self,
        path: &Path,
        resolve_ref: Option<&str>,
        platform: &PlatformFilter,
        progress: &dyn Fn(LoadEvent),
    ) -> LoadSummary {
        let mut summary = LoadSummary::default();
        let what = path.display().to_string();
        let opened = {
            let path = path.to_path_buf();
            let bound = SpoolBound::of(self.blob_bound(), self.store()).await;
            tokio::task::spawn_blocking(move || Source::open(&path, bound)).await
        };
        let source = match opened {
            Ok(Ok(source)) => source,
            Ok(Err(e)) => return fail_all(summary, what, PreloadError::Unreadable(e), progress),
            Err(e) => return fail_all(summary, what, e.into(), progress),
        };
        let resolve = match resolve_ref.map(names::parse_resolve).transpose() {
            Ok(r) => r,
            Err(e) => return fail_all(summary, what, PreloadError::ResolveRef(e), progress),
        };
        let plan = match plan(&source, resolve.as_ref()) {
            Ok(plan) => plan,
            Err(why) => return fail_all(summary, what, why, progress),
        };
        progress(LoadEvent::Planned { images: plan.len() });
        for item in plan {
            let (name, result) = match item.names {
                Ok(names) => {
                    let name = names.iter().map(|(i, r)| Named(i, r).to_string()).collect::<Vec<_>>().join(", ");
                    progress(LoadEvent::Started { image: name.clone() });
                    let refused = names.iter().find_map(|(i, r)| Some((Named(i, r).to_string(), self.refusal(i)?)));
                    let result = match (refused, item.kind) {
                        (Some((image, refusal)), _) => Err(PreloadError::Refused { image, refusal }),
                        (None, PlanKind::Oci(descriptor)) => {
                            self.import_oci(&source, &names, &descriptor, platform).await
                        }
                        (None, PlanKind::Docker(entry)) => self.import_docker(&source, &names, &entry).await,
                    };
                    (name, result)
                }
                Err(why) => (item.label, Err(why)),
            };
            summary.finish(name, result, progress);
        }
        summary
    }
}

/// A load that failed as a whole: one image, named `what`, failed with `why`.
fn fail_all(mut summary: LoadSummary, what: String, why: PreloadError, progress: &dyn Fn(LoadEvent)) -> LoadSummary {
    progress(LoadEvent::Planned { images: 1 });
    summary.finish(what, Err(why), progress);
    summary
}

//! `ociregistry load --image-file FILE`: a list of image references pulled through the configured upstreams, or a
//! `docker save` / OCI-layout archive (directory or tar, gzipped or not) loaded with no upstream. On a cache
//! directory no server holds the command runs the actors itself; against a running server it sends the file to the
//! admin API (`POST /cmd/image/load`; an OCI layout directory is sent as a tar) and shows the progress the server
//! streams back, one JSON event a line. A progress bar on a terminal, plain lines otherwise; a summary at the end;
//! exit 1 when any image failed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::preload::{LoadEvent, LoadSummary, PlatformFilter};
use actors::Mirror;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::client::AdminClient;

/// What a load is given.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub file: PathBuf,
    pub resolve_ref: Option<String>,
    pub platform: PlatformFilter,
}

/// A load event as the admin API streams it (one JSON object a line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Wire {
    Planned { images: usize },
    Started { image: String },
    Waiting { image: String, reason: String },
    Loaded { image: String, bytes: u64 },
    Failed { image: String, error: String },
    Summary { summary: LoadSummary },
}

impl From<LoadEvent> for Wire {
    fn from(event: LoadEvent) -> Wire {
        match event {
            LoadEvent::Planned { images } => Wire::Planned { images },
            LoadEvent::Started { image } => Wire::Started { image },
            LoadEvent::Waiting { image, reason } => Wire::Waiting { image, reason },
            LoadEvent::Finished { image, result: Ok(bytes) } => Wire::Loaded { image, bytes },
            LoadEvent::Finished { image, result: Err(error) } => Wire::Failed { image, error },
        }
    }
}

/// Run a load on this process's actors.
pub async fn run_local(mirror: &Mirror, request: &LoadRequest, progress: &dyn Fn(LoadEvent)) -> LoadSummary {
    let archive = match actors::preload::is_archive(&request.file) {
        Ok(a) => a,
        Err(e) => {
            let what = request.file.display().to_string();
            progress(LoadEvent::Planned { images: 1 });
            let why = format!("cannot read {what}: {e}");
            progress(LoadEvent::Finished { image: what.clone(), result: Err(why.clone()) });
            return LoadSummary { failed: vec![(what, why)], ..LoadSummary::default() };
        }
    };
    if archive {
        mirror.load_archive(&request.file, request.resolve_ref.as_deref(), &request.platform, progress).await
    } else {
        let text = match std::fs::read_to_string(&request.file) {
            Ok(t) => t,
            Err(e) => {
                let what = request.file.display().to_string();
                let why = format!("cannot read {what}: {e}");
                progress(LoadEvent::Planned { images: 1 });
                progress(LoadEvent::Finished { image: what.clone(), result: Err(why.clone()) });
                return LoadSummary { failed: vec![(what, why)], ..LoadSummary::default() };
            }
        };
        mirror.load_list(&text, &request.platform, progress).await
    }
}

/// Run a load on a running server through its admin API.
pub async fn run_remote(
    client: &AdminClient,
    request: &LoadRequest,
    progress: &dyn Fn(LoadEvent),
) -> Result<LoadSummary, String> {
    let archive = actors::preload::is_archive(&request.file).map_err(|e| format!("{}: {e}", request.file.display()))?;
    let mut query = vec![("kind", if archive { "archive" } else { "list" }.to_string())];
    if let Some(r) = &request.resolve_ref {
        query.push(("resolveRef", r.clone()));
    }
    if let Some(os) = &request.platform.os {
        query.push(("os", os.clone()));
    }
    if let Some(arch) = &request.platform.arch {
        query.push(("arch", arch.clone()));
    }
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let path = format!("/cmd/image/load?{}", query.join("&"));
    // A directory goes as a tar of itself.
    let tarred = if request.file.is_dir() { Some(tar_dir(&request.file)?) } else { None };
    let file = tarred.as_ref().map_or(request.file.as_path(), |t| t.path());
    let mut summary = None;
    let mut bad = None;
    client
        .post_file_lines(&path, file, |line| match serde_json::from_str::<Wire>(line) {
            Ok(Wire::Planned { images }) => progress(LoadEvent::Planned { images }),
            Ok(Wire::Started { image }) => progress(LoadEvent::Started { image }),
            Ok(Wire::Waiting { image, reason }) => progress(LoadEvent::Waiting { image, reason }),
            Ok(Wire::Loaded { image, bytes }) => progress(LoadEvent::Finished { image, result: Ok(bytes) }),
            Ok(Wire::Failed { image, error }) => progress(LoadEvent::Finished { image, result: Err(error) }),
            Ok(Wire::Summary { summary: s }) => summary = Some(s),
            Err(e) => bad = Some(format!("the admin API sent {line:?}: {e}")),
        })
        .await?;
    if let Some(bad) = bad {
        return Err(bad);
    }
    summary.ok_or_else(|| "the admin API ended without a summary".to_string())
}

/// Percent-encoding of a query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tar_dir(dir: &Path) -> Result<tempfile::NamedTempFile, String> {
    let tmp =
        tempfile::Builder::new().prefix("ociregistry-load-").suffix(".tar").tempfile().map_err(|e| e.to_string())?;
    let mut builder = tar::Builder::new(tmp.as_file());
    builder.follow_symlinks(true);
    builder.append_dir_all(".", dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    builder.finish().map_err(|e| e.to_string())?;
    drop(builder);
    Ok(tmp)
}

/// How progress is shown: a bar on a terminal, else one line per image on standard error.
pub struct Display {
    bar: std::cell::RefCell<Option<ProgressBar>>,
    terminal: bool,
}

impl Display {
    pub fn new() -> Display {
        Display { bar: std::cell::RefCell::new(None), terminal: std::io::stderr().is_terminal() }
    }

    pub fn event(&self, event: LoadEvent) {
        match event {
            LoadEvent::Planned { images } => {
                if self.terminal {
                    let bar = ProgressBar::new(images as u64);
                    if let Ok(style) =
                        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} images {wide_msg}")
                    {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.enable_steady_tick(Duration::from_millis(200));
                    *self.bar.borrow_mut() = Some(bar);
                } else {
                    eprintln!("loading {images} image(s)");
                }
            }
            LoadEvent::Started { image } => match &*self.bar.borrow() {
                Some(bar) => bar.set_message(image),
                None => eprintln!("loading {image}"),
            },
            LoadEvent::Waiting { image, reason } => match &*self.bar.borrow() {
                Some(bar) => bar.println(format!("waiting: {image}: {reason}")),
                None => eprintln!("waiting: {image}: {reason}"),
            },
            LoadEvent::Finished { image, result } => {
                let line = match &result {
                    Ok(bytes) => format!("loaded {image} ({bytes} bytes)"),
                    Err(e) => format!("FAILED {image}: {e}"),
                };
                match &*self.bar.borrow() {
                    Some(bar) => {
                        bar.println(line);
                        bar.inc(1);
                    }
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

/// The summary printed at the end.
pub fn print_summary(summary: &LoadSummary) {
    println!("loaded {} image(s), {} bytes; {} failed", summary.loaded.len(), summary.bytes, summary.failed.len());
    for (image, why) in &summary.failed {
        println!("failed: {image}: {why}");
    }
}

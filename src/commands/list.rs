//! `ociregistry list`: the cached images, as a table (the Go command's columns: IMAGE, TAG/DIGEST, TYPE, CREATED,
//! PULLED, SIZE(MB)) or as JSON. The entries are those of the admin API's `GET /cmd/image/list`, which lists every
//! reference record (`root: false` for the platform manifests of an index, recorded by digest); the command shows
//! the images (`root: true`).

use actors::reference::Reference;
use actors::{cached_images, Index};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::cli::ListArgs;

/// One reference record with what its image holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageEntry {
    pub namespace: String,
    pub repository: String,
    /// The tag, or the digest it was pulled by.
    pub reference: String,
    /// The manifest it names.
    pub digest: String,
    pub media_type: String,
    /// Bytes of that manifest.
    pub size: u64,
    /// When the reference was first cached, and last pulled (unix seconds).
    pub created: i64,
    pub pulled: i64,
    /// An image of its own (a tag, or a digest no other reference of the repository reaches), rather than a
    /// platform manifest of an index.
    #[serde(default)]
    pub root: bool,
    /// `index` or `image`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Bytes of every cached manifest and blob the image's graph reaches.
    #[serde(default)]
    pub image_size: u64,
    /// Platform manifests of an index that are cached.
    #[serde(default)]
    pub platforms: usize,
}

impl ImageEntry {
    /// `ns/repo:tag` or `ns/repo@digest`.
    pub fn name(&self) -> String {
        let sep = if self.reference.contains(':') { '@' } else { ':' };
        format!("{}/{}{sep}{}", self.namespace, self.repository, self.reference)
    }
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else {
        "image"
    }
}

/// Every reference record, sorted by name: the images first-class, their platform manifests beside them.
pub fn image_entries(index: &Index) -> Vec<ImageEntry> {
    let mut out = Vec::new();
    let records = index.refs();
    for image in cached_images(index) {
        let Some(meta) = index.manifest(&image.root.digest) else { continue };
        let kind = kind_of(&meta.media_type);
        out.push(ImageEntry {
            namespace: image.root.namespace.to_string(),
            repository: image.root.repository.to_string(),
            reference: image.root.reference.to_string(),
            digest: image.root.digest.to_string(),
            media_type: meta.media_type.clone(),
            size: meta.size,
            created: image.root.created,
            pulled: image.pulled,
            root: true,
            kind: kind.to_string(),
            image_size: image.bytes,
            platforms: if kind == "index" { image.manifests.len().saturating_sub(1) } else { 0 },
        });
        for child in &image.children {
            let Some(record) = records.iter().find(|r| &r.key() == child) else { continue };
            let Some(meta) = index.manifest(&record.digest) else { continue };
            let blobs: u64 = index
                .links(&record.digest)
                .map(|l| l.blobs.iter().filter_map(|b| index.blob(b)).map(|b| b.size).sum())
                .unwrap_or(0);
            out.push(ImageEntry {
                namespace: record.namespace.to_string(),
                repository: record.repository.to_string(),
                reference: record.reference.to_string(),
                digest: record.digest.to_string(),
                media_type: meta.media_type.clone(),
                size: meta.size,
                created: record.created,
                pulled: record.pulled,
                root: false,
                kind: kind_of(&meta.media_type).to_string(),
                image_size: meta.size + blobs,
                platforms: 0,
            });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.repository, &a.reference).cmp(&(&b.namespace, &b.repository, &b.reference)));
    out
}

fn time(unix: i64) -> String {
    if unix <= 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64)).to_string()
}

fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// The images (`root`) that `--pattern` selects.
pub fn select(entries: Vec<ImageEntry>, pattern: Option<&Regex>) -> Vec<ImageEntry> {
    entries.into_iter().filter(|e| e.root && pattern.is_none_or(|p| p.is_match(&e.name()))).collect()
}

/// The table or the JSON, as printed.
pub fn render(entries: &[ImageEntry], args: &ListArgs) -> String {
    if args.json {
        return serde_json::to_string_pretty(entries).unwrap_or_default() + "\n";
    }
    let mut rows: Vec<[String; 6]> = Vec::new();
    if args.header {
        rows.push(["IMAGE", "TAG/DIGEST", "TYPE", "CREATED", "PULLED", "SIZE(MB)"].map(str::to_string));
    }
    for e in entries {
        let reference = match e.reference.parse::<Reference>() {
            Ok(Reference::Digest(_)) if args.short_digest => short(&e.reference),
            _ => e.reference.clone(),
        };
        rows.push([
            format!("{}/{}", e.namespace, e.repository),
            reference,
            e.kind.clone(),
            time(e.created),
            time(e.pulled),
            format!("{:.1}", e.image_size as f64 / 1e6),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

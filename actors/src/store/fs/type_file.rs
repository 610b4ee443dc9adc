//! The `.type` file beside a manifest: read without trusting it (a bounded read of a regular file, so a huge file or
//! a FIFO under that name cannot stall the reader), judged against the manifest's content (`store::mediatype`), and
//! repaired: a type that contradicts the content, or is no manifest type at all, is moved to `quarantine/` and the
//! content's type written in its place (through the atomic write path); a missing one is written. A manifest whose
//! content fits no known type and that has no valid `.type` is damaged: both files are moved aside, and the next pull
//! fetches it again. This runs wherever a `.type` is read from disk: the start-up scan, and a lookup while the index
//! loads. Cached manifests are served from the index, which holds the checked type; nothing here is on that path.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::files::{version_of, write_atomic};
use super::inventory::{quarantine_file, quarantine_unchanged};
use super::layout::Layout;
use crate::digest::Digest;
use crate::store::mediatype::{self, ManifestType, Verdict};
use crate::store::records::Version;

/// The longest `.type` file read: every manifest type's name is far shorter.
const MAX_TYPE_LEN: u64 = 255;

/// What a manifest's `.type` file held.
enum TypeFile {
    /// There is none.
    Absent,
    /// Its text (or why it has none that could be a type), and the version of the copy read.
    Found { text: String, version: Version },
}

/// Read `path` (blocking) without following it into anything but a regular file of a plausible size.
fn read(path: &Path) -> TypeFile {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let opened = OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return TypeFile::Absent,
        Err(e) => return unusable(path, format!("(unreadable: {e})")),
    };
    let Ok(meta) = file.metadata() else {
        return unusable(path, "(unreadable)".into());
    };
    let version = version_of(&meta);
    if !meta.is_file() {
        return TypeFile::Found { text: "(not a regular file)".into(), version };
    }
    if meta.len() > MAX_TYPE_LEN {
        return TypeFile::Found { text: format!("({} bytes: too long for a media type)", meta.len()), version };
    }
    let mut bytes = Vec::new();
    if let Err(e) = (&file).take(MAX_TYPE_LEN).read_to_end(&mut bytes) {
        return TypeFile::Found { text: format!("(unreadable: {e})"), version };
    }
    TypeFile::Found { text: String::from_utf8_lossy(&bytes).trim().to_string(), version }
}

/// A `.type` that cannot be opened or examined: judged as no type, quarantined by path whatever its version.
fn unusable(path: &Path, text: String) -> TypeFile {
    let version = fs::metadata(path).map(|m| version_of(&m)).unwrap_or(Version(0));
    TypeFile::Found { text, version }
}

/// What the check of a manifest's `.type` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// The manifest's type, as served from now on; `quarantined`: a wrong `.type` was moved aside.
    Type { media_type: ManifestType, quarantined: bool },
    /// Neither the content nor the `.type` says what the manifest is; both files were moved aside
    /// (`quarantined` of them).
    Damaged { quarantined: usize },
}

/// Check (and repair) the `.type` of the manifest `digest`, whose verified bytes are `bytes` and were read from the
/// copy `version` (blocking). See the module documentation.
pub(super) fn check(layout: &Layout, digest: &Digest, bytes: &[u8], version: Version) -> Checked {
    let path = layout.manifest_type(digest);
    let found = read(&path);
    let kept = match &found {
        TypeFile::Absent => None,
        TypeFile::Found { text, .. } => Some(text.as_str()),
    };
    match mediatype::check(kept, bytes) {
        Verdict::Agrees(media_type) => Checked::Type { media_type, quarantined: false },
        Verdict::Missing(media_type) => {
            rewrite(layout, &path, digest, media_type);
            Checked::Type { media_type, quarantined: false }
        }
        Verdict::Wrong { kept, content } => {
            let TypeFile::Found { version: type_version, .. } = found else {
                return Checked::Type { media_type: content, quarantined: false };
            };
            let why = format!("media type {kept:?} does not fit the manifest {digest}, which is a {content}");
            // Changed since it was read: the store wrote it again meanwhile (with a type that fits), left alone.
            let quarantined = quarantine_unchanged(layout, &path, type_version, &why);
            if quarantined {
                rewrite(layout, &path, digest, content);
            }
            Checked::Type { media_type: content, quarantined }
        }
        Verdict::Unknown => {
            let why = format!("the manifest {digest} fits no known manifest type, and its media type file names none");
            let mut quarantined = usize::from(quarantine_unchanged(layout, &layout.manifest(digest), version, &why));
            if quarantined > 0 && matches!(found, TypeFile::Found { .. }) {
                quarantined += usize::from(quarantine_file(layout, &path, &why));
            }
            Checked::Damaged { quarantined }
        }
    }
}

/// Write the type the content says through the atomic write path; a volume that cannot be written keeps serving the
/// checked type from memory.
fn rewrite(layout: &Layout, path: &Path, digest: &Digest, media_type: ManifestType) {
    match write_atomic(layout, path, media_type.as_str().as_bytes(), true) {
        Ok(()) => {
            tracing::info!(manifest = %digest, media_type = %media_type, "wrote the manifest's media type from its content")
        }
        Err(e) => tracing::warn!(manifest = %digest, error = %e, "cannot write the manifest's media type"),
    }
}

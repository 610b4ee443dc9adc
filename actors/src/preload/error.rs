//! Why an image, or a whole load, failed. Each error names what failed (the image reference, the archive, an
//! object of the image) and with what; its text is the reason the load's report gives for that image (the report
//! carries it as text: it crosses the admin API as JSON).

use std::fmt;
use std::io;

use actix::MailboxError;

use super::platform::PlatformFilter;
use crate::access::Refusal;
use crate::digest::{Digest, DigestError};
use crate::error::{MirrorError, StoreError};
use crate::messages::ImportError;
use crate::outcome::PassReason;
use crate::reference::ReferenceError;

/// The annotation of an OCI layout that names an image (or only its tag).
pub(crate) const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Text that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an image reference: {source}")]
pub struct BadImageRef {
    /// The text, as read (without `docker://`).
    pub text: String,
    /// Which part is wrong.
    #[source]
    pub source: ReferenceError,
}

/// Why an image, or a whole load, failed.
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    /// An image reference in a list, or an image name in an archive, that does not parse.
    #[error(transparent)]
    ImageRef(#[from] BadImageRef),
    /// `--resolve-ref` is not an image reference.
    #[error("--resolve-ref: {0}")]
    ResolveRef(#[source] BadImageRef),
    /// `--resolve-ref` given for an archive of several images.
    #[error("--resolve-ref names the image of a single-image archive only")]
    ResolveRefNotSingle,
    /// The archive could not be opened or its contents listed.
    #[error("cannot read the archive: {0}")]
    Unreadable(#[source] io::Error),
    /// The archive is neither an OCI image layout nor a `docker save` archive.
    #[error("neither an OCI image layout (index.json, oci-layout) nor a docker save archive (manifest.json)")]
    UnknownFormat,
    /// The archive's list of images (`index.json`, `manifest.json`) is empty.
    #[error("{file} names no image")]
    NoImages {
        /// The list's file.
        file: &'static str,
    },
    /// An image of an OCI layout has no name in its annotations, and none was given.
    #[error("no image name in the archive ({OCI_REF_NAME} is {found:?}): give one with --resolve-ref")]
    Nameless {
        /// The annotation's value, or `absent`.
        found: String,
    },
    /// The tag an OCI layout's annotation gives is not a tag.
    #[error("{OCI_REF_NAME} {tag:?}: {source}")]
    BadTag {
        /// The annotation's value.
        tag: String,
        /// Why it is not a tag.
        #[source]
        source: ReferenceError,
    },
    /// An image of a `docker save` archive has no `RepoTags`, and no name was given.
    #[error("no RepoTags in manifest.json: give a name with --resolve-ref")]
    NoRepoTags,
    /// An object of the image (in the archive, or pulled) could not be read, parsed or stored.
    #[error("{object}: {fault}")]
    Object {
        /// Which object.
        object: Object,
        /// What went wrong with it (boxed: it may be large, and errors are rare).
        #[source]
        fault: Box<Fault>,
    },
    /// An index in an archive holds no manifest of the platforms asked for.
    #[error("index {index} has no platform manifest in the archive for {platform:?}")]
    NoPlatformInArchive {
        /// The index.
        index: Digest,
        /// The platforms asked for.
        platform: PlatformFilter,
    },
    /// A pulled index lists no manifest of the platforms asked for.
    #[error("the index has no manifest for the platform {platform:?}")]
    NoPlatform {
        /// The platforms asked for.
        platform: PlatformFilter,
    },
    /// A blob of an archive the cache cannot keep (not writable now, no room).
    #[error("blob {digest} cannot be cached: {reason}")]
    CannotCache {
        /// The blob.
        digest: Digest,
        /// Why.
        reason: PassReason,
    },
    /// A blob of an archive larger than the room the cache can make.
    #[error("blob {digest} ({size} bytes) does not fit in the cache")]
    DoesNotFit {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob of an archive whose claims kept ending in a client's failed fetch.
    #[error("blob {digest}: gave up after three attempts")]
    GaveUp {
        /// The blob.
        digest: Digest,
    },
    /// A pulled blob that reached its end but was not kept.
    #[error("blob {digest} was served but not cached (no room in the cache)")]
    NotKept {
        /// The blob.
        digest: Digest,
    },
    /// The registry's allow or deny list refuses the image: it is neither fetched nor loaded.
    #[error("{image} is refused by the registry's {refusal} (registries[].allow, registries[].deny)")]
    Refused {
        /// `ns/repo:tag`.
        image: String,
        /// The rule.
        refusal: Refusal,
    },
    /// The pull of an image's manifest through the front door failed.
    #[error(transparent)]
    Pull(#[from] MirrorError),
    /// The manifest written for a `docker save` image could not be encoded.
    #[error("writing the image's manifest: {0}")]
    WriteManifest(#[source] serde_json::Error),
    /// A background task (reading the archive) ended without an answer.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl PreloadError {
    /// `object` failed with `fault`.
    pub(crate) fn object(object: Object, fault: impl Into<Fault>) -> PreloadError {
        PreloadError::Object { object, fault: Box::new(fault.into()) }
    }
}

/// An object of an image, as an error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A blob (a config or a layer), by digest.
    Blob(Digest),
    /// A manifest, by digest.
    Manifest(Digest),
    /// An index, by digest.
    Index(Digest),
    /// A file of the archive, by name (`index.json`, `manifest.json`).
    File(&'static str),
    /// The config file of a `docker save` image.
    Config(String),
    /// A layer file of a `docker save` image.
    Layer(String),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Blob(digest) => write!(f, "blob {digest}"),
            Object::Manifest(digest) => write!(f, "manifest {digest}"),
            Object::Index(digest) => write!(f, "index {digest}"),
            Object::File(name) => f.write_str(name),
            Object::Config(file) => write!(f, "config {file}"),
            Object::Layer(file) => write!(f, "layer {file}"),
        }
    }
}

/// What went wrong with an object.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// It could not be read (from the archive, or from the front door).
    #[error(transparent)]
    Read(#[from] io::Error),
    /// Its bytes end before its size.
    #[error("the archive entry ends early")]
    EndsEarly,
    /// Reading its bytes from the archive failed while they were being stored.
    #[error("reading the archive: {0}")]
    ReadArchive(#[source] io::Error),
    /// It is not the JSON it should be.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A digest it names is not a digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Its bytes do not match its digest.
    #[error("content does not match its digest (it hashes to {actual})")]
    Mismatch {
        /// The digest of the bytes.
        actual: Digest,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache actor refused it.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The cache actor could not be asked.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The pull through the front door failed.
    #[error(transparent)]
    Pull(#[from] MirrorError),
    /// A background task ended without an answer.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts a load's report gives: as they were when preload's errors were strings.
    #[test]
    fn each_error_names_what_failed_as_before() {
        let d = Digest::sha256_of(b"x");
        let platform = PlatformFilter { os: Some("linux".into()), arch: None };
        let bad_tag = "a+b".parse::<crate::reference::Tag>().expect_err("not a tag");
        let bad_ref = BadImageRef { text: "UPPER".into(), source: bad_tag.clone() };
        let cases: Vec<(PreloadError, String)> = vec![
            (bad_ref.clone().into(), format!("\"UPPER\" is not an image reference: {bad_tag}")),
            (
                PreloadError::ResolveRef(bad_ref),
                format!("--resolve-ref: \"UPPER\" is not an image reference: {bad_tag}"),
            ),
            (
                PreloadError::Unreadable(io::Error::new(io::ErrorKind::InvalidData, "not a tar archive")),
                "cannot read the archive: not a tar archive".into(),
            ),
            (PreloadError::NoImages { file: "index.json" }, "index.json names no image".into()),
            (
                PreloadError::Nameless { found: "absent".into() },
                format!("no image name in the archive ({OCI_REF_NAME} is \"absent\"): give one with --resolve-ref"),
            ),
            (PreloadError::NoRepoTags, "no RepoTags in manifest.json: give a name with --resolve-ref".into()),
            (
                PreloadError::object(Object::Blob(d.clone()), Fault::EndsEarly),
                format!("blob {d}: the archive entry ends early"),
            ),
            (
                PreloadError::object(Object::Blob(d.clone()), Fault::Mismatch { actual: d.clone() }),
                format!("blob {d}: content does not match its digest (it hashes to {d})"),
            ),
            (PreloadError::object(Object::Layer("l.tar".into()), io::Error::other("gone")), "layer l.tar: gone".into()),
            (PreloadError::object(Object::File("index.json"), io::Error::other("gone")), "index.json: gone".into()),
            (
                PreloadError::NoPlatformInArchive { index: d.clone(), platform: platform.clone() },
                format!("index {d} has no platform manifest in the archive for {platform:?}"),
            ),
            (
                PreloadError::DoesNotFit { digest: d.clone(), size: 7 },
                format!("blob {d} (7 bytes) does not fit in the cache"),
            ),
            (PreloadError::GaveUp { digest: d.clone() }, format!("blob {d}: gave up after three attempts")),
            (
                PreloadError::NotKept { digest: d.clone() },
                format!("blob {d} was served but not cached (no room in the cache)"),
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want, "{error:?}");
        }
    }
}

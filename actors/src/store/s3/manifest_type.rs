//! A manifest's `.type` object in the bucket, checked against the manifest's content wherever it is read (the scan,
//! a lookup): one that does not fit the content, or is no manifest type, is copied to `quarantine/` and replaced by
//! the content's type; a missing one is written. Every replica judges the same content-addressed bytes the same way,
//! so repairs by two replicas at once agree (a bucket has no compare-and-move: each may keep a copy of the wrong one
//! in `quarantine/`). A manifest of no known type with no valid `.type` is damaged.

use object_store::{ObjectStoreExt, PutPayload};

use super::{s3_error, S3Storage};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::Storage;
use crate::store::mediatype::{self, ManifestType, Verdict};
use crate::store::records::StoredObject;

/// The longest `.type` object read: every manifest type's name is far shorter.
const MAX_TYPE_LEN: u64 = 255;

impl S3Storage {
    /// The `.type` object of `digest` as kept (`None`: there is none); one too long to be a type is read as such.
    async fn kept_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let key = self.keys.manifest_type(digest);
        let got = match self.bucket.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_error("get", &key, e)),
        };
        if got.meta.size > MAX_TYPE_LEN {
            return Ok(Some(format!("({} bytes: too long for a media type)", got.meta.size)));
        }
        let bytes = got.bytes().await.map_err(|e| s3_error("get", &key, e))?;
        Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()))
    }

    /// The type of the manifest `digest` whose verified bytes are `bytes`, its `.type` checked and repaired (see the
    /// module documentation). `None`: damaged, and moved aside.
    pub(super) async fn checked_type(&self, digest: &Digest, bytes: &[u8]) -> Result<Option<ManifestType>, StoreError> {
        let kept = self.kept_type(digest).await?;
        let key = self.keys.manifest_type(digest);
        let content = match mediatype::check(kept.as_deref(), bytes) {
            Verdict::Agrees(t) => return Ok(Some(t)),
            Verdict::Missing(t) => t,
            Verdict::Wrong { kept, content } => {
                let aside = self.keys.quarantine(&key);
                match self.bucket.copy(&key, &aside).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(s3_error("copy", &key, e)),
                }
                tracing::warn!(manifest = %digest, kept = %kept, content = %content, moved_to = %aside,
                    "quarantined in the bucket: a media type that does not fit the manifest's content");
                content
            }
            Verdict::Unknown => {
                let why = "the manifest fits no known manifest type, and its media type object names none";
                self.quarantine(&StoredObject::Manifest(digest.clone()), None, why).await?;
                if kept.is_some() {
                    let aside = self.keys.quarantine(&key);
                    if self.bucket.copy(&key, &aside).await.is_ok() {
                        let _ = self.bucket.delete(&key).await;
                    }
                }
                return Ok(None);
            }
        };
        self.bucket
            .put(&key, PutPayload::from(content.as_str().to_string()))
            .await
            .map_err(|e| s3_error("put", &key, e))?;
        Ok(Some(content))
    }
}

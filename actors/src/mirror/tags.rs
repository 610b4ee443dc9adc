//! Tag lists (`GET /v2/<name>/tags/list`): passed through one request at a time per page (the image actor coalesces
//! and reuses pages for the tag TTL), and answered from the tags the cache knows when the upstream cannot be asked.

use super::Mirror;
use crate::error::MirrorError;
use crate::fetch::local_tags;
use crate::messages::{GetTags, TagPage};
use crate::reference::ImageKey;

impl Mirror {
    /// One page of `image`'s tags: at most `n`, after `last`.
    pub async fn tags(&self, image: &ImageKey, n: Option<u32>, last: Option<String>) -> Result<TagPage, MirrorError> {
        self.admit(image)?;
        self.counted(self.admitted_tags(image, n, last).await)
    }

    async fn admitted_tags(
        &self,
        image: &ImageKey,
        n: Option<u32>,
        last: Option<String>,
    ) -> Result<TagPage, MirrorError> {
        let local = || local_tags(self.index(), image, n, last.as_deref());
        if self.inner.air_gapped {
            return Ok(local());
        }
        match self.inner.admission.upstream(image.ns()).await {
            Ok(upstream) if upstream.breaker.is_open() => return Ok(local()),
            Ok(_) => {}
            // A namespace that may not be dialled still lists what it cached, if anything.
            Err(e) => {
                let page = local();
                return if page.tags.is_empty() { Err(e) } else { Ok(page) };
            }
        }
        self.ask(image, GetTags { n, last: last.clone() }).await?
    }
}

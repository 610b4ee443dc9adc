//! Tag lists: one page from the upstream (`GET /v2/<repo>/tags/list?n=&last=`), or, when the upstream cannot be
//! asked (unreachable, failing, breaker open, air-gapped), the tags the cache holds records for, paged the same way.

use serde::Deserialize;

use super::context::{collect, FetchContext};
use crate::error::MirrorError;
use crate::messages::TagPage;
use crate::reference::ImageKey;
use crate::store::Index;

/// Largest tag list page accepted from an upstream.
const MAX_TAGS_BODY: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

fn query(n: Option<u32>, last: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(n) = n {
        parts.push(format!("n={n}"));
    }
    if let Some(last) = last {
        parts.push(format!("last={last}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The page of tags the cache knows for `image`: sorted, after `last`, at most `n`.
pub(crate) fn local_tags(index: &Index, image: &ImageKey, n: Option<u32>, last: Option<&str>) -> TagPage {
    let after: Vec<String> = index.tags(image).into_iter().filter(|t| last.is_none_or(|l| t.as_str() > l)).collect();
    let take = n.map_or(after.len(), |n| n as usize);
    TagPage { more: after.len() > take, tags: after.into_iter().take(take).collect(), local: true }
}

/// One page from the upstream, or the local one when the upstream cannot be asked. A repository the upstream does
/// not know is `NameUnknown`, unless the cache has tags of it.
pub(crate) async fn fetch_tags(
    cx: &FetchContext,
    n: Option<u32>,
    last: Option<String>,
) -> Result<TagPage, MirrorError> {
    let path = format!("/v2/{}/tags/list{}", cx.image.repo(), query(n, last.as_deref()));
    let local = || local_tags(cx.store.index(), &cx.image, n, last.as_deref());
    let resp = match cx.request(path, false, Some("application/json"), None).await {
        Ok(resp) => resp,
        Err(MirrorError::Upstream(e)) => {
            tracing::info!(error = %e, "tag list of {} served from the cache", cx.image);
            return Ok(local());
        }
        Err(e) => return Err(e),
    };
    if resp.status == 404 {
        let page = local();
        return if page.tags.is_empty() && last.is_none() {
            Err(MirrorError::NameUnknown(cx.image.to_string()))
        } else {
            Ok(page)
        };
    }
    let more = resp.link.as_deref().is_some_and(|l| l.contains("rel=\"next\"") || l.contains("rel=next"));
    let body = match collect(&cx.name(), resp.body, MAX_TAGS_BODY).await {
        Ok(body) => body,
        Err(e) => {
            tracing::info!(error = %e, "tag list of {} served from the cache", cx.image);
            return Ok(local());
        }
    };
    match serde_json::from_slice::<TagList>(&body) {
        Ok(list) => {
            // The spec wants lexical order, and some registries list in storage order or ignore `n` and `last`
            // (distribution 2.8): page what came, which changes nothing when the upstream did it already.
            let mut tags = list.tags.unwrap_or_default();
            tags.sort();
            tags.retain(|t| last.as_deref().is_none_or(|l| t.as_str() > l));
            let take = n.map_or(tags.len(), |n| n as usize);
            let more = more || tags.len() > take;
            tags.truncate(take);
            Ok(TagPage { tags, more, local: false })
        }
        Err(e) => {
            tracing::warn!(error = %e, "the upstream's tag list of {} is not JSON; serving the cached tags", cx.image);
            Ok(local())
        }
    }
}

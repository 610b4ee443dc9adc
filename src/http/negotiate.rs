//! Request headers that shape a response: `Accept` for manifests, `Range` and `If-Range` for blobs, and
//! `If-None-Match` for both.
//!
//! Manifests and blobs are content-addressed: their entity tag is their digest, quoted (`"sha256:…"`), a strong
//! validator that never changes for the same URL of a blob or of a manifest by digest (a tag's changes with the
//! manifest it names). Blobs carry no `Last-Modified`, so an `If-Range` holding a date never matches: the whole blob
//! is sent.

use actix_web::http::header::{HeaderMap, ACCEPT, IF_NONE_MATCH, IF_RANGE, RANGE};
use actors::digest::Digest;
pub use actors::RangeSpec;

/// Whether the request's `Accept` headers admit `media_type`. Several `Accept` lines count together (skopeo sends
/// six); parameters such as `q=` are ignored; `*/*` and `type/*` match; no `Accept` at all admits anything.
pub fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    let (main, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let item = item.split(';').next().unwrap_or("").trim();
            if item.is_empty() {
                continue;
            }
            any = true;
            if item == "*/*" || item.eq_ignore_ascii_case(media_type) {
                return true;
            }
            if let Some(prefix) = item.strip_suffix("/*") {
                if prefix.eq_ignore_ascii_case(main) {
                    return true;
                }
            }
        }
    }
    !any
}

/// A single byte range resolved against a size: bytes `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// What the `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole body with 200 (also for multi-range and malformed headers, which RFC 9110
    /// lets a server ignore).
    Full,
    /// One satisfiable range: 206.
    Partial(ByteRange),
    /// A range outside the body: 416.
    Unsatisfiable,
}

/// The entity tag of a manifest or blob: its digest, quoted.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// One entity tag of a header value, and the rest of the value after it: `W/"x"` or `"x"`, with surrounding blanks.
/// `None` when the value does not start with one.
fn entity_tag(value: &str) -> Option<(EntityTag<'_>, &str)> {
    let value = value.trim_start();
    let (weak, quoted) = match value.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let inner = quoted.strip_prefix('"')?;
    let end = inner.find('"')?;
    Some((EntityTag { weak, opaque: &inner[..end] }, &inner[end + 1..]))
}

/// An entity tag as a request names it.
struct EntityTag<'a> {
    weak: bool,
    /// Between the quotes.
    opaque: &'a str,
}

/// Whether `If-None-Match` names the representation whose entity tag is `ours` (weak comparison, `*` matches any):
/// then a GET or HEAD is answered 304. Several header lines count together; a malformed list matches nothing after
/// the point where it stops parsing. A bare digest without quotes is taken as a tag too, as the Go registry does.
pub fn not_modified(headers: &HeaderMap, ours: &str) -> bool {
    let opaque = ours.trim_matches('"');
    headers.get_all(IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).any(|value| {
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                return false;
            }
            if let Some(after) = rest.strip_prefix('*') {
                if after.trim_start().is_empty() || after.trim_start().starts_with(',') {
                    return true;
                }
                return false;
            }
            match entity_tag(rest) {
                Some((tag, after)) => {
                    if tag.opaque == opaque {
                        return true;
                    }
                    rest = after;
                }
                None => {
                    let (item, after) = rest.split_once(',').unwrap_or((rest, ""));
                    if item.trim() == opaque {
                        return true;
                    }
                    rest = after;
                }
            }
        }
    })
}

/// Whether a request's `If-Range` (if any) lets its `Range` be served: absent, or exactly the strong entity tag
/// `ours`. A weak tag, another tag, a date (blobs carry no `Last-Modified`) or anything else does not: the whole body
/// is sent with 200 (RFC 9110, section 13.1.5).
fn if_range_holds(headers: &HeaderMap, ours: &str) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    match entity_tag(value) {
        Some((tag, rest)) => !tag.weak && rest.trim().is_empty() && ours.trim_matches('"') == tag.opaque,
        None => false,
    }
}

/// Resolve the request's `Range` header against a body of `size` bytes whose entity tag is `etag`: with an
/// `If-Range` that does not hold, the whole body.
pub fn range(headers: &HeaderMap, size: u64, etag: &str) -> RangeRequest {
    match range_spec(headers, etag) {
        None => RangeRequest::Full,
        Some(spec) => resolve(spec, size),
    }
}

/// The request's single `Range` as stated, before a size resolves it; `None` when the whole body is to be sent (no
/// `Range`, an `If-Range` that does not hold, several ranges, or one that does not parse).
pub fn range_spec(headers: &HeaderMap, etag: &str) -> Option<RangeSpec> {
    if !if_range_holds(headers, etag) {
        return None;
    }
    let value = headers.get(RANGE).and_then(|v| v.to_str().ok())?;
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => last.parse::<u64>().ok().map(RangeSpec::Suffix),
        // bytes=N-: from N to the end.
        (false, true) => first.parse::<u64>().ok().map(|first| RangeSpec::From { first, last: None }),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(first), Ok(last)) if last >= first => Some(RangeSpec::From { first, last: Some(last) }),
            _ => None,
        },
        (true, true) => None,
    }
}

/// A stated range against a body of `size` bytes.
pub fn resolve(spec: RangeSpec, size: u64) -> RangeRequest {
    match spec.span(size) {
        Some((start, end)) => RangeRequest::Partial(ByteRange { start, end }),
        None => RangeRequest::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

    /// Accept header lines, the manifest's media type, whether it is accepted.
    type AcceptCase = (&'static [(&'static str, &'static str)], &'static str, bool);

    #[test]
    fn accept_cases() {
        let cases: &[AcceptCase] = &[
            (&[], OCI_INDEX, true),
            (&[("accept", "*/*")], OCI_INDEX, true),
            (&[("accept", DOCKER_V2)], OCI_INDEX, false),
            (&[("accept", DOCKER_V2), ("accept", OCI_INDEX)], OCI_INDEX, true),
            (&[("accept", "application/vnd.docker.distribution.manifest.v2+json, */*;q=0.5")], OCI_INDEX, true),
            (&[("accept", "application/*")], OCI_INDEX, true),
            (&[("accept", "text/*")], OCI_INDEX, false),
            (&[("accept", "application/vnd.oci.image.index.v1+json; q=0.9")], OCI_INDEX, true),
        ];
        for (hs, mt, want) in cases {
            assert_eq!(accepts(&headers(hs), mt), *want, "accept case {hs:?} for {mt}");
        }
    }

    #[test]
    fn range_cases() {
        use RangeRequest::*;
        let r = |s, e| Partial(ByteRange { start: s, end: e });
        let cases: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-99", 1000, r(0, 100)),
            ("bytes=100-", 1000, r(100, 1000)),
            ("bytes=-10", 1000, r(990, 1000)),
            ("bytes=-5000", 1000, r(0, 1000)),
            ("bytes=990-5000", 1000, r(990, 1000)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=5-1", 1000, Full),
            ("bytes=0-1,5-6", 1000, Full),
            ("items=0-1", 1000, Full),
            ("bytes=x-1", 1000, Full),
        ];
        for (value, size, want) in cases {
            let mut map = HeaderMap::new();
            map.insert(RANGE, HeaderValue::from_str(value).expect("valid header"));
            assert_eq!(range(&map, *size, OURS), *want, "range case {value} of {size}");
        }
    }

    const OURS: &str = "\"sha256:0123\"";

    #[test]
    fn a_range_is_served_only_while_if_range_names_our_strong_tag() {
        use RangeRequest::*;
        let part = Partial(ByteRange { start: 0, end: 10 });
        let cases: &[(&str, RangeRequest)] = &[
            ("\"sha256:0123\"", part),
            (" \"sha256:0123\" ", part),
            ("W/\"sha256:0123\"", Full),
            ("\"sha256:4567\"", Full),
            ("\"sha256:0123\", \"x\"", Full),
            ("sha256:0123", Full),
            ("\"sha256:0123", Full),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Full),
            ("", Full),
        ];
        for (value, want) in cases {
            let mut map = HeaderMap::new();
            map.insert(RANGE, HeaderValue::from_static("bytes=0-9"));
            map.insert(IF_RANGE, HeaderValue::from_str(value).expect("valid header"));
            assert_eq!(range(&map, 1000, OURS), *want, "If-Range: {value}");
        }
        let mut map = HeaderMap::new();
        map.insert(IF_RANGE, HeaderValue::from_static("\"sha256:4567\""));
        map.insert(RANGE, HeaderValue::from_static("bytes=5000-"));
        assert_eq!(range(&map, 1000, OURS), Full, "a range ignored is not unsatisfiable either");
    }

    #[test]
    fn if_none_match_names_our_tag_or_any() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["\"sha256:0123\""], true),
            (&["W/\"sha256:0123\""], true),
            (&["\"a\", \"sha256:0123\""], true),
            (&["\"a\"", "\"sha256:0123\""], true),
            (&["*"], true),
            (&["sha256:0123"], true),
            (&["\"sha256:4567\""], false),
            (&["\"sha256:01\""], false),
            (&["\"a\", *x"], false),
            (&["\"sha256:0123,\""], false),
        ];
        for (values, want) in cases {
            let mut map = HeaderMap::new();
            for v in *values {
                map.append(IF_NONE_MATCH, HeaderValue::from_str(v).expect("valid header"));
            }
            assert_eq!(not_modified(&map, OURS), *want, "If-None-Match: {values:?}");
        }
    }

    #[test]
    fn the_tag_is_the_quoted_digest() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().expect("digest");
        assert_eq!(etag(&digest), format!("\"sha256:{}\"", "ab".repeat(32)));
    }
}

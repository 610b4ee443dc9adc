//! Request headers that shape a response: `Accept` for manifests and `Range` for blobs.

use actix_web::http::header::{HeaderMap, ACCEPT, RANGE};

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

/// Resolve the request's `Range` header against a body of `size` bytes.
pub fn range(headers: &HeaderMap, size: u64) -> RangeRequest {
    let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size)),
            Err(_) => None,
        },
        // bytes=N-: from N to the end.
        (false, true) => first.parse::<u64>().ok().map(|s| (s, size)),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeRequest::Full,
        Some((start, _)) if start >= size => RangeRequest::Unsatisfiable,
        Some((start, end)) => RangeRequest::Partial(ByteRange { start, end }),
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
            assert_eq!(range(&map, *size), *want, "range case {value} of {size}");
        }
    }
}

//! The request-target parser: turns a raw `/v2/...` path, its query string and
//! the `X-Registry` header into a [`Route`], choosing the upstream namespace
//! and validating names, tags and digests. Knows nothing about actix.

use std::str::FromStr;

use actors::digest::Digest;
use actors::reference::{ImageKey, Namespace, Reference, RepoName};

/// What a request under `/v2` asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Route {
    /// `GET /v2/` (or `/v2`): the API version check.
    Base,
    /// A manifest or blob of an image.
    Pull(PullTarget),
    /// `GET /v2/<name>/tags/list`.
    TagsList(TagsTarget),
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers(ReferrersTarget),
    /// Anything under `/v2/<name>/blobs/uploads`: pushing is not supported.
    Upload,
}

/// A manifest or blob of a particular image.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PullTarget {
    /// The image (upstream namespace and repository).
    pub image: ImageKey,
    /// What is pulled from it.
    pub object: Object,
}

/// A tag-list request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TagsTarget {
    /// The image.
    pub image: ImageKey,
    /// The repository name as the request wrote it (with a namespace prefix when it had one): the list's `name`.
    pub name: String,
    /// `n`: at most this many tags.
    pub n: Option<u32>,
    /// `last`: tags after this one.
    pub last: Option<String>,
}

/// A referrers request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReferrersTarget {
    /// The image.
    pub image: ImageKey,
    /// The subject whose referrers are listed.
    pub digest: Digest,
    /// `artifactType`: list only these.
    pub artifact_type: Option<String>,
}

/// The pulled object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Object {
    /// `/manifests/<reference>`.
    Manifest(Reference),
    /// `/blobs/<digest>`.
    Blob(Digest),
}

/// Why a request target was rejected; each string is a human message naming
/// the offending value.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TargetError {
    /// Unsafe path, bad repository name or bad namespace (`NAME_INVALID`).
    #[error("{0}")]
    NameInvalid(String),
    /// No upstream namespace could be determined (`NAME_UNKNOWN`).
    #[error("{0}")]
    NameUnknown(String),
    /// A malformed or unsupported digest (`DIGEST_INVALID`).
    #[error("{0}")]
    DigestInvalid(String),
    /// A malformed tag (`TAG_INVALID`).
    #[error("{0}")]
    TagInvalid(String),
    /// No such endpoint.
    #[error("{0}")]
    NotFound(String),
    /// A tag list's `n` that is not a number (`PAGINATION_NUMBER_INVALID`).
    #[error("{0}")]
    PaginationInvalid(String),
}

/// An endpoint recognised from the path's tail, before any validation.
enum Endpoint<'a> {
    Manifest(&'a str),
    Blob(&'a str),
    TagsList,
    Referrers(&'a str),
}

/// Parses a request target.
///
/// `raw_path` is the path exactly as received (not percent-decoded); `query`
/// is the raw query string without `?`. The upstream namespace comes from
/// `x_registry`, else the `ns` query parameter, else a host-like first name
/// component, else `default_ns`.
pub fn parse_route(
    raw_path: &str,
    query: Option<&str>,
    x_registry: Option<&str>,
    default_ns: Option<&Namespace>,
) -> Result<Route, TargetError> {
    let (segments, trailing_slash) = guarded_segments(raw_path)?;
    let rest = match segments.split_first() {
        Some((&"v2", rest)) => rest,
        _ => return Err(not_found(raw_path)),
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if is_upload(rest) {
        return Ok(Route::Upload);
    }
    if trailing_slash || rest.len() < 3 {
        return Err(not_found(raw_path));
    }
    let (name, tail) = rest.split_at(rest.len() - 2);
    let endpoint = match (tail[0], tail[1]) {
        ("manifests", reference) => Endpoint::Manifest(reference),
        ("blobs", digest) => Endpoint::Blob(digest),
        ("tags", "list") => Endpoint::TagsList,
        ("referrers", digest) => Endpoint::Referrers(digest),
        _ => return Err(not_found(raw_path)),
    };
    let image = image_key(name, query, x_registry, default_ns)?;
    Ok(match endpoint {
        Endpoint::Manifest(reference) => {
            Route::Pull(PullTarget { image, object: Object::Manifest(parse_reference(reference)?) })
        }
        Endpoint::Blob(digest) => Route::Pull(PullTarget { image, object: Object::Blob(parse_digest(digest)?) }),
        Endpoint::TagsList => {
            let n = match query_param(query, "n")? {
                None => None,
                Some(n) => Some(
                    n.parse::<u32>()
                        .map_err(|_| TargetError::PaginationInvalid(format!("n={n:?} is not a number of tags")))?,
                ),
            };
            Route::TagsList(TagsTarget { image, name: name.join("/"), n, last: query_param(query, "last")? })
        }
        Endpoint::Referrers(digest) => Route::Referrers(ReferrersTarget {
            image,
            digest: parse_digest(digest)?,
            artifact_type: query_param(query, "artifactType")?,
        }),
    })
}

fn not_found(raw_path: &str) -> TargetError {
    TargetError::NotFound(format!("no endpoint at {raw_path:?}"))
}

/// The path-traversal guard: splits the path into segments, rejecting `%`,
/// `\`, empty, `.` and `..` segments. A single trailing `/` is allowed and
/// reported separately.
fn guarded_segments(raw_path: &str) -> Result<(Vec<&str>, bool), TargetError> {
    if let Some(c) = raw_path.chars().find(|c| matches!(c, '%' | '\\')) {
        return Err(TargetError::NameInvalid(format!("request path {raw_path:?} contains {c:?}")));
    }
    let relative = match raw_path.strip_prefix('/') {
        Some(r) if !r.is_empty() => r,
        _ => return Err(not_found(raw_path)),
    };
    let mut segments: Vec<&str> = relative.split('/').collect();
    let trailing_slash = segments.len() > 1 && segments.last() == Some(&"");
    if trailing_slash {
        segments.pop();
    }
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err(TargetError::NameInvalid(format!("request path {raw_path:?} has a forbidden segment {bad:?}")));
    }
    Ok((segments, trailing_slash))
}

/// `<name>/blobs/uploads[/]` or `<name>/blobs/uploads/<session>`.
fn is_upload(rest: &[&str]) -> bool {
    let n = rest.len();
    (n >= 3 && rest[n - 2..] == ["blobs", "uploads"]) || (n >= 4 && rest[n - 3..n - 1] == ["blobs", "uploads"])
}

/// Chooses the namespace and validates the repository.
fn image_key(
    name: &[&str],
    query: Option<&str>,
    x_registry: Option<&str>,
    default_ns: Option<&Namespace>,
) -> Result<ImageKey, TargetError> {
    let explicit = match x_registry {
        Some(header) => Some(header.to_owned()),
        None => query_param(query, "ns")?,
    };
    let (ns, repo) = match (explicit, name) {
        (Some(value), _) => (parse_namespace(&value)?, name),
        (None, [first, repo @ ..]) if !repo.is_empty() && Namespace::looks_like_host(first) => {
            (parse_namespace(first)?, repo)
        }
        (None, _) => match default_ns {
            Some(ns) => (ns.clone(), name),
            None => {
                return Err(TargetError::NameUnknown(format!(
                    "no upstream registry for {:?}: send X-Registry, ?ns= or a host as the first name component",
                    name.join("/")
                )))
            }
        },
    };
    let repo = RepoName::from_str(&repo.join("/")).map_err(|e| TargetError::NameInvalid(e.to_string()))?;
    Ok(ImageKey::new(ns, repo))
}

fn parse_namespace(value: &str) -> Result<Namespace, TargetError> {
    Namespace::from_str(value).map_err(|e| TargetError::NameInvalid(format!("namespace {value:?}: {e}")))
}

fn parse_reference(value: &str) -> Result<Reference, TargetError> {
    Reference::from_str(value).map_err(|e| {
        if value.contains(':') {
            TargetError::DigestInvalid(e.to_string())
        } else {
            TargetError::TagInvalid(e.to_string())
        }
    })
}

fn parse_digest(value: &str) -> Result<Digest, TargetError> {
    Digest::from_str(value).map_err(|e| TargetError::DigestInvalid(e.to_string()))
}

/// The percent-decoded value of the first `key` parameter in `query`.
fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, TargetError> {
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k).as_deref() != Some(key) {
            continue;
        }
        return percent_decode(v)
            .map(Some)
            .ok_or_else(|| TargetError::NameInvalid(format!("query parameter {key}={v:?} is badly encoded")));
    }
    Ok(None)
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = char::from(hex[0]).to_digit(16)?;
            let lo = char::from(hex[1]).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (path, query, X-Registry, default namespace, expected description).
    type Case = (String, Option<&'static str>, Option<&'static str>, Option<&'static str>, String);

    /// A compact rendering of an outcome for table comparison.
    fn describe(r: &Result<Route, TargetError>) -> String {
        match r {
            Ok(Route::Base) => "base".into(),
            Ok(Route::Upload) => "upload".into(),
            Ok(Route::TagsList(t)) => format!("tags {}", t.image),
            Ok(Route::Referrers(r)) => format!("referrers {}", r.image),
            Ok(Route::Pull(PullTarget { image, object })) => match object {
                Object::Manifest(r) => format!("manifest {image} {r}"),
                Object::Blob(d) => format!("blob {image} {d}"),
            },
            Err(e) => {
                let debug = format!("{e:?}");
                debug.split('(').next().unwrap_or_default().to_owned()
            }
        }
    }

    #[test]
    fn route_table() {
        let digest = format!("sha256:{HEX}");
        let upper = format!("sha256:{}", HEX.to_uppercase());
        let md5 = "md5:d41d8cd98f00b204e9800998ecf8427e";
        let p = |s: &str| s.replace("{d}", &digest);
        // (path, query, X-Registry, default ns, expected)
        let cases: Vec<Case> = vec![
            // Base.
            (p("/v2/"), None, None, None, "base".into()),
            (p("/v2"), None, None, None, "base".into()),
            // containerd: repository in the path, namespace in ?ns=.
            (
                p("/v2/library/hello/manifests/latest"),
                Some("ns=docker.io"),
                None,
                None,
                "manifest docker.io/library/hello latest".into(),
            ),
            (
                p("/v2/hello/manifests/latest"),
                Some("ns=registry-1.docker.io"),
                None,
                None,
                "manifest docker.io/library/hello latest".into(),
            ),
            (
                p("/v2/foo/manifests/v1"),
                Some("x=1&ns=127.0.0.1%3A5000"),
                None,
                None,
                "manifest 127.0.0.1:5000/foo v1".into(),
            ),
            (p("/v2/foo/manifests/v1"), Some("ns=127.0.0.1:5000"), None, None, "manifest 127.0.0.1:5000/foo v1".into()),
            // With ns given, a host-like first component stays in the name.
            (
                p("/v2/docker.io/foo/manifests/v1"),
                Some("ns=quay.io"),
                None,
                None,
                "manifest quay.io/docker.io/foo v1".into(),
            ),
            (p("/v2/localhost:5000/foo/manifests/v1"), Some("ns=quay.io"), None, None, "NameInvalid".into()),
            (p("/v2/foo/manifests/v1"), Some("ns="), None, None, "NameInvalid".into()),
            (p("/v2/foo/manifests/v1"), Some("ns=%zz"), None, None, "NameInvalid".into()),
            (p("/v2/foo/manifests/v1"), Some("ns=host:99999"), None, None, "NameInvalid".into()),
            // skopeo: host as the first path component.
            (
                p("/v2/docker.io/library/hello/manifests/latest"),
                None,
                None,
                None,
                "manifest docker.io/library/hello latest".into(),
            ),
            (
                p("/v2/docker.io/library/alpine/manifests/3.20"),
                None,
                None,
                None,
                "manifest docker.io/library/alpine 3.20".into(),
            ),
            (p("/v2/docker.io/alpine/manifests/3"), None, None, None, "manifest docker.io/library/alpine 3".into()),
            (
                p("/v2/index.docker.io/alpine/manifests/3"),
                None,
                None,
                None,
                "manifest docker.io/library/alpine 3".into(),
            ),
            (
                p("/v2/registry.k8s.io/pause/manifests/3.9"),
                None,
                None,
                None,
                "manifest registry.k8s.io/pause 3.9".into(),
            ),
            (p("/v2/localhost:5000/foo/blobs/{d}"), None, None, None, p("blob localhost:5000/foo {d}")),
            (p("/v2/localhost/foo/manifests/{d}"), None, None, None, p("manifest localhost/foo {d}")),
            (p("/v2/host:99999/foo/manifests/v1"), None, None, None, "NameInvalid".into()),
            (p("/v2/host:/foo/manifests/v1"), None, None, None, "NameInvalid".into()),
            // X-Registry beats ?ns= and the path.
            (p("/v2/foo/manifests/v1"), Some("ns=docker.io"), Some("quay.io"), None, "manifest quay.io/foo v1".into()),
            (p("/v2/foo/manifests/v1"), None, Some("bad_host"), None, "NameInvalid".into()),
            // Default namespace.
            (p("/v2/foo/bar/manifests/v1"), None, None, Some("ghcr.io"), "manifest ghcr.io/foo/bar v1".into()),
            (
                p("/v2/alpine/manifests/v1"),
                None,
                None,
                Some("docker.io"),
                "manifest docker.io/library/alpine v1".into(),
            ),
            (p("/v2/quay.io/foo/manifests/v1"), None, None, Some("ghcr.io"), "manifest quay.io/foo v1".into()),
            (p("/v2/foo/bar/manifests/v1"), None, None, None, "NameUnknown".into()),
            // Traversal guard.
            (p("/v2/%2e%2e/foo/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/a%2Fb/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/a/../b/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/a/./b/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/a//b/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/a\\b/manifests/v1"), Some("ns=docker.io"), None, None, "NameInvalid".into()),
            (p("/v2/../etc/passwd"), None, None, None, "NameInvalid".into()),
            (p("//v2/a/manifests/v1"), None, None, None, "NameInvalid".into()),
            // Uploads.
            (p("/v2/foo/blobs/uploads/"), None, None, None, "upload".into()),
            (p("/v2/foo/blobs/uploads"), None, None, None, "upload".into()),
            (p("/v2/a/b/blobs/uploads/0f2c-11aa"), None, None, None, "upload".into()),
            // Tags and referrers.
            (p("/v2/docker.io/library/alpine/tags/list"), None, None, None, "tags docker.io/library/alpine".into()),
            (p("/v2/alpine/tags/list"), Some("ns=docker.io"), None, None, "tags docker.io/library/alpine".into()),
            (p("/v2/quay.io/a/referrers/{d}"), None, None, None, "referrers quay.io/a".into()),
            (p("/v2/quay.io/a/referrers/sha256:abc"), None, None, None, "DigestInvalid".into()),
            // Names containing endpoint words: the last one wins.
            (
                p("/v2/a/manifests/b/manifests/latest"),
                Some("ns=quay.io"),
                None,
                None,
                "manifest quay.io/a/manifests/b latest".into(),
            ),
            (p("/v2/a/blobs/b/blobs/{d}"), Some("ns=quay.io"), None, None, p("blob quay.io/a/blobs/b {d}")),
            (
                p("/v2/blobs/uploads/manifests/latest"),
                Some("ns=quay.io"),
                None,
                None,
                "manifest quay.io/blobs/uploads latest".into(),
            ),
            (p("/v2/tags/list/tags/list"), Some("ns=quay.io"), None, None, "tags quay.io/tags/list".into()),
            // Bad names, tags and digests.
            (p("/v2/Foo/manifests/v1"), Some("ns=quay.io"), None, None, "NameInvalid".into()),
            (p("/v2/a-/manifests/v1"), Some("ns=quay.io"), None, None, "NameInvalid".into()),
            (p("/v2/docker.io/manifests/v1"), None, None, None, "NameUnknown".into()),
            (p("/v2/a/manifests/-v1"), Some("ns=quay.io"), None, None, "TagInvalid".into()),
            (format!("/v2/a/manifests/{}", "x".repeat(129)), Some("ns=quay.io"), None, None, "TagInvalid".into()),
            (format!("/v2/a/manifests/{upper}"), Some("ns=quay.io"), None, None, "DigestInvalid".into()),
            (format!("/v2/a/manifests/{md5}"), Some("ns=quay.io"), None, None, "DigestInvalid".into()),
            (p("/v2/a/manifests/sha256:"), Some("ns=quay.io"), None, None, "DigestInvalid".into()),
            (p("/v2/a/blobs/latest"), Some("ns=quay.io"), None, None, "DigestInvalid".into()),
            (format!("/v2/a/blobs/{md5}"), Some("ns=quay.io"), None, None, "DigestInvalid".into()),
            // Not endpoints.
            (p("/v2/_catalog"), None, None, None, "NotFound".into()),
            (p("/v2/a/manifests"), Some("ns=quay.io"), None, None, "NotFound".into()),
            (p("/v2/manifests/latest"), Some("ns=quay.io"), None, None, "NotFound".into()),
            (p("/v2/a/manifests/latest/"), Some("ns=quay.io"), None, None, "NotFound".into()),
            (p("/v2/a/tags/lists"), Some("ns=quay.io"), None, None, "NotFound".into()),
            (p("/v3/a/manifests/latest"), None, None, None, "NotFound".into()),
            (p("/v2x"), None, None, None, "NotFound".into()),
            (p("/"), None, None, None, "NotFound".into()),
            (p(""), None, None, None, "NotFound".into()),
        ];
        for (path, query, header, default, want) in &cases {
            let default_ns: Option<Namespace> = default.map(|d| d.parse().expect("default ns"));
            let got = parse_route(path, *query, *header, default_ns.as_ref());
            assert_eq!(
                &describe(&got),
                want,
                "case path={path:?} query={query:?} x-registry={header:?} default={default:?}: {got:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_bad_value() {
        let cases = [
            ("/v2/a%2Fb/manifests/v1", Some("ns=quay.io"), "a%2Fb"),
            ("/v2/Foo/manifests/v1", Some("ns=quay.io"), "Foo"),
            ("/v2/a/manifests/-v1", Some("ns=quay.io"), "-v1"),
            ("/v2/a/blobs/sha256:abc", Some("ns=quay.io"), "sha256:abc"),
            ("/v2/a/manifests/v1", Some("ns=host:99999"), "host:99999"),
            ("/v2/a/b/manifests/v1", None, "a/b"),
        ];
        for (path, query, needle) in cases {
            let err = parse_route(path, query, None, None).expect_err(path);
            assert!(err.to_string().contains(needle), "case {path:?}: {err}");
        }
    }

    #[test]
    fn percent_decoding() {
        let cases = [
            ("abc", Some("abc")),
            ("127.0.0.1%3A5000", Some("127.0.0.1:5000")),
            ("%3a", Some(":")),
            ("%", None),
            ("%3", None),
            ("%zz", None),
            ("%ff", None),
            ("%C3%A9", Some("\u{e9}")),
        ];
        for (input, want) in cases {
            assert_eq!(percent_decode(input).as_deref(), want, "case {input:?}");
        }
    }
}

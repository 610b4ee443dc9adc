//! Image naming: the upstream [`Namespace`], the distribution-spec [`RepoName`],
//! [`Tag`], manifest [`Reference`], and the cache-wide [`ImageKey`] with its
//! Docker Hub normalization.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

/// Maximum length of a repository name (distribution spec).
pub const MAX_REPO_NAME_LEN: usize = 255;
/// Maximum length of a tag (distribution spec).
pub const MAX_TAG_LEN: usize = 128;
/// The canonical namespace of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

const DOCKER_HUB_ALIASES: [&str; 3] = [DOCKER_HUB, "index.docker.io", "registry-1.docker.io"];
const MAX_DNS_NAME_LEN: usize = 253;
const MAX_DNS_LABEL_LEN: usize = 63;

/// Why a string is not an acceptable name, tag or reference.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The namespace is the empty string.
    #[error("registry namespace is empty")]
    EmptyNamespace,
    /// The host part is not a DNS name, an IPv4 address or a bracketed IPv6 address.
    #[error("registry namespace {0:?} does not name a valid host")]
    InvalidHost(String),
    /// The port part is not a decimal number in 1..=65535.
    #[error("registry namespace {0:?} has an invalid port")]
    InvalidPort(String),
    /// The repository name is empty.
    #[error("repository name is empty")]
    EmptyRepoName,
    /// The repository name is longer than [`MAX_REPO_NAME_LEN`].
    #[error("repository name {0:?} is longer than 255 characters")]
    RepoNameTooLong(String),
    /// A `/`-separated component does not match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
    #[error("repository name {name:?} has an invalid component {component:?}")]
    InvalidRepoComponent {
        /// The whole repository name.
        name: String,
        /// The offending component.
        component: String,
    },
    /// The tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]*`.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// The tag is longer than [`MAX_TAG_LEN`].
    #[error("tag {0:?} is longer than 128 characters")]
    TagTooLong(String),
    /// An image key string has no `/` between namespace and repository.
    #[error("image key {0:?} is not of the form namespace/repository")]
    MalformedImageKey(String),
    /// A digest reference failed digest validation.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Implements `TryFrom<String>`, `Display` (as the stored string) and string
/// serialization for a newtype whose `FromStr` does the validation.
macro_rules! string_newtype {
    ($ty:ident) => {
        impl $ty {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = ReferenceError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

/// An upstream registry, `host[:port]`, lowercased.
///
/// The host is a DNS name, an IPv4 address or a bracketed IPv6 address
/// (IP addresses are stored in their canonical textual form). The text is shared: the first
/// `INTERNED_NAMESPACES` distinct namespaces are interned, so the index's many keys of one registry hold one copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Namespace(Arc<str>);

/// How many distinct namespaces are interned (they come from clients, so the table is bounded; beyond it each
/// namespace holds its own copy).
const INTERNED_NAMESPACES: usize = 256;

/// The shared copy of a namespace's text.
fn intern(text: String) -> Arc<str> {
    static TABLE: OnceLock<RwLock<HashSet<Arc<str>>>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    if let Some(found) = table.read().unwrap_or_else(|p| p.into_inner()).get(text.as_str()) {
        return found.clone();
    }
    let mut table = table.write().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = table.get(text.as_str()) {
        return found.clone();
    }
    let shared: Arc<str> = text.into();
    if table.len() < INTERNED_NAMESPACES {
        table.insert(shared.clone());
    }
    shared
}

string_newtype!(Namespace);

impl Namespace {
    /// Whether this is one of Docker Hub's names
    /// (`docker.io`, `index.docker.io`, `registry-1.docker.io`).
    pub fn is_docker_hub(&self) -> bool {
        DOCKER_HUB_ALIASES.contains(&&*self.0)
    }

    /// Whether a leading path segment names a registry rather than a
    /// repository component: it contains `.` or `:`, or is `localhost`.
    pub fn looks_like_host(segment: &str) -> bool {
        segment.contains('.') || segment.contains(':') || segment == "localhost"
    }

    fn docker_hub() -> Namespace {
        Namespace(intern(DOCKER_HUB.to_owned()))
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_DNS_LABEL_LEN
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Validates a lowercased, unbracketed host; returns its canonical form.
fn canonical_host(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip.to_string());
    }
    // All-numeric dotted strings must be real IPv4 addresses.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    (host.len() <= MAX_DNS_NAME_LEN && host.split('.').all(is_dns_label)).then(|| host.to_owned())
}

fn is_valid_port(port: &str) -> bool {
    !port.is_empty()
        && !port.starts_with('0')
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

impl FromStr for Namespace {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::EmptyNamespace);
        }
        let lower = s.to_ascii_lowercase();
        let (host, port) = if let Some(bracketed) = lower.strip_prefix('[') {
            let (inner, rest) = bracketed.split_once(']').ok_or_else(|| ReferenceError::InvalidHost(s.to_owned()))?;
            let ip = inner.parse::<Ipv6Addr>().map_err(|_| ReferenceError::InvalidHost(s.to_owned()))?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or_else(|| ReferenceError::InvalidHost(s.to_owned()))?),
            };
            (format!("[{ip}]"), port)
        } else {
            let (host, port) = match lower.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (lower.as_str(), None),
            };
            let host = canonical_host(host).ok_or_else(|| ReferenceError::InvalidHost(s.to_owned()))?;
            (host, port)
        };
        match port {
            None => Ok(Namespace(intern(host))),
            Some(p) if is_valid_port(p) => Ok(Namespace(intern(format!("{host}:{p}")))),
            Some(_) => Err(ReferenceError::InvalidPort(s.to_owned())),
        }
    }
}

/// A repository name per the distribution spec:
/// `component ("/" component)*`, `component = [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`,
/// at most [`MAX_REPO_NAME_LEN`] characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct RepoName(Box<str>);

string_newtype!(RepoName);

impl RepoName {
    /// Number of `/`-separated components (at least 1).
    pub fn segment_count(&self) -> usize {
        self.0.split('/').count()
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_repo_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // One run of alphanumerics is required here.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // Then a separator: ".", "_", "__" or "-+".
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
}

impl FromStr for RepoName {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::EmptyRepoName);
        }
        if s.len() > MAX_REPO_NAME_LEN {
            return Err(ReferenceError::RepoNameTooLong(s.to_owned()));
        }
        if let Some(bad) = s.split('/').find(|c| !is_repo_component(c)) {
            return Err(ReferenceError::InvalidRepoComponent { name: s.to_owned(), component: bad.to_owned() });
        }
        Ok(RepoName(s.into()))
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Tag(Box<str>);

string_newtype!(Tag);

impl Tag {
    /// `latest`, the tag an image name without one means.
    pub fn latest() -> Tag {
        Tag("latest".into())
    }
}

impl FromStr for Tag {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = s.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !first_ok || !rest_ok {
            return Err(ReferenceError::InvalidTag(s.to_owned()));
        }
        if s.len() > MAX_TAG_LEN {
            return Err(ReferenceError::TagTooLong(s.to_owned()));
        }
        Ok(Tag(s.into()))
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Deserialize)]
#[serde(try_from = "String")]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable content digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// A string containing `:` is parsed as a digest, anything else as a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl TryFrom<String> for Reference {
    type Error = ReferenceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The cache-wide identity of an image: upstream namespace plus repository.
///
/// Built only through [`ImageKey::new`], which normalizes Docker Hub so the
/// same image never gets two keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct ImageKey {
    ns: Namespace,
    repo: RepoName,
}

impl ImageKey {
    /// Builds a key, applying Docker Hub's rules: its aliases become
    /// `docker.io`, and a single-component repository gets `library/`.
    ///
    /// A single component too long to carry the prefix within
    /// [`MAX_REPO_NAME_LEN`] is kept as is (no such image can exist upstream).
    pub fn new(ns: Namespace, repo: RepoName) -> ImageKey {
        if !ns.is_docker_hub() {
            return ImageKey { ns, repo };
        }
        let repo = if repo.segment_count() == 1 { format!("library/{repo}").parse().unwrap_or(repo) } else { repo };
        ImageKey { ns: Namespace::docker_hub(), repo }
    }

    /// The upstream registry.
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// The repository within the upstream registry.
    pub fn repo(&self) -> &RepoName {
        &self.repo
    }
}

impl FromStr for ImageKey {
    type Err = ReferenceError;

    /// Parses `namespace/repository` (the [`Display`](fmt::Display) form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, repo) = s.split_once('/').ok_or_else(|| ReferenceError::MalformedImageKey(s.to_owned()))?;
        Ok(ImageKey::new(ns.parse()?, repo.parse()?))
    }
}

impl TryFrom<String> for ImageKey {
    type Error = ReferenceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// `ns/repo:tag` or `ns/repo@digest`: an image reference as people write it, for messages and logs.
pub struct Named<'a>(pub &'a ImageKey, pub &'a Reference);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Reference::Tag(t) => write!(f, "{}:{}", self.0, t),
            Reference::Digest(d) => write!(f, "{}@{}", self.0, d),
        }
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ns, self.repo)
    }
}

impl Serialize for ImageKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Runs `parse` over `cases`; `Ok(s)` expects success with canonical form
    /// `s`, `Err(e)` expects an error whose Debug form starts with `e`.
    fn check<T: fmt::Display + fmt::Debug>(
        what: &str,
        parse: impl Fn(&str) -> Result<T, ReferenceError>,
        cases: &[(&str, Result<&str, &str>)],
    ) {
        for (input, want) in cases {
            let got = parse(input);
            match (want, &got) {
                (Ok(canon), Ok(v)) => {
                    assert_eq!(&v.to_string(), canon, "{what} case {input:?}: canonical form")
                }
                (Err(variant), Err(e)) => {
                    assert!(format!("{e:?}").starts_with(variant), "{what} case {input:?}: want {variant}, got {e:?}")
                }
                _ => panic!("{what} case {input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn namespace_table() {
        check(
            "namespace",
            |s| s.parse::<Namespace>(),
            &[
                ("registry.k8s.io", Ok("registry.k8s.io")),
                ("docker.io", Ok("docker.io")),
                ("Docker.IO", Ok("docker.io")),
                ("localhost", Ok("localhost")),
                ("localhost:5000", Ok("localhost:5000")),
                ("127.0.0.1:5000", Ok("127.0.0.1:5000")),
                ("127.0.0.1", Ok("127.0.0.1")),
                ("[::1]:5000", Ok("[::1]:5000")),
                ("[::1]", Ok("[::1]")),
                ("[0:0::1]", Ok("[::1]")),
                ("[FE80::1]:443", Ok("[fe80::1]:443")),
                ("a-b.example.com:65535", Ok("a-b.example.com:65535")),
                ("host:1", Ok("host:1")),
                ("", Err("EmptyNamespace")),
                ("host:99999", Err("InvalidPort")),
                ("host:65536", Err("InvalidPort")),
                ("host:0", Err("InvalidPort")),
                ("host:05000", Err("InvalidPort")),
                ("host:+80", Err("InvalidPort")),
                ("host:", Err("InvalidPort")),
                ("host:80:90", Err("InvalidPort")),
                ("[::1]:", Err("InvalidPort")),
                ("[::1]5000", Err("InvalidHost")),
                ("[::1", Err("InvalidHost")),
                ("[not-ip]", Err("InvalidHost")),
                ("::1", Err("InvalidHost")),
                ("-host.io", Err("InvalidHost")),
                ("host-.io", Err("InvalidHost")),
                ("host..io", Err("InvalidHost")),
                (".host.io", Err("InvalidHost")),
                ("host.io.", Err("InvalidHost")),
                ("ho_st.io", Err("InvalidHost")),
                ("host.io/x", Err("InvalidHost")),
                ("256.0.0.1", Err("InvalidHost")),
                ("1.2.3", Err("InvalidHost")),
                (":5000", Err("InvalidHost")),
            ],
        );
        let long_label = format!("{}.io", "a".repeat(64));
        assert!(long_label.parse::<Namespace>().is_err(), "64-char label");
    }

    #[test]
    fn namespace_helpers() {
        for (ns, hub) in [
            ("docker.io", true),
            ("index.docker.io", true),
            ("registry-1.docker.io", true),
            ("quay.io", false),
            ("docker.io:443", false),
        ] {
            let parsed: Namespace = ns.parse().expect(ns);
            assert_eq!(parsed.is_docker_hub(), hub, "case {ns:?}");
        }
        for (seg, host) in [
            ("docker.io", true),
            ("localhost", true),
            ("localhost:5000", true),
            ("myhost:5000", true),
            ("library", false),
            ("my-org", false),
        ] {
            assert_eq!(Namespace::looks_like_host(seg), host, "case {seg:?}");
        }
    }

    #[test]
    fn repo_name_table() {
        let max = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        let too_long = format!("{max}c");
        assert_eq!(max.len(), 255);
        check(
            "repo",
            |s| s.parse::<RepoName>(),
            &[
                ("alpine", Ok("alpine")),
                ("library/alpine", Ok("library/alpine")),
                ("a/b/c/d", Ok("a/b/c/d")),
                ("my.repo/a_b/a__b/a-b/a---b", Ok("my.repo/a_b/a__b/a-b/a---b")),
                ("0", Ok("0")),
                (&max, Ok(&max)),
                ("", Err("EmptyRepoName")),
                (&too_long, Err("RepoNameTooLong")),
                ("Alpine", Err("InvalidRepoComponent")),
                ("library/Alpine", Err("InvalidRepoComponent")),
                ("..", Err("InvalidRepoComponent")),
                ("a/../b", Err("InvalidRepoComponent")),
                ("a//b", Err("InvalidRepoComponent")),
                ("/a", Err("InvalidRepoComponent")),
                ("a/", Err("InvalidRepoComponent")),
                ("-a", Err("InvalidRepoComponent")),
                ("a-", Err("InvalidRepoComponent")),
                (".a", Err("InvalidRepoComponent")),
                ("a.", Err("InvalidRepoComponent")),
                ("_a", Err("InvalidRepoComponent")),
                ("a_", Err("InvalidRepoComponent")),
                ("a___b", Err("InvalidRepoComponent")),
                ("a..b", Err("InvalidRepoComponent")),
                ("a._b", Err("InvalidRepoComponent")),
                ("a-_b", Err("InvalidRepoComponent")),
                ("a:b", Err("InvalidRepoComponent")),
                ("a b", Err("InvalidRepoComponent")),
                ("a%2fb", Err("InvalidRepoComponent")),
            ],
        );
        let repo: RepoName = "a/b/c".parse().expect("valid");
        assert_eq!(repo.segment_count(), 3);
    }

    #[test]
    fn tag_table() {
        let t128 = format!("v{}", "1".repeat(127));
        let t129 = format!("{t128}2");
        check(
            "tag",
            |s| s.parse::<Tag>(),
            &[
                ("latest", Ok("latest")),
                ("3.20", Ok("3.20")),
                ("_x", Ok("_x")),
                ("V1.0-RC_1", Ok("V1.0-RC_1")),
                (&t128, Ok(&t128)),
                (&t129, Err("TagTooLong")),
                ("", Err("InvalidTag")),
                (".x", Err("InvalidTag")),
                ("-x", Err("InvalidTag")),
                ("a/b", Err("InvalidTag")),
                ("a b", Err("InvalidTag")),
                ("a+b", Err("InvalidTag")),
            ],
        );
        assert_eq!(Some(Tag::latest()), "latest".parse().ok(), "Tag::latest() is a valid tag");
    }

    #[test]
    fn reference_table() {
        let good = format!("sha256:{HEX64}");
        let upper = format!("sha256:{}", HEX64.to_uppercase());
        let short = format!("sha256:{}", &HEX64[..10]);
        check(
            "reference",
            |s| s.parse::<Reference>(),
            &[
                ("latest", Ok("latest")),
                (&good, Ok(&good)),
                (&upper, Err("Digest(NotLowercaseHex")),
                (&short, Err("Digest(WrongLength")),
                ("md5:d41d8cd98f00b204e9800998ecf8427e", Err("Digest(UnsupportedAlgorithm")),
                ("sha256:", Err("Digest(Malformed")),
                ("bad/tag", Err("InvalidTag")),
            ],
        );
        assert!(matches!(good.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
    }

    #[test]
    fn image_key_normalization() {
        let cases = [
            ("docker.io", "alpine", "docker.io/library/alpine"),
            ("index.docker.io", "alpine", "docker.io/library/alpine"),
            ("registry-1.docker.io", "library/alpine", "docker.io/library/alpine"),
            ("docker.io", "bitnami/redis", "docker.io/bitnami/redis"),
            ("quay.io", "alpine", "quay.io/alpine"),
            ("localhost:5000", "a/b", "localhost:5000/a/b"),
        ];
        for (ns, repo, want) in cases {
            let key = ImageKey::new(ns.parse().expect(ns), repo.parse().expect(repo));
            assert_eq!(key.to_string(), want, "case {ns:?} {repo:?}");
            assert_eq!(want.parse::<ImageKey>().as_ref(), Ok(&key), "case {want:?} round trip");
        }
        let long = "a".repeat(250);
        let key = ImageKey::new("docker.io".parse().expect("ns"), long.parse().expect("repo"));
        assert_eq!(key.repo().as_str(), long, "too long for library/ prefix");
        assert_eq!(key.ns().as_str(), "docker.io");
        assert!("noslash".parse::<ImageKey>().is_err());
    }

    #[test]
    fn serde_goes_through_from_str() {
        let key: ImageKey = "index.docker.io/alpine".parse().expect("key");
        let json = serde_json::to_string(&key).expect("serialize");
        assert_eq!(json, "\"docker.io/library/alpine\"");
        assert_eq!(serde_json::from_str::<ImageKey>(&json).ok(), Some(key));
        assert!(serde_json::from_str::<RepoName>("\"Upper\"").is_err());
        assert!(serde_json::from_str::<Tag>("\"-x\"").is_err());
        assert!(serde_json::from_str::<Namespace>("\"host:99999\"").is_err());
        let ns: Namespace = serde_json::from_str("\"Quay.IO\"").expect("ns");
        assert_eq!(ns.as_str(), "quay.io");
        let r: Reference = serde_json::from_str("\"latest\"").expect("ref");
        assert_eq!(serde_json::to_string(&r).ok().as_deref(), Some("\"latest\""));
    }
}

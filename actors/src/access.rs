//! Allow and deny lists per registry (`registries[].allow`, `registries[].deny`): which repositories of a configured
//! upstream the mirror serves at all.
//!
//! A pattern names a repository path, the part after the registry (`library/nginx`, `kube-apiserver`,
//! `org/team/app`), segment by segment: `*` matches within one segment (never a `/`), `**` as a whole segment matches
//! zero or more segments, so `org/**` matches `org/a`, `org/a/b` and `org` itself, and `**/app` matches `app` and
//! `x/y/app`. Literal characters are those a repository path may hold (`a-z`, `0-9`, `.`, `_`, `-`). Docker Hub's
//! paths are matched in their canonical form, as the mirror asks the upstream for them: `nginx` is
//! `library/nginx`, so a pattern for Docker Hub names `library/*`, never `nginx`.
//!
//! A rule is compiled once at start ([`RepoPattern::parse`]; a bad pattern is a [`PatternError`]) and decides with
//! deny first: a path that any deny pattern matches is refused; else, when there are allow patterns, a path none of
//! them matches is refused; everything else is served.

use std::fmt;
use std::str::FromStr;

use crate::reference::{Namespace, RepoName};

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing to match.
    #[error("empty pattern")]
    Empty,
    /// `a//b`, a leading or a trailing `/`.
    #[error("empty path segment (a leading, trailing or doubled '/')")]
    EmptySegment,
    /// `***` or more.
    #[error("'***' is not a wildcard: use '*' within a segment or '**' for any number of segments")]
    TooManyStars,
    /// `a**`, `**b`: `**` must be a whole segment.
    #[error("'**' must be a whole path segment (as in 'org/**'); use '*' within a segment")]
    MixedDoubleStar,
    /// A character no repository path holds.
    #[error("{0:?} is not allowed: a repository path holds a-z, 0-9, '.', '_', '-' and '/' (and '*' in patterns)")]
    BadChar(char),
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    Any,
    /// Literal text and `*`s, matched within one segment: the literal runs between the stars, and whether the
    /// segment starts and ends with a star.
    Glob { parts: Vec<Box<str>>, star_first: bool, star_last: bool },
}

/// A compiled repository path pattern. Built only by [`RepoPattern::parse`], so it is always a valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern {
    text: Box<str>,
    segments: Vec<Segment>,
}

impl RepoPattern {
    /// Compile `text` (surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<RepoPattern, PatternError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if let Some(c) = text.chars().find(|&c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/' | '*')) {
            return Err(PatternError::BadChar(c));
        }
        let segments = text.split('/').map(segment).collect::<Result<Vec<_>, _>>()?;
        Ok(RepoPattern { text: text.into(), segments })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches one-segment paths only (`nginx`, `kube-*`): on Docker Hub, where every
    /// canonical path has at least two segments (`library/nginx`), such a pattern matches nothing.
    pub fn single_segment_only(&self) -> bool {
        matches!(&*self.segments, [Segment::Glob { .. }])
    }

    /// Whether `path` (`org/team/app`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path: Vec<&str> = path.split('/').collect();
        match_segments(&self.segments, &path)
    }
}

impl FromStr for RepoPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoPattern::parse(s)
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn segment(text: &str) -> Result<Segment, PatternError> {
    match text {
        "" => Err(PatternError::EmptySegment),
        "**" => Ok(Segment::Any),
        _ if text.contains("***") => Err(PatternError::TooManyStars),
        _ if text.contains("**") => Err(PatternError::MixedDoubleStar),
        _ => Ok(Segment::Glob {
            parts: text.split('*').filter(|p| !p.is_empty()).map(Into::into).collect(),
            star_first: text.starts_with('*'),
            star_last: text.ends_with('*'),
        }),
    }
}

/// Whether `pattern` matches all of `path`, `**` taking zero or more segments (shortest first).
fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((glob, rest)) => match path.split_first() {
            Some((first, tail)) => match_glob(glob, first) && match_segments(rest, tail),
            None => false,
        },
    }
}

/// Whether one segment's glob matches one path segment: the literal runs in order, anchored at the ends unless a
/// star stands there (the leftmost fit of each run is the right one).
fn match_glob(glob: &Segment, text: &str) -> bool {
    let Segment::Glob { parts, star_first, star_last } = glob else {
        return false;
    };
    if parts.is_empty() {
        // `*` alone (or a segment of stars only) matches any one segment.
        return *star_first;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if i == 0 && !star_first {
            match rest.strip_prefix(&**part) {
                Some(after) => rest = after,
                None => return false,
            }
        } else if last && !star_last {
            return rest.len() >= part.len() && rest.ends_with(&**part);
        } else {
            match rest.find(&**part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        if last && !star_last {
            return rest.is_empty();
        }
    }
    true
}

/// Why a repository was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A deny pattern matches it.
    Denied(RepoPattern),
    /// There are allow patterns and none matches it.
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied(p) => write!(f, "deny pattern {:?}", p.as_str()),
            Refusal::NotAllowed => f.write_str("no allow pattern matches"),
        }
    }
}

impl Refusal {
    /// Which list refused: `deny` or `allow` (what a client is told; the pattern goes to the log only).
    pub fn list(&self) -> &'static str {
        match self {
            Refusal::Denied(_) => "deny",
            Refusal::NotAllowed => "allow",
        }
    }
}

/// A pattern that can match none of its registry's repositories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matches no Docker Hub repository: patterns name the canonical path (library/nginx, library/*)")]
pub struct Unmatchable {
    /// `allow` or `deny`.
    pub list: &'static str,
    /// Its place in the list.
    pub index: usize,
    /// The pattern.
    pub pattern: RepoPattern,
}

impl Unmatchable {
    /// Its key under the registry's entry: `deny[1]`.
    pub fn key(&self) -> String {
        format!("{}[{}]", self.list, self.index)
    }
}

/// One registry's allow and deny lists. The default (both empty) serves everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRule {
    allow: Vec<RepoPattern>,
    deny: Vec<RepoPattern>,
}

impl AccessRule {
    /// A rule from compiled lists.
    pub fn new(allow: Vec<RepoPattern>, deny: Vec<RepoPattern>) -> AccessRule {
        AccessRule { allow, deny }
    }

    /// A rule for the registry `namespace`, refusing a pattern that can match none of its repositories (on Docker
    /// Hub, a one-segment pattern: its canonical paths have two segments at least).
    pub fn for_registry(
        namespace: &Namespace,
        allow: Vec<RepoPattern>,
        deny: Vec<RepoPattern>,
    ) -> Result<AccessRule, Unmatchable> {
        let lists = [("allow", &allow), ("deny", &deny)];
        let mut all = lists.iter().flat_map(|(list, ps)| ps.iter().enumerate().map(move |(i, p)| (*list, i, p)));
        match all.find(|(_, _, p)| namespace.is_docker_hub() && p.single_segment_only()) {
            Some((list, index, pattern)) => Err(Unmatchable { list, index, pattern: pattern.clone() }),
            None => Ok(AccessRule { allow, deny }),
        }
    }

    /// Whether the rule refuses nothing (no lists).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// The allow patterns.
    pub fn allow(&self) -> &[RepoPattern] {
        &self.allow
    }

    /// The deny patterns.
    pub fn deny(&self) -> &[RepoPattern] {
        &self.deny
    }

    /// Whether `repo` (canonical: Docker Hub's with `library/`) is served; deny wins over allow.
    pub fn check(&self, repo: &RepoName) -> Result<(), Refusal> {
        let path = repo.as_str();
        if let Some(denied) = self.deny.iter().find(|p| p.matches(path)) {
            return Err(Refusal::Denied(denied.clone()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches(path)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> RepoPattern {
        RepoPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn repo(text: &str) -> RepoName {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn rule(allow: &[&str], deny: &[&str]) -> AccessRule {
        AccessRule::new(allow.iter().map(|t| p(t)).collect(), deny.iter().map(|t| p(t)).collect())
    }

    #[test]
    fn literal_patterns_match_whole_paths() {
        assert!(p("library/nginx").matches("library/nginx"));
        assert!(!p("library/nginx").matches("library/nginx2"));
        assert!(!p("library/nginx").matches("library"));
        assert!(!p("library/nginx").matches("library/nginx/x"));
        assert!(p("kube-apiserver").matches("kube-apiserver"));
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        assert!(p("library/*").matches("library/nginx"));
        assert!(!p("library/*").matches("library/a/b"));
        assert!(!p("library/*").matches("library"));
        assert!(p("*").matches("pause"));
        assert!(!p("*").matches("org/pause"));
        for (pattern, path, matched) in [
            ("kube-*", "kube-apiserver", true),
            ("kube-*", "kube-", true),
            ("kube-*", "etcd", false),
            ("*-server", "api-server", true),
            ("*-server", "api-server-x", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*nginx*", "my-nginx-x", true),
            ("org/*/app", "org/team/app", true),
            ("org/*/app", "org/a/b/app", false),
        ] {
            assert_eq!(p(pattern).matches(path), matched, "{pattern} on {path}");
        }
    }

    #[test]
    fn a_double_star_takes_zero_or_more_segments() {
        let org = p("org/**");
        assert!(org.matches("org/a"));
        assert!(org.matches("org/a/b/c"));
        assert!(org.matches("org"), "org/** covers the repository org itself");
        assert!(!org.matches("organisation/a"));
        assert!(!org.matches("other/org/a"));
        assert!(p("**").matches("a/b/c"));
        assert!(p("**/app").matches("app"));
        assert!(p("**/app").matches("x/y/app"));
        assert!(!p("**/app").matches("x/app/y"));
        assert!(p("org/**/app").matches("org/app"));
        assert!(p("org/**/app").matches("org/a/b/app"));
        assert!(p("org/**/team-*/app").matches("org/x/team-a/app"));
    }

    #[test]
    fn deny_wins_and_no_allow_means_everything_not_denied() {
        let open = AccessRule::default();
        assert!(open.is_open());
        assert_eq!(open.check(&repo("anything/at/all")), Ok(()));

        let deny_only = rule(&[], &["library/nginx", "org/**"]);
        assert_eq!(deny_only.check(&repo("library/alpine")), Ok(()));
        assert_eq!(deny_only.check(&repo("library/nginx")), Err(Refusal::Denied(p("library/nginx"))));
        assert_eq!(deny_only.check(&repo("org/a/b")), Err(Refusal::Denied(p("org/**"))));

        let both = rule(&["library/*", "org/**"], &["org/secret/**", "library/nginx"]);
        assert_eq!(both.check(&repo("library/alpine")), Ok(()));
        assert_eq!(both.check(&repo("library/nginx")), Err(Refusal::Denied(p("library/nginx"))), "deny wins");
        assert_eq!(both.check(&repo("org/public/app")), Ok(()));
        assert_eq!(both.check(&repo("org/secret/app")), Err(Refusal::Denied(p("org/secret/**"))));
        assert_eq!(both.check(&repo("bitnami/redis")), Err(Refusal::NotAllowed));
        assert_eq!(Refusal::NotAllowed.to_string(), "no allow pattern matches");
        assert_eq!(Refusal::Denied(p("org/**")).to_string(), "deny pattern \"org/**\"");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (text, error) in [
            ("", PatternError::Empty),
            ("   ", PatternError::Empty),
            ("a//b", PatternError::EmptySegment),
            ("/a", PatternError::EmptySegment),
            ("a/", PatternError::EmptySegment),
            ("a/***", PatternError::TooManyStars),
            ("a**", PatternError::MixedDoubleStar),
            ("**b/c", PatternError::MixedDoubleStar),
            ("Library/nginx", PatternError::BadChar('L')),
            ("library/nginx:1.0", PatternError::BadChar(':')),
            ("a b", PatternError::BadChar(' ')),
            ("a?", PatternError::BadChar('?')),
            ("docker.io/library@x", PatternError::BadChar('@')),
        ] {
            assert_eq!(RepoPattern::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(p(" library/* ").as_str(), "library/*");
    }

    #[test]
    fn one_segment_patterns_are_refused_for_docker_hub_only() {
        let hub: Namespace = "index.docker.io".parse().expect("ns");
        let err =
            AccessRule::for_registry(&hub, vec![p("library/*")], vec![p("org/**"), p("nginx")]).expect_err("nginx");
        assert_eq!((err.key().as_str(), err.pattern.as_str()), ("deny[1]", "nginx"));
        assert!(AccessRule::for_registry(&hub, vec![p("library/*"), p("**")], vec![]).is_ok());
        let k8s: Namespace = "registry.k8s.io".parse().expect("ns");
        let rule = AccessRule::for_registry(&k8s, vec![p("kube-*")], vec![p("pause")]).expect("one segment is fine");
        assert_eq!(rule.check(&repo("kube-proxy")), Ok(()));
        assert_eq!(rule.allow().len() + rule.deny().len(), 2);
    }

    #[test]
    fn patterns_of_one_segment_only_are_known() {
        assert!(p("nginx").single_segment_only());
        assert!(p("kube-*").single_segment_only());
        assert!(!p("**").single_segment_only());
        assert!(!p("org/**").single_segment_only());
        assert!(!p("library/*").single_segment_only());
    }
}

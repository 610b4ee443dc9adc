//! Pinned images (`pinned`): patterns of image references that eviction and pruning never remove.
//!
//! A pattern is matched against the whole reference as the listings write it, `namespace/repository:tag` or
//! `namespace/repository@digest`: `*` matches any run of characters except `/`, `**` any run including `/`, `?`
//! one character except `/`. A pattern without a tag or digest (`docker.io/library/alpine`) matches every
//! reference of that repository. So `docker.io/library/*` pins every official Docker Hub image, and
//! `registry.k8s.io/pause:*` every tag of pause. An image is pinned when its root reference matches; its platform
//! manifests and blobs go with it.

use regex::Regex;

/// A pattern that is not a usable pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PinError(String);

/// Compiled pins.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    patterns: Vec<(String, Regex)>,
}

impl Pins {
    /// Compile `patterns`; the error names the first unusable one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Pins, PinError> {
        let mut compiled = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            compiled.push((p.to_string(), compile(p)?));
        }
        Ok(Pins { patterns: compiled })
    }

    /// Whether `name` (`ns/repo:tag` or `ns/repo@digest`) is pinned.
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|(_, re)| re.is_match(name))
    }

    /// Whether there are no pins.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(p, _)| p.as_str())
    }
}

fn compile(pattern: &str) -> Result<Regex, PinError> {
    let Some((repo_part, last)) = pattern.rsplit_once('/') else {
        return Err(PinError(format!(
            "{pattern:?} is not an image pattern: write namespace/repository[:tag], e.g. docker.io/library/*"
        )));
    };
    if repo_part.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PinError(format!("{pattern:?} is not an image pattern")));
    }
    let has_reference = last.contains(':') || last.contains('@');
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if !has_reference && !last.ends_with('*') {
        re.push_str("(?:[:@].*)?");
    }
    re.push('$');
    Regex::new(&re).map_err(|e| PinError(format!("{pattern:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let pins = Pins::new(&["docker.io/library/*", "registry.k8s.io/pause:*", "quay.io/team/app", "ghcr.io/**"])
            .expect("valid");
        for (name, pinned) in [
            ("docker.io/library/alpine:3.20", true),
            ("docker.io/library/alpine@sha256:abc", true),
            ("docker.io/bitnami/redis:7", false),
            ("registry.k8s.io/pause:3.9", true),
            ("registry.k8s.io/pause@sha256:abc", false),
            ("registry.k8s.io/pause-x:1", false),
            ("quay.io/team/app:v1", true),
            ("quay.io/team/app@sha256:abc", true),
            ("quay.io/team/application:v1", false),
            ("ghcr.io/org/deep/image:1", true),
        ] {
            assert_eq!(pins.matches(name), pinned, "{name}");
        }
    }

    #[test]
    fn unusable_patterns_are_named() {
        for bad in ["alpine", "/x", "docker.io/library/a b"] {
            let err = Pins::new(&[bad]).expect_err(bad);
            assert!(err.to_string().contains(bad.trim()), "{err}");
        }
        assert!(Pins::new::<&str>(&[]).expect("empty").is_empty());
    }
}

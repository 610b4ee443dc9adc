//! Image references as people write them (a list file's lines, `--resolve-ref`, the names an archive gives).

use super::error::BadImageRef;
use crate::reference::{ImageKey, Namespace, Reference, ReferenceError, Tag};

/// An image and the tag or digest it is named by.
pub type ImageRef = (ImageKey, Reference);

/// Parse an image reference as people write it: `docker.io/library/alpine:3.20`, `alpine` (Docker Hub, `latest`),
/// `registry.k8s.io/pause@sha256:...`, `localhost:5000/app:1`.
pub fn parse_image_ref(text: &str) -> Result<ImageRef, BadImageRef> {
    let text = text.trim().trim_start_matches("docker://");
    let bad = |source: ReferenceError| BadImageRef { text: text.to_string(), source };
    let (name, reference) = match text.split_once('@') {
        Some((name, digest)) => (name, Reference::Digest(digest.parse().map_err(|e| bad(ReferenceError::from(e)))?)),
        None => {
            let last_slash = text.rfind('/').map_or(0, |i| i + 1);
            match text[last_slash..].rfind(':') {
                Some(i) => {
                    let at = last_slash + i;
                    (&text[..at], Reference::Tag(text[at + 1..].parse().map_err(bad)?))
                }
                None => (text, Reference::Tag(Tag::latest())),
            }
        }
    };
    let (ns, repo) = match name.split_once('/') {
        Some((first, rest)) if Namespace::looks_like_host(first) => (first, rest),
        _ => ("docker.io", name),
    };
    let ns: Namespace = ns.parse().map_err(bad)?;
    let repo = repo.parse().map_err(bad)?;
    Ok((ImageKey::new(ns, repo), reference))
}

/// The image references of a list file: one a line; blank lines and `#` comments (whole-line or after the
/// reference) are skipped. Each entry is the line's text and its parse.
pub fn parse_list(text: &str) -> Vec<(String, Result<ImageRef, BadImageRef>)> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| (line.to_string(), parse_image_ref(line)))
        .collect()
}

/// `--resolve-ref`: an image name, with the tag or digest it names, if it names one.
pub(crate) type Resolve = (ImageKey, Option<Reference>);

/// Parse `--resolve-ref`.
pub(crate) fn parse_resolve(text: &str) -> Result<Resolve, BadImageRef> {
    let (image, reference) = parse_image_ref(text)?;
    let last = text.rsplit('/').next().unwrap_or(text);
    Ok((image, (last.contains(':') || last.contains('@')).then_some(reference)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Named;

    #[test]
    fn image_references_as_people_write_them() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (text, want) in [
            ("docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20".to_string()),
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7".to_string()),
            ("localhost:5000/app:1", "localhost:5000/app:1".to_string()),
            ("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:latest".to_string()),
            (&format!("registry.k8s.io/pause@{digest}"), format!("registry.k8s.io/pause@{digest}")),
            ("docker://index.docker.io/hello:1", "docker.io/library/hello:1".to_string()),
        ] {
            let (image, reference) = parse_image_ref(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(Named(&image, &reference).to_string(), want, "{text}");
        }
        for bad in ["", "UPPER/case:1", "a:b:c/d", "x@sha256:short"] {
            assert!(parse_image_ref(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn list_files_skip_comments_and_blank_lines() {
        let text = "# images for the edge site\n\nalpine:3.20  # base\n  registry.k8s.io/pause:3.9\nnot/VALID\n";
        let entries = parse_list(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "alpine:3.20");
        assert!(entries[0].1.is_ok() && entries[1].1.is_ok());
        assert!(entries[2].1.is_err(), "a bad line is reported, not skipped");
    }
}

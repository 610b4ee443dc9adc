//! The official OCI distribution-spec conformance suites, pull-only, against our server in front of a real
//! docker-registry holding the content they read (both binaries are prebuilt; no Go toolchain or module proxy is
//! needed). They are looked up in `$OCIREGISTRY_CONFORMANCE_DIR`, then `../shared/conformance` next to the
//! repository; on a machine without them the test says so and checks nothing else.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::images;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::TestDir;

fn suites_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("OCIREGISTRY_CONFORMANCE_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")),
    ];
    candidates.into_iter().flatten().find(|d| d.join("conformance-v1.1.1").is_file())
}

/// Everything the suites need to know about the seeded content.
struct Seeded {
    server: Server,
    _up: Upstream,
    manifest: String,
    blobs: Vec<String>,
    /// A manifest with a signature referring to it.
    subject: String,
}

fn seed(dir: &TestDir) -> Seeded {
    let up = Upstream::start();
    let image = images::custom(&up, &dir.subdir("work"), "some/repo:v1", &[4_000, 9_000]);
    for tag in ["v2", "v3", "v4"] {
        images::custom(&up, &dir.subdir(tag), &format!("some/repo:{tag}"), &[1_000]);
    }
    let _other = images::custom(&up, &dir.subdir("work2"), "some/other:v1", &[1_000]);
    images::sign(&up, &dir.subdir("sig"), "some/repo", &image);
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("defaultNs: docker.io"));
    let blobs = image.blobs().iter().map(|b| b.digest.clone()).collect();
    Seeded { server, _up: up, manifest: image.digest.clone(), blobs, subject: image.digest.clone() }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_oci_conformance_suites_pass_in_pull_mode() {
    let Some(suites) = suites_dir() else {
        eprintln!("skipped: the OCI conformance binaries are not on this machine (set OCIREGISTRY_CONFORMANCE_DIR)");
        return;
    };
    let dir = TestDir::new("conformance");
    let s = seed(&dir);
    let report = dir.subdir("report-v1");
    let out = run(Command::new(suites.join("conformance-v1.1.1"))
        .arg("-ginkgo.no-color")
        .current_dir(dir.path())
        .env("OCI_ROOT_URL", s.server.url())
        .env("OCI_NAMESPACE", "some/repo")
        .env("OCI_TEST_PULL", "1")
        .env("OCI_TEST_PUSH", "0")
        .env("OCI_TEST_CONTENT_DISCOVERY", "1")
        .env("OCI_TAG_LIST", "v1,v2,v3,v4")
        .env("OCI_TEST_CONTENT_MANAGEMENT", "0")
        .env("OCI_TAG_NAME", "v1")
        .env("OCI_MANIFEST_DIGEST", &s.manifest)
        .env("OCI_BLOB_DIGEST", &s.blobs[1])
        .env("OCI_REPORT_DIR", &report));
    let summary = out.lines().find(|l| l.contains("Passed") && l.contains("Failed")).unwrap_or_default().to_string();
    eprintln!("conformance v1.1.1 (pull): {summary}");
    let count = |word: &str| -> usize {
        summary
            .split('|')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(usize::MAX)
    };
    assert!(count("Passed") >= 19 && count("Passed") != usize::MAX, "v1.1.1 passed: {summary}\n{out}");
    // Three referrers tests count artifacts that only the suite's own push setup creates (5, 2 and one given
    // digest); every other pull and discovery test must pass.
    const NEEDS_PUSHED_ARTIFACTS: [&str; 3] = [
        "GET request to existing blob should yield 200",
        "GET request to existing blob with filter should yield 200",
        "GET request to missing manifest should yield 200",
    ];
    let failed: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("[FAIL]")).collect();
    for line in &failed {
        assert!(NEEDS_PUSHED_ARTIFACTS.iter().any(|t| line.contains(t)), "v1.1.1 failed {line}\n{out}");
    }
    assert!(count("Failed") <= NEEDS_PUSHED_ARTIFACTS.len(), "v1.1.1 failures: {summary}\n{out}");

    let results = dir.subdir("results-main");
    let addr = s.server.url().trim_start_matches("http://").to_string();
    let out = run(Command::new(suites.join("conformance-main-967efdc"))
        .current_dir(dir.path())
        .env("OCI_REGISTRY", addr)
        .env("OCI_TLS", "disabled")
        .env("OCI_REPO1", "some/repo")
        .env("OCI_REPO2", "some/other")
        .env("OCI_API_PULL", "true")
        .env("OCI_API_PUSH", "false")
        .env("OCI_API_BLOBS_DELETE", "false")
        .env("OCI_API_MANIFESTS_DELETE", "false")
        .env("OCI_API_TAGS_DELETE", "false")
        .env("OCI_API_TAGS_LIST", "true")
        .env("OCI_API_REFERRER", "true")
        .env("OCI_RO_DATA_TAGS", "v1 v2 v3 v4")
        .env("OCI_RO_DATA_REFERRERS", &s.subject)
        .env("OCI_RO_DATA_MANIFESTS", &s.manifest)
        .env("OCI_RO_DATA_BLOBS", s.blobs.join(" "))
        .env("OCI_RESULTS_DIR", &results));
    let result = out.lines().find(|l| l.contains("OCI Conformance Result")).unwrap_or_default().to_string();
    eprintln!("conformance main-967efdc (pull): {result}");
    assert!(result.contains("Pass"), "main-967efdc: {result}\n{out}");
    let ran = |what: &str| out.lines().any(|l| l.to_lowercase().contains(what));
    assert!(ran("tag") && ran("referrer"), "main-967efdc ran the tag list and referrers tests:\n{out}");
}

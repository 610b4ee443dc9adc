//! Tag lists and referrers through the mirror, against a real upstream: passed through (paged with `Link` in the
//! form the client used), and served from what the cache knows when the upstream is gone; `skopeo inspect` (which
//! lists tags) works online and offline; the referrers of a signed image are found through the tag schema, filtered by
//! `artifactType`, and still served with the upstream gone.

mod common;

use common::http::{self, StatusCode};
use common::images::{self, get_manifest, SIGNATURE_TYPE};
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::TestDir;
use serde_json::Value;

fn get_json(url: &str) -> (StatusCode, String, Value) {
    let resp = http::client().get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let link = http::header(&resp, "Link");
    let body = resp.bytes().expect("body");
    (status, link, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn tags_of(v: &Value) -> Vec<String> {
    v["tags"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn skopeo_inspect(server: &Server, reference: &str) -> Result<Value, String> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--no-creds"])
        .arg(format!("docker://{}/{reference}", server.url().trim_start_matches("http://")))
        .output()
        .expect("run skopeo inspect");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn tag_lists_pass_through_page_and_fall_back_to_the_cached_tags() {
    let mut up = Upstream::start();
    let dir = TestDir::new("tags");
    for tag in ["a", "b", "c", "d"] {
        images::custom(&up, &dir.subdir(tag), &format!("library/app:{tag}"), &[1_000]);
    }
    let mut server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("tagTtl: 0s"));
    let (status, _, list) = get_json(&format!("{}/v2/docker.io/library/app/tags/list", server.url()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (list["name"].as_str(), tags_of(&list)),
        (Some("docker.io/library/app"), vec!["a".into(), "b".into(), "c".into(), "d".into()])
    );
    // Paged, in the form the client used (the namespace as a query parameter here).
    let (status, link, page) = get_json(&format!("{}/v2/library/app/tags/list?ns=docker.io&n=2", server.url()));
    assert_eq!((status, tags_of(&page)), (StatusCode::OK, vec!["a".to_string(), "b".to_string()]));
    assert_eq!(page["name"], "library/app");
    assert_eq!(link, "</v2/library/app/tags/list?n=2&last=b&ns=docker.io>; rel=\"next\"");
    let next = link.trim_start_matches('<').split('>').next().expect("link target");
    let (_, link, page) = get_json(&format!("{}{next}", server.url()));
    assert_eq!(tags_of(&page), vec!["c".to_string(), "d".to_string()]);
    assert!(link.is_empty(), "no page after the last: {link:?}");
    let inspected = skopeo_inspect(&server, "docker.io/library/app:b").expect("skopeo inspect online");
    assert_eq!(inspected["RepoTags"].as_array().map(|a| a.len()), Some(4), "{inspected}");
    assert_eq!(get_json(&format!("{}/v2/docker.io/library/none/tags/list", server.url())).0, StatusCode::NOT_FOUND);

    // Only "b" was pulled: with the upstream gone the list is what the cache knows.
    up.stop();
    server.restart();
    let (status, _, list) = get_json(&format!("{}/v2/docker.io/library/app/tags/list", server.url()));
    assert_eq!((status, tags_of(&list)), (StatusCode::OK, vec!["b".to_string()]));
    let inspected = skopeo_inspect(&server, "docker.io/library/app:b").expect("skopeo inspect offline");
    assert_eq!(inspected["RepoTags"], serde_json::json!(["b"]), "{inspected}");
}

#[test]
fn the_referrers_of_a_signed_image_are_found_filtered_and_kept_for_offline_use() {
    let mut up = Upstream::start();
    let dir = TestDir::new("referrers");
    let image = images::custom(&up, &dir.subdir("img"), "library/signed:1", &[1_000]);
    let artifact = images::sign(&up, &dir.subdir("sig"), "library/signed", &image);
    let mut server = Server::start(&up.url());
    let url = format!("{}/v2/docker.io/library/signed/referrers/{}", server.url(), image.digest);
    let check = |url: &str, expect: usize| -> Value {
        let resp = http::client().get(url).send().expect("GET referrers");
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(http::header(&resp, "Content-Type"), "application/vnd.oci.image.index.v1+json");
        let index: Value = serde_json::from_slice(&resp.bytes().expect("body")).expect("an index");
        let listed = index["manifests"].as_array().map(|a| a.len()).unwrap_or(0);
        assert_eq!(listed, expect, "{url}: {index}");
        index
    };
    let index = check(&url, 1);
    assert_eq!(index["manifests"][0]["digest"], artifact.as_str());
    assert_eq!(index["manifests"][0]["artifactType"], SIGNATURE_TYPE);
    // The artifact itself pulls through.
    assert_eq!(get_manifest(&server.url(), "docker.io/library/signed", &artifact).0, artifact);
    let filtered = format!("{url}?artifactType={SIGNATURE_TYPE}");
    let resp = http::client().get(&filtered).send().expect("GET filtered");
    assert_eq!(http::header(&resp, "OCI-Filters-Applied"), "artifactType");
    check(&format!("{url}?artifactType=application/vnd.other"), 0);
    // A subject nobody refers to: an empty index, not an error.
    let unknown = format!("{}/v2/docker.io/library/signed/referrers/sha256:{}", server.url(), "1".repeat(64));
    check(&unknown, 0);

    up.stop();
    server.restart();
    check(&url, 1);
    assert_eq!(get_manifest(&server.url(), "docker.io/library/signed", &artifact).0, artifact);
}

//! Manifests far larger than the Go server's 25 KiB limit: the spec asks registries to take at least 4 MiB. A 4.5 MiB
//! manifest (an image with very many layers and annotations) pulls through, byte for byte, and is cached.

mod common;

use common::http::{self, StatusCode};
use common::server::Server;
use common::sha256_digest;
use common::stub_http::{Reply, StubServer};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn big_manifest() -> Vec<u8> {
    let layers: Vec<serde_json::Value> = (0..6000)
        .map(|i| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256_digest(format!("layer {i}").as_bytes()),
                "size": 1000 + i,
                "annotations": {"org.example.padding": "x".repeat(600)},
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
        "layers": layers,
    });
    serde_json::to_vec(&manifest).expect("encode")
}

#[test]
fn a_manifest_over_4_mib_pulls_through_and_is_cached() {
    let manifest = big_manifest();
    assert!(manifest.len() > 4 << 20, "premise: the manifest is over 4 MiB ({} bytes)", manifest.len());
    let digest = sha256_digest(&manifest);
    let (body, d) = (manifest.clone(), digest.clone());
    let upstream = StubServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::json(200, &serde_json::json!({}));
        }
        if req.path() == "/v2/library/huge/manifests/1" || req.path() == format!("/v2/library/huge/manifests/{d}") {
            return Reply::status(200).header("Docker-Content-Digest", &d).body(OCI_MANIFEST, body.clone());
        }
        Reply::error(404, "MANIFEST_UNKNOWN")
    });
    let server = Server::start(&upstream.url());
    let client = http::client();
    for round in 0..2 {
        let url = format!("{}/v2/library/huge/manifests/1?ns=docker.io", server.url());
        let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET manifest");
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        assert_eq!(http::header(&resp, "Docker-Content-Digest"), digest, "round {round}");
        assert_eq!(http::header(&resp, "Content-Length"), manifest.len().to_string(), "round {round}");
        assert_eq!(resp.bytes().expect("body").to_vec(), manifest, "round {round}: bytes as the upstream sent them");
        let head = client.head(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("HEAD manifest");
        assert_eq!(http::header(&head, "Content-Length"), manifest.len().to_string(), "round {round}: HEAD length");
    }
    assert_eq!(upstream.count("GET", "/manifests/1"), 1, "the second round came from the cache");
}

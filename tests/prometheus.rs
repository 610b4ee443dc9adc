//! The chart's dashboards and alerts proven against a real Prometheus (issue 24): Debian's `prometheus` server on
//! 127.0.0.1 scrapes the real server's metrics port every second, with the labels a ServiceMonitor scrape gives it,
//! and loads the chart's alerts as a rule file. The mirror pulls an image with skopeo from a real docker-registry
//! that wants a bearer token (so a token is fetched) behind a relay that adds Docker Hub's RateLimit headers, and
//! answers a 404. Then every dashboard panel query and every alert expression, with the variables filled in, runs
//! through `/api/v1/query`: each must parse, each metric it names must be in the scrape
//! (`/api/v1/label/__name__/values`), and each dashboard query must return series (a panel shows 0, not "No
//! data"). Prometheus must evaluate every alert without error.

mod common;

use std::time::Duration;

use common::chart_queries::{self, Fill};
use common::prometheus::{metric_names, Prometheus, ScrapeTarget};
use common::ratelimit_relay::RateLimitRelay;
use common::server::{Server, ServerConfig};
use common::token_server::{TokenServer, TokenServerOptions};
use common::upstream::{Upstream, UpstreamOptions};
use common::{http, images, skopeo, wait_for, TestDir};

/// What the chart renders for release `mirror` in namespace `registry`: the metrics Service (the scrape's job) and
/// the pods' name prefix.
const NAMESPACE: &str = "registry";
const JOB: &str = "mirror-ociregistry-metrics";
const POD: &str = "mirror-ociregistry-6d4f9c7b8-x2x9q";

/// Metrics from elsewhere than this server that alerts may read: kube-state-metrics' restart counter.
const NOT_OURS: &[&str] = &["kube_pod_container_status_restarts_total"];

/// Docker Hub's budget as the relay announces it.
const LIMIT: u64 = 100;
const WINDOW_SECS: u64 = 21600;

#[test]
fn metric_names_are_the_selectors_only() {
    let expr = r#"sum by (ns, reason) (rate(a_total{job="x", le=~"3600(\\.0)?"}[5m])) / on (ns) group_left (pod)
        b > bool 0.5e3 and histogram_quantile(0.5, sum without (le) (c_bucket offset 5m)) unless up"#;
    let names: Vec<_> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["a_total", "b", "c_bucket", "up"]);
}

/// Harness check of the relay: the headers on every answer, a manifest GET spends one, a HEAD and a blob none, and
/// once none is left a manifest GET gets 429 without reaching the registry.
#[test]
fn the_ratelimit_relay_answers_like_docker_hubs_budget() {
    let dir = TestDir::new("ratelimit-relay");
    let up = Upstream::start();
    let image = images::hello(&up, dir.path());
    let relay = RateLimitRelay::start(&up.url(), LIMIT, WINDOW_SECS);
    relay.set_remaining(2);
    up.settle_log();
    let manifest_gets = || up.access_log_count("GET", &format!("/manifests/{}", image.tag));
    let before = manifest_gets();
    let client = http::client();
    let manifest = format!("{}/v2/{}/manifests/{}", relay.url(), image.repo, image.tag);
    let blob = format!("{}/v2/{}/blobs/{}", relay.url(), image.repo, image.manifest().config.digest);
    let budget = |resp: &http::Response| {
        (http::header(resp, "ratelimit-limit"), http::header(resp, "ratelimit-remaining"), resp.status().as_u16())
    };
    let head = client.head(&manifest).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("HEAD");
    assert_eq!(budget(&head), ("100;w=21600".into(), "2;w=21600".into(), 200), "a HEAD spends nothing");
    let get = client.get(&manifest).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    assert_eq!(budget(&get), ("100;w=21600".into(), "1;w=21600".into(), 200), "a manifest GET spends one");
    assert_eq!(get.bytes().expect("body").to_vec(), image.bytes, "the registry's manifest, whole");
    let config = client.get(&blob).send().expect("GET blob");
    assert_eq!(budget(&config), ("100;w=21600".into(), "1;w=21600".into(), 200), "a blob spends nothing");
    assert!(!config.bytes().expect("blob").is_empty());
    let last = client.get(&manifest).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    assert_eq!(budget(&last), ("100;w=21600".into(), "0;w=21600".into(), 200), "the last one");
    let refused = client.get(&manifest).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    assert_eq!(budget(&refused), ("100;w=21600".into(), "0;w=21600".into(), 429), "none left");
    assert_eq!(http::error_codes(&refused.bytes().expect("body")), ["TOOMANYREQUESTS"]);
    assert_eq!((relay.manifest_gets(), relay.refused(), relay.remaining()), (3, 1, 0));
    up.settle_log();
    assert_eq!(manifest_gets() - before, 2, "the refused GET stayed in the relay");
}

#[test]
fn every_dashboard_query_and_alert_runs_on_a_real_prometheus_over_a_real_scrape() {
    let dir = TestDir::new("prometheus-e2e");
    let tokens = TokenServer::start(&dir.subdir("token-certs"), TokenServerOptions::default());
    let up = Upstream::start_with(UpstreamOptions { token: Some(tokens.registry_auth()), ..Default::default() });
    let image = images::hello(&up, dir.path());
    let relay = RateLimitRelay::start(&up.url(), LIMIT, WINDOW_SECS);
    relay.set_remaining(76);
    let metrics_port = common::ports::free_port();
    // A bandwidth cap far above what the test moves, so its gauge is exported.
    let config = ServerConfig::default()
        .registry("docker.io", &relay.url())
        .extra(&format!("metrics: {metrics_port}\nupstreamBandwidth: 1GB"));
    let server = Server::start_with(config);

    let fill = Fill { namespace: NAMESPACE, job: JOB, pod_prefix: "mirror-ociregistry-", interval: "15s" };
    let alerts = chart_queries::alerts(&fill);
    let rules = serde_json::json!({"groups": [{
        "name": "ociregistry",
        "rules": alerts.iter().map(|a| {
            let mut r = serde_json::json!({"alert": a.name, "expr": a.expr});
            if let Some(d) = &a.for_ {
                r["for"] = serde_json::json!(d);
            }
            r
        }).collect::<Vec<_>>(),
    }]});
    let rule_file = dir.path().join("alerts.yaml");
    std::fs::write(&rule_file, rules.to_string()).expect("write the rule file");
    let address = format!("127.0.0.1:{metrics_port}");
    let target = ScrapeTarget { job: JOB, address: &address, labels: &[("namespace", NAMESPACE), ("pod", POD)] };
    let prom = Prometheus::start(&target, &[&rule_file]);

    // Real traffic: a pull with skopeo (a token fetched from the realm, manifests through the relay, blobs), a 404.
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.subdir("pulled"));
    let missing = format!("{}/v2/library/no-such-image/manifests/latest?ns=docker.io", server.url());
    let resp = http::client().get(&missing).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    assert_eq!(resp.status(), http::StatusCode::NOT_FOUND, "{missing}");
    assert!(tokens.fetches() >= 1, "the mirror fetched no token");
    assert!(relay.manifest_gets() >= 1, "no manifest GET went through the relay");

    // Prometheus has scraped the traffic, then a few more times (rates need two samples).
    wait_for("Prometheus to scrape the token fetch", Duration::from_secs(30), || {
        let q = r#"ociregistry_token_fetches_total{ns="docker.io"} > 0"#;
        prom.query(q).ok().filter(|r| !r.is_empty())
    });
    std::thread::sleep(Duration::from_secs(4));
    let scraped = prom.metric_names();

    // The pull budget the relay stated is in the scrape as it was sent.
    let q = r#"ociregistry_upstream_ratelimit_remaining{ns="docker.io"}"#;
    let got = prom.query(q).expect("query");
    let value = got.first().and_then(|s| s["value"][1].as_str()).unwrap_or("none").to_string();
    assert_eq!(value, relay.remaining().to_string(), "{q}: what the relay last sent");

    let mut problems = Vec::new();
    let mut queries: Vec<(String, String, bool)> =
        alerts.iter().map(|a| (format!("alert {}", a.name), a.expr.clone(), false)).collect();
    queries.extend(chart_queries::dashboard_queries(&fill).into_iter().map(|(place, q)| (place, q, true)));
    for (place, query, panel) in &queries {
        let names = metric_names(query);
        let missing: Vec<_> =
            names.iter().filter(|n| !scraped.contains(*n) && !NOT_OURS.contains(&n.as_str())).collect();
        if !missing.is_empty() {
            problems.push(format!("{place}: metrics not in the scrape {missing:?}: {query}"));
        }
        match prom.query(query) {
            Err(e) => problems.push(format!("{place}: Prometheus refuses it ({e}): {query}")),
            Ok(result) => {
                if *panel && result.is_empty() {
                    problems.push(format!("{place}: no series (the panel would say \"No data\"): {query}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));

    // Prometheus evaluates every alert without error.
    let rules = wait_for("Prometheus to evaluate the chart's alerts", Duration::from_secs(30), || {
        let rules: Vec<_> =
            prom.rule_groups().iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect();
        let evaluated = rules.len() == alerts.len()
            && rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")));
        evaluated.then_some(rules)
    });
    for r in &rules {
        assert_eq!(r["health"], "ok", "alert {}: {} ({})", r["name"], r["lastError"], prom.log_tail());
    }
    println!(
        "{} alerts and {} dashboard queries ran on Prometheus over {} metric names",
        alerts.len(),
        queries.len() - alerts.len(),
        scraped.len()
    );
}

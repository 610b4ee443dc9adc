//! Docker Hub's pull budget (issue 24, items 1 and 2) against a real `docker-registry` behind a relay that answers
//! like Docker Hub (`ratelimit-limit`, `ratelimit-remaining`, 429 once spent; tests/common/ratelimit_relay.rs): the
//! budget an answer states is in the gauges; while it is at or below `rateLimitReserve`, `load` of an image list and
//! the preload make no manifest GET (a cached image is taken as it is), a client's pull still goes out, and the
//! background work goes on once a later answer shows budget again or the window has passed.

mod common;

use std::thread;
use std::time::Duration;

use common::admin::server_with_admin;
use common::commands::ociregistry;
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::ratelimit_relay::RateLimitRelay;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, wait_for, TestDir};

fn scrape(port: u16) -> Scrape {
    Scrape::fetch(&format!("http://127.0.0.1:{port}/metrics"))
}

fn gauge(port: u16, name: &str) -> f64 {
    scrape(port).sum(name, &[("ns", "docker.io")])
}

#[test]
fn a_load_keeps_the_reserve_for_clients_and_goes_on_when_the_budget_shows_again() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-budget");
    let [first, cached, held, client, later] = ["first", "cached", "held", "client", "later"]
        .map(|name| images::custom(&up, &dir.subdir(name), &format!("library/{name}:v1"), &[1_000]));
    let relay = RateLimitRelay::start(&up.url(), 100, 21_600);
    let metrics = free_port();
    let config = ServerConfig::for_upstream(&relay.url()).extra(&format!("metrics: {metrics}"));
    let (server, _admin) = server_with_admin(config, &dir);
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_reserve"), 5.0, "the default reserve, from the start");
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_deferred_total"), 0.0);
    assert!(!scrape(metrics).declares("ociregistry_upstream_ratelimit_remaining"), "nothing stated yet");
    skopeo::pull_verified(&server.url(), &cached, &cached.reference(), &dir.path().join("pull-cached"));
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_limit"), 100.0);
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_remaining"), relay.remaining() as f64);
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_window_seconds"), 21_600.0);

    // Four left: the first image's manifest GET leaves three, at or below the reserve. The cached image needs no GET;
    // the next one waits.
    relay.set_remaining(4);
    let list = dir.path().join("images.txt");
    let names = [&first, &cached, &held].map(|i| i.reference()).join("\n");
    std::fs::write(&list, format!("{names}\n")).expect("write the list");
    let config_file = server.config_file().to_path_buf();
    let list_arg = list.display().to_string();
    let load = thread::spawn(move || ociregistry(&config_file, &["load", "--image-file", &list_arg]));
    wait_for("the load to wait for the budget", Duration::from_secs(30), || {
        (gauge(metrics, "ociregistry_upstream_ratelimit_deferred_total") == 1.0).then_some(())
    });
    let gets = relay.manifest_gets();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(relay.manifest_gets(), gets, "the held load made a manifest GET");
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_remaining"), 3.0);
    assert!(!load.is_finished(), "the load did not wait");

    // A client's pull goes out all the same (and leaves two: still held).
    skopeo::pull_verified(&server.url(), &client, &client.reference(), &dir.path().join("pull-client"));
    assert_eq!(relay.remaining(), 2);
    thread::sleep(Duration::from_millis(1500));
    assert!(!load.is_finished(), "two left is still at or below the reserve");

    // The budget is back: the next answer (a client's pull) says so, and the load goes on.
    relay.set_remaining(50);
    skopeo::pull_verified(&server.url(), &later, &later.reference(), &dir.path().join("pull-later"));
    let ran = load.join().expect("the load thread");
    assert!(ran.ok, "load failed ({:?}):\n{}\n{}", ran.code, ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("loaded 3 image(s)"), "{}", ran.stdout);
    let waiting: Vec<_> = ran.stderr.lines().filter(|l| l.contains("waiting")).collect();
    assert_eq!(waiting.len(), 1, "said once:\n{}", ran.stderr);
    assert!(
        waiting[0].contains(&held.reference()) && waiting[0].contains("3 pulls left, at or below rateLimitReserve 5"),
        "{}",
        waiting[0]
    );
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_deferred_total"), 1.0);
    let logged = server.logs().matches("waits: docker.io has 3 pulls left").count();
    assert_eq!(logged, 1, "logged once:\n{}", server.log_tail());
}

#[test]
fn the_preload_waits_out_a_short_window_and_ready_says_why() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-budget-window");
    let [first, second] =
        ["first", "second"].map(|name| images::custom(&up, &dir.subdir(name), &format!("library/{name}:v1"), &[1_000]));
    // A window of 4 s: the preload's first GET leaves 3, the second image waits for the window, then goes.
    let relay = RateLimitRelay::start(&up.url(), 10, 4);
    relay.set_remaining(4);
    let list = dir.path().join("images.txt");
    std::fs::write(&list, format!("{}\n{}\n", first.reference(), second.reference())).expect("write the list");
    let health = free_port();
    let config =
        ServerConfig::for_upstream(&relay.url()).extra(&format!("health: {health}\npreloadImages: {}", list.display()));
    let server = Server::start_with(config);
    let ready = format!("http://127.0.0.1:{health}/ready");
    let body = wait_for("/ready to say the preload waits", Duration::from_secs(30), || {
        let body = common::http::client().get(&ready).send().ok()?.text().ok()?;
        body.contains("waiting").then_some(body)
    });
    assert!(body.contains("preload running: 1 of 2 images loaded"), "{body}");
    assert!(body.contains(&second.reference()) && body.contains("at or below rateLimitReserve 5"), "{body}");
    let body = wait_for("the preload to go on after the window", Duration::from_secs(30), || {
        let body = common::http::client().get(&ready).send().ok()?.text().ok()?;
        body.contains("preload done").then_some(body)
    });
    assert!(body.contains("2 of 2 images loaded, 0 failed"), "{body}");
    assert!(!body.contains("waiting"), "{body}");
    assert_eq!(relay.manifest_gets(), 2, "one GET each, the second after the window");
    drop(server);
}

#[test]
fn a_remaining_count_that_does_not_parse_is_ignored_and_logged_once() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-budget-garbled");
    let [a, b] = ["a", "b"].map(|name| images::custom(&up, &dir.subdir(name), &format!("library/{name}:v1"), &[1_000]));
    let relay = RateLimitRelay::start(&up.url(), 100, 60);
    relay.set_remaining(2);
    let metrics = free_port();
    let server = Server::start_with(ServerConfig::for_upstream(&relay.url()).extra(&format!("metrics: {metrics}")));
    skopeo::pull_verified(&server.url(), &a, &a.reference(), &dir.path().join("a"));
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_remaining"), 1.0, "a good answer first");
    relay.garble_remaining("plenty");
    relay.set_remaining(50);
    skopeo::pull_verified(&server.url(), &b, &b.reference(), &dir.path().join("b"));
    skopeo::pull_verified(&server.url(), &a, &a.digest_reference(), &dir.path().join("a-again"));
    assert_eq!(gauge(metrics, "ociregistry_upstream_ratelimit_remaining"), 1.0, "the garbled value changed nothing");
    let logs = server.logs();
    assert_eq!(logs.matches("ignoring RateLimit-Remaining").count(), 1, "logged once:\n{}", server.log_tail());
    assert!(logs.contains("plenty"), "the value is named:\n{}", server.log_tail());
}

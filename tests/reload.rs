//! Changing the configuration of a running Ember: only what changed is touched, ingress never
//! refuses because of it, no acknowledged event is lost, none is delivered twice by the switch.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post, request};
use http::{Method, StatusCode};

fn broker(name: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\n\
         metadata: {{name: {name}, annotations: {{{annotations}}}}}\n"
    )
}

fn trigger(name: &str, broker: &str, ty: &str, sub: &Subscriber) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\n\
         spec:\n  broker: {broker}\n  filter: {{attributes: {{type: {ty}}}}}\n  \
         subscriber: {{uri: \"{}\"}}\n",
        sub.uri()
    )
}

/// The ids a subscriber received, with how many times each.
fn counts(sub: &Subscriber) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in sub.ids() {
        *out.entry(id).or_default() += 1;
    }
    out
}

fn id(i: usize) -> String {
    format!("e{i:05}")
}

/// Sends events `e00000`, `e00001`, ... of type `a` until `stop`, every one checked for 202;
/// returns how many were sent.
fn stream(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = post(&url, &binary_event(&id(i), "a"), "x").await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "event {i}: {:?}", r.body);
            i += 1;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        i
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_added_changed_and_removed_under_a_steady_stream() {
    let (kept, changed_before, changed_after, removed, added, other) = (
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
    );
    let before = [
        broker("default", ""),
        trigger("kept", "default", "a", &kept),
        trigger("changed", "default", "a", &changed_before),
        trigger("removed", "default", "a", &removed),
    ]
    .concat();
    let mut ember = TestEmber::start(&before).await;
    let url = ember.url("/default/default");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = stream(url.clone(), stop.clone());
    assert!(eventually(Duration::from_secs(10), || kept.count() > 200).await);

    let after = [
        broker("default", ""),
        trigger("kept", "default", "a", &kept),
        trigger("changed", "default", "a", &changed_after),
        trigger("added", "default", "a", &added),
        broker("second", ""),
        trigger("other", "second", "a", &other),
    ]
    .concat();
    let diff = ember
        .reload(&after)
        .await
        .expect("the new configuration applies");
    assert_eq!(
        diff,
        "added Broker default/second, added Trigger default/added, added Trigger default/other, \
         changed Trigger default/changed, removed Trigger default/removed"
    );
    // The new broker takes events at once.
    let r = post(&ember.url("/default/second"), &binary_event("s1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || other.count() == 1).await);

    let mark = kept.count();
    assert!(eventually(Duration::from_secs(10), || kept.count() > mark + 200).await);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await.unwrap();
    let all: BTreeSet<String> = (0..sent).map(id).collect();
    assert!(
        eventually(Duration::from_secs(20), || kept.count() >= sent
            && changed_before.count() + changed_after.count() >= sent)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The unchanged trigger saw every event exactly once.
    let k = counts(&kept);
    assert_eq!(k.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(k.values().all(|&n| n == 1), "kept: duplicates");
    // The changed trigger kept its position: before and after the switch, every event exactly
    // once between its two subscribers.
    let mut c = counts(&changed_before);
    for (id, n) in counts(&changed_after) {
        *c.entry(id).or_default() += n;
    }
    assert_eq!(c.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(
        c.values().all(|&n| n == 1),
        "changed: an event delivered twice by the switch"
    );
    assert!(changed_after.count() > 0);
    // The removed trigger stopped; the added one received a suffix of the stream, without gaps.
    let r = removed.ids();
    assert!(r.len() < sent, "the removed trigger stopped");
    let a: Vec<String> = counts(&added).into_keys().collect();
    assert!(!a.is_empty());
    let first: usize = a[0][1..].parse().unwrap();
    assert_eq!(a, (first..sent).map(id).collect::<Vec<_>>());
    // Its cursor is gone with it; the rest stay.
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.pending_events("removed"), None);
    assert_eq!(broker.pending_events("added"), Some(0));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_leaves_the_running_one_in_place() {
    let sub = Subscriber::start().await;
    let config = [broker("default", ""), trigger("t", "default", "a", &sub)].concat();
    let mut ember = TestEmber::start(&config).await;
    let bad = format!(
        "{config}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: u}}\nspec: {{broker: default, filters: [{{cesql: \"type = \"}}], subscriber: {{uri: \"http://127.0.0.1:1/\"}}}}\n"
    );
    let err = ember.reload(&bad).await.expect_err("refused");
    assert!(
        err.contains("Trigger default/u") && err.contains("spec.filters[0]"),
        "{err}"
    );
    let r = post(&ember.url("/default/default"), &binary_event("x1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_broker_answers_404_and_keeps_its_data() {
    let sub = Subscriber::start().await;
    let with = [
        broker("default", ""),
        broker("gone", ""),
        trigger("t", "gone", "a", &sub),
    ]
    .concat();
    let mut ember = TestEmber::start(&with).await;
    let url = ember.url("/default/gone");
    for i in 0..5 {
        post(&url, &binary_event(&format!("g{i}"), "a"), "").await;
    }
    assert!(eventually(Duration::from_secs(10), || sub.count() == 5).await);
    let log_dir = ember.data_dir.path().join("brokers/default/gone");
    ember.reload(&broker("default", "")).await.unwrap();
    let r = post(&url, &binary_event("late", "a"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        log_dir.exists(),
        "a removed broker's data is never deleted implicitly"
    );
    // Back again: its log is where it was, and its trigger resumes where it stopped.
    ember.reload(&with).await.unwrap();
    let r = post(&url, &binary_event("back", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 6).await);
    assert_eq!(sub.ids().last().map(String::as_str), Some("back"));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_settings_change_without_losing_events() {
    let sub = Subscriber::start().await;
    let before = [
        broker("default", "ember.dev/max-event-bytes: \"100\""),
        trigger("t", "default", "a", &sub),
    ]
    .concat();
    let mut ember = TestEmber::start(&before).await;
    let url = ember.url("/default/default");
    let big = "x".repeat(500);
    let r = post(&url, &binary_event("small", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        post(&url, &binary_event("big", "a"), big.clone())
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let after = [
        broker(
            "default",
            "ember.dev/max-event-bytes: \"1Ki\", ember.dev/durability: none, ember.dev/segment-bytes: \"4Ki\"",
        ),
        trigger("t", "default", "a", &sub),
    ]
    .concat();
    assert_eq!(
        ember.reload(&after).await.unwrap(),
        "changed Broker default/default"
    );
    assert_eq!(
        post(&url, &binary_event("big", "a"), big).await.status,
        StatusCode::ACCEPTED
    );
    for i in 0..40 {
        post(&url, &binary_event(&format!("n{i}"), "a"), "").await;
    }
    assert!(eventually(Duration::from_secs(10), || sub.count() == 42).await);
    let settings = ember
        .ember
        .broker("default", "default")
        .unwrap()
        .log()
        .settings();
    assert_eq!(settings.segment_bytes, 4096);
    ember.stop().await;
}

/// The binary itself: a saved file and SIGHUP both reload; an invalid file is reported as
/// `ember validate` reports it and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ember_run_watches_its_files_and_reloads_on_sighup() {
    let first = Subscriber::start().await;
    let second = Subscriber::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("ember.yaml");
    std::fs::write(
        &file,
        [broker("default", ""), trigger("t", "default", "a", &first)].concat(),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(common::ember_bin())
        .args(["run", "-f", file.to_str().unwrap(), "--data-dir"])
        .arg(data.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(ready);
    let url = format!("{base}/default/default");
    post(&url, &binary_event("one", "a"), "").await;
    assert!(eventually(Duration::from_secs(10), || first.count() == 1).await);

    // An invalid file: reported, nothing changes.
    std::fs::write(&file, "kind: Nope\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    post(&url, &binary_event("two", "a"), "").await;
    assert!(eventually(Duration::from_secs(10), || first.count() == 2).await);

    // A saved file: the trigger now delivers to the second subscriber.
    std::fs::write(
        &file,
        [broker("default", ""), trigger("t", "default", "a", &second)].concat(),
    )
    .unwrap();
    let switched = eventually(Duration::from_secs(10), || {
        futures_block(post(&url, &binary_event("probe", "a"), ""));
        second.count() > 0
    })
    .await;
    assert!(switched, "the saved file was applied");

    // SIGHUP re-reads the same files (nothing changed: nothing is touched).
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = request(Method::GET, &format!("{base}/readyz"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(out.0.success(), "{}", out.1);
    let stderr = out.1;
    assert!(
        stderr.contains("configuration not applied") && stderr.contains("Ember does not run Nope"),
        "{stderr}"
    );
    assert!(stderr.contains("changed Trigger default/t"), "{stderr}");
    assert!(stderr.contains("no changes"), "{stderr}");
}

/// Runs a future to completion from synchronous code inside a multi-threaded runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

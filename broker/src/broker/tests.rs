use std::time::Duration;

use super::*;
use crate::delivery::{BrokerDirectory, http_client};
use ember_event::{CloudEvent, CloudEventExt as _};

fn config(data_dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        namespace: "default".into(),
        name: "default".into(),
        data_dir: data_dir.to_owned(),
        durability: Durability::None,
        segment_bytes: 64 << 20,
        retention: Duration::from_secs(3600),
        max_event_bytes: 1 << 20,
        queue_capacity: 64,
        disk_budget: None,
    }
}

/// A trigger whose filter no event of these tests matches.
fn trigger(name: &str) -> TriggerConfig {
    TriggerConfig {
        name: name.into(),
        filter: ember_triggers::TriggerFilter::compile([("type", "wanted")], &[]).unwrap(),
        subscriber: crate::delivery::Destination::Http("http://127.0.0.1:9/".parse().unwrap()),
        policy: Default::default(),
        format: Default::default(),
        max_in_flight: 8,
        ordered: false,
        dead_letter: None,
        retry_after_max: Duration::from_secs(1),
        subscriber_limit: None,
    }
}

async fn append(broker: &Broker, n: u64) {
    let record = CloudEvent {
        id: "e".into(),
        source: "test".into(),
        spec_version: "1.0".into(),
        r#type: "unwanted".into(),
        ..Default::default()
    }
    .encode_to_bytes();
    let mut left = n;
    while left > 0 {
        let batch = left.min(4096);
        broker
            .append(vec![record.clone(); batch as usize])
            .await
            .unwrap();
        left -= batch;
    }
}

fn position(broker: &Broker, trigger: &str) -> u64 {
    broker
        .trigger_states()
        .into_iter()
        .find(|t| t.name == trigger)
        .map(|t| t.position)
        .unwrap()
}

#[tokio::test]
async fn triggers_near_the_end_share_the_fanout_and_one_far_behind_catches_up_alone() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(data.path()), vec![trigger("far")]).unwrap();
    let end = FANOUT_REWIND + 100;
    append(&broker, end).await;
    broker.close().await.unwrap();
    drop(broker);
    // After a crash: `near` had written its cursor a little before the end.
    let cursors = CursorStore::open(&data.path().join("brokers/default/default")).unwrap();
    cursors.store(&[("near", end - 50)]).unwrap();
    drop(cursors);

    let triggers = vec![trigger("far"), trigger("near"), trigger("new")];
    let broker = Broker::open(config(data.path()), triggers).unwrap();
    assert_eq!(position(&broker, "far"), 0);
    assert_eq!(position(&broker, "near"), end - 50);
    assert_eq!(position(&broker, "new"), end);
    let (stop, shutdown) = watch::channel(false);
    let tasks = broker.start(
        &http_client(),
        &BrokerDirectory::default(),
        &shutdown,
        Duration::from_secs(1),
    );
    // Nothing has run yet (one thread): the fan-out starts at `near`, which it serves with
    // `new`; `far` reads on its own.
    let live = |name: &str| {
        broker
            .triggers
            .find(name)
            .is_some_and(|t| t.lane.is_live() && t.lane.is_attached())
    };
    assert!(live("near") && live("new"));
    assert!(!live("far"));

    // Every trigger reaches the end: the events match none of them.
    let all_at_end = || {
        ["far", "near", "new"]
            .iter()
            .all(|t| position(&broker, t) == end)
    };
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while !all_at_end() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    reached.await.expect("every trigger reaches the end");
    assert_eq!(broker.detachments("near"), Some(0));

    // A clean shutdown writes every position that moved, idle triggers' too.
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    broker.close().await.unwrap();
    drop(broker);
    let broker = Broker::open(config(data.path()), vec![trigger("far"), trigger("near")]).unwrap();
    assert_eq!(position(&broker, "far"), end);
    assert_eq!(position(&broker, "near"), end);
}

#[tokio::test]
async fn triggers_added_while_events_arrive_start_where_the_fanout_reads() {
    let data = tempfile::tempdir().unwrap();
    let broker = Arc::new(Broker::open(config(data.path()), vec![trigger("old")]).unwrap());
    append(&broker, 1000).await;
    let (stop, shutdown) = watch::channel(false);
    let tasks = broker.start(
        &http_client(),
        &BrokerDirectory::default(),
        &shutdown,
        Duration::from_secs(1),
    );
    // Events keep arriving while the triggers are added, so the fan-out reads past the end
    // the change saw: the new triggers start where it reads, with no catch-up of their own.
    let feeding = {
        let broker = broker.clone();
        tokio::spawn(async move {
            loop {
                append(&broker, 16).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let end_before = broker.end_offset();
    let add = (0..200).map(|i| trigger(&format!("new{i}"))).collect();
    broker
        .change_triggers(TriggerChanges {
            add,
            ..Default::default()
        })
        .await
        .unwrap();
    feeding.abort();
    for i in 0..200 {
        let t = broker.triggers.find(&format!("new{i}")).unwrap();
        assert!(
            t.lane.is_live() && t.lane.is_attached(),
            "new{i} reads its lane"
        );
        assert!(t.lane.start() >= end_before);
        assert_eq!(
            broker.cursors().load(&format!("new{i}")),
            Some(t.lane.start())
        );
    }
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    broker.close().await.unwrap();
}

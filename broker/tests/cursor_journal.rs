//! The cursor journal across crashes, and a broker's cursors across restarts and upgrades.
//!
//! A crash in the middle of a cursor write leaves part of that write at the journal's tail (or
//! garbage where the file system had not written it yet). Reopening must give every trigger
//! either its last durable cursor or a value from the interrupted write — never a value nobody
//! wrote, never no cursor for a trigger that had one — and later writes must land after the
//! intact prefix.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use ember_broker::broker::{Broker, BrokerConfig};
use ember_broker::cursor::{CursorStore, JOURNAL};
use ember_broker::dispatch::TriggerConfig;
use ember_broker::log::Durability;
use ember_event::CloudEventExt as _;
use proptest::collection::vec;
use proptest::prelude::*;

const TRIGGERS: [&str; 6] = ["orders", "audit", "billing", "a/b", "ünï", "x"];

/// A cursor write: `(trigger index, offset)` pairs.
type Batch = Vec<(usize, u64)>;

fn names(batch: &Batch) -> Vec<(&'static str, u64)> {
    batch.iter().map(|&(t, o)| (TRIGGERS[t], o)).collect()
}

fn batch() -> impl Strategy<Value = Batch> {
    vec((0..TRIGGERS.len(), 0u64..1_000_000), 1..6)
}

#[derive(Debug, Clone)]
enum Tail {
    /// Nothing after the cut.
    Nothing,
    /// Zeros, as a file system may show for data it had not written at the crash.
    Zeros(usize),
    /// Arbitrary bytes.
    Garbage(Vec<u8>),
    /// One byte of what reached the disk of the torn write damaged (an unwritten sector
    /// holding older data).
    Flip(prop::sample::Index, u8),
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        Just(Tail::Nothing),
        (1usize..200).prop_map(Tail::Zeros),
        vec(any::<u8>(), 1..200).prop_map(Tail::Garbage),
        (any::<prop::sample::Index>(), 1u8..).prop_map(|(at, mask)| Tail::Flip(at, mask)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_write_torn_by_a_crash_never_loses_or_invents_a_cursor(
        durable in vec(batch(), 0..8),
        torn in batch(),
        cut in any::<prop::sample::Index>(),
        tail in tail(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::open(dir.path()).unwrap();
        let mut model: HashMap<&str, u64> = HashMap::new();
        for b in &durable {
            store.store(&names(b)).unwrap();
            model.extend(names(b));
        }
        let before = fs::read(store.path()).unwrap();
        store.store(&names(&torn)).unwrap();
        drop(store);
        // The crash: only part of the last write reached the disk, then maybe garbage.
        let full = fs::read(dir.path().join(JOURNAL)).unwrap();
        prop_assert!(full.starts_with(&before));
        let kept = before.len() + cut.index(full.len() - before.len() + 1);
        let mut file = full[..kept].to_vec();
        match &tail {
            Tail::Nothing => {}
            Tail::Zeros(n) => file.resize(kept + n, 0),
            Tail::Garbage(bytes) => file.extend_from_slice(bytes),
            Tail::Flip(_, _) if kept == before.len() => {}
            Tail::Flip(at, mask) => file[before.len() + at.index(kept - before.len())] ^= mask,
        }
        fs::write(dir.path().join(JOURNAL), &file).unwrap();

        let store = CursorStore::open(dir.path()).unwrap();
        let known = TRIGGERS.iter().filter(|t| store.load(t).is_some()).count();
        prop_assert_eq!(store.len(), known, "a cursor for a name nobody wrote");
        for trigger in TRIGGERS {
            let got = store.load(trigger);
            let durable_value = model.get(trigger).copied();
            let torn_values: Vec<u64> = names(&torn)
                .into_iter()
                .filter(|(t, _)| *t == trigger)
                .map(|(_, o)| o)
                .collect();
            prop_assert!(
                got == durable_value || got.is_some_and(|v| torn_values.contains(&v)),
                "{trigger}: {got:?}, durable {durable_value:?}, torn write {torn_values:?}"
            );
        }
        if kept == full.len() && matches!(tail, Tail::Nothing | Tail::Zeros(_) | Tail::Garbage(_)) {
            let mut all = model.clone();
            all.extend(names(&torn));
            for (trigger, offset) in all {
                prop_assert_eq!(store.load(trigger), Some(offset));
            }
        }
        // Writing on lands after the intact prefix and reads back.
        store.store(&[("after", 7)]).unwrap();
        drop(store);
        let store = CursorStore::open(dir.path()).unwrap();
        prop_assert_eq!(store.load("after"), Some(7));
        prop_assert!(fs::metadata(store.path()).unwrap().len() <= full.len() as u64 + 30);
    }
}

#[test]
fn a_torn_tail_is_cut_and_the_cursors_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = CursorStore::open(dir.path()).unwrap();
    store.store(&[("orders", 10), ("audit", 20)]).unwrap();
    let intact = fs::metadata(store.path()).unwrap().len();
    store.store(&[("orders", 11), ("audit", 21)]).unwrap();
    drop(store);
    // A crash half-way through the second write.
    let path = dir.path().join(JOURNAL);
    let written = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(intact + (written - intact) / 2 - 3).unwrap();
    drop(file);

    let store = CursorStore::open(dir.path()).unwrap();
    let orders = store.load("orders");
    assert!(matches!(orders, Some(10 | 11)), "{orders:?}");
    assert_eq!(store.load("audit"), Some(20), "its record was torn");
    assert!(
        fs::metadata(&path).unwrap().len() < intact + (written - intact) / 2,
        "the torn record is cut"
    );
    store.store(&[("audit", 22)]).unwrap();
    drop(store);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0; 64]).unwrap(); // and a zero-filled tail this time
    drop(f);
    let store = CursorStore::open(dir.path()).unwrap();
    assert_eq!(store.load("audit"), Some(22));
}

fn broker_config(data_dir: &Path) -> BrokerConfig {
    BrokerConfig {
        namespace: "default".into(),
        name: "default".into(),
        data_dir: data_dir.to_owned(),
        durability: Durability::Fsync,
        segment_bytes: 1 << 20,
        retention: Duration::from_secs(3600),
        max_event_bytes: 1 << 20,
        queue_capacity: 64,
        disk_budget: None,
    }
}

fn trigger(name: &str) -> TriggerConfig {
    TriggerConfig {
        name: name.into(),
        filter: ember_triggers::TriggerFilter::compile(std::iter::empty::<(&str, &str)>(), &[])
            .unwrap(),
        subscriber: ember_broker::delivery::Destination::Http(
            "http://127.0.0.1:9/".parse().unwrap(),
        ),
        policy: Default::default(),
        format: Default::default(),
        max_in_flight: 8,
        ordered: false,
        dead_letter: None,
        retry_after_max: Duration::from_secs(1),
        subscriber_limit: None,
    }
}

fn positions(broker: &Broker) -> HashMap<String, u64> {
    broker
        .trigger_states()
        .into_iter()
        .map(|t| (t.name.to_owned(), t.position))
        .collect()
}

async fn append(broker: &Broker, n: usize) {
    for i in 0..n {
        let event = ember_event::CloudEvent {
            id: format!("e{i}"),
            source: "test".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            ..Default::default()
        };
        broker.append(vec![event.encode_to_bytes()]).await.unwrap();
    }
}

#[tokio::test]
async fn triggers_added_later_start_at_the_end_and_the_others_keep_their_place() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::open(broker_config(data.path()), vec![trigger("first")]).unwrap();
    append(&broker, 5).await;
    broker.close().await.unwrap();
    drop(broker);

    let triggers = vec![trigger("first"), trigger("second"), trigger("third")];
    let broker = Broker::open(broker_config(data.path()), triggers).unwrap();
    let at = positions(&broker);
    assert_eq!(at["first"], 0, "it has five events to deliver");
    assert_eq!(
        at["second"], 5,
        "a new trigger receives what comes from now on"
    );
    assert_eq!(at["third"], 5);
    let dir = data.path().join("brokers/default/default");
    let files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.contains(&JOURNAL.to_owned()), "{files:?}");
    assert!(!dir.join("cursors").exists(), "no file per trigger");
    broker.close().await.unwrap();
}

/// An earlier version's cursor file: `EMBRCUR1`, the offset, a CRC-32C of both.
fn old_cursor_file(dir: &Path, file_name: &str, offset: u64) {
    let mut bytes = b"EMBRCUR1".to_vec();
    bytes.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file_name), bytes).unwrap();
}

#[tokio::test]
async fn an_upgrade_keeps_every_trigger_where_it_was() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::open(broker_config(data.path()), vec![]).unwrap();
    append(&broker, 10).await;
    broker.close().await.unwrap();
    drop(broker);
    // The layout of an earlier version: one file per trigger, names escaped.
    let dir = data.path().join("brokers/default/default");
    fs::remove_file(dir.join(JOURNAL)).unwrap();
    old_cursor_file(&dir.join("cursors"), "orders.cursor", 4);
    old_cursor_file(&dir.join("cursors"), "my%2Etrigger.cursor", 7);

    let triggers = vec![trigger("orders"), trigger("my.trigger"), trigger("new")];
    let broker = Broker::open(broker_config(data.path()), triggers).unwrap();
    let at = positions(&broker);
    assert_eq!(at["orders"], 4);
    assert_eq!(at["my.trigger"], 7);
    assert_eq!(at["new"], 10);
    assert!(!dir.join("cursors").exists(), "the old files are removed");
    broker.close().await.unwrap();
    drop(broker);

    let broker = Broker::open(broker_config(data.path()), vec![trigger("orders")]).unwrap();
    assert_eq!(positions(&broker)["orders"], 4, "kept in the journal");
    broker.close().await.unwrap();
}

use super::*;

fn open(dir: &tempfile::TempDir) -> CursorStore {
    CursorStore::open(dir.path()).unwrap()
}

fn journal_len(store: &CursorStore) -> u64 {
    fs::metadata(store.path()).unwrap().len()
}

#[test]
fn new_triggers_start_at_the_end_and_known_ones_where_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    assert!(cursors.is_empty());
    assert_eq!(cursors.load("orders"), None);
    assert_eq!(cursors.resume(&["orders", "audit"], 10).unwrap(), [10, 10]);
    cursors.store(&[("orders", 7)]).unwrap();
    drop(cursors);

    let cursors = open(&dir);
    assert_eq!(
        cursors.resume(&["audit", "orders", "billing"], 20).unwrap(),
        [10, 7, 20],
        "the new trigger starts at the end; the others keep their cursors"
    );
    drop(cursors);
    assert_eq!(
        open(&dir).load("billing"),
        Some(20),
        "written before resume returned"
    );
}

#[test]
fn a_cursor_beyond_the_end_resumes_at_the_end_and_is_written_so() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    cursors.store(&[("orders", 100), ("audit", 30)]).unwrap();
    // Recovery cut the log back to 40 events.
    assert_eq!(cursors.resume(&["orders", "audit"], 40).unwrap(), [40, 30]);
    drop(cursors);
    // Events 40.. appended after the restart must not be skipped after the next one.
    assert_eq!(open(&dir).load("orders"), Some(40));
}

#[test]
fn stored_positions_survive_reopening_whatever_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    let names = ["../escape", "a/b", "A", "a", "a.b", "ünï", "with space\n"];
    let positions: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u64))
        .collect();
    cursors.store(&positions).unwrap();
    cursors.store(&[("a", 42), ("max", u64::MAX)]).unwrap();
    drop(cursors);
    let cursors = open(&dir);
    assert_eq!(cursors.len(), names.len() + 1);
    assert_eq!(cursors.load("a"), Some(42));
    assert_eq!(cursors.load("A"), Some(2));
    assert_eq!(cursors.load("with space\n"), Some(6));
    assert_eq!(cursors.load("max"), Some(u64::MAX));
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [JOURNAL], "one file for every cursor");
}

#[test]
fn every_cursor_of_a_store_goes_in_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    let names: Vec<String> = (0..1000).map(|i| format!("trigger-{i}")).collect();
    let positions: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 5)).collect();
    let before = journal_len(&cursors);
    cursors.store(&positions).unwrap();
    let expected: u64 = names.iter().map(|n| record_len(n)).sum();
    assert_eq!(journal_len(&cursors) - before, expected);
    assert_eq!(cursors.store(&[]).ok(), Some(()));
    assert_eq!(journal_len(&cursors) - before, expected, "nothing to write");
}

#[test]
fn a_removed_cursor_is_gone_after_reopening_and_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    cursors.store(&[("orders", 5), ("audit", 6)]).unwrap();
    cursors.remove(&["orders", "never-there"]).unwrap();
    assert_eq!(cursors.load("orders"), None);
    let len = journal_len(&cursors);
    cursors.remove(&["orders"]).unwrap();
    assert_eq!(
        journal_len(&cursors),
        len,
        "removing what is gone writes nothing"
    );
    drop(cursors);
    let cursors = open(&dir);
    assert_eq!(cursors.load("orders"), None);
    assert_eq!(cursors.load("audit"), Some(6));
    // A trigger added back later starts afresh.
    assert_eq!(cursors.resume(&["orders"], 9).unwrap(), [9]);
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    let len = journal_len(&cursors);
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    for bad in ["", long.as_str()] {
        let err = cursors.store(&[("fine", 1), (bad, 2)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
    assert_eq!(journal_len(&cursors), len);
    assert_eq!(cursors.load("fine"), None);
    cursors
        .store(&[(&"y".repeat(MAX_NAME_BYTES), 3)])
        .expect("the longest name is fine");
}

#[test]
fn a_failed_write_is_cut_off_claims_nothing_and_later_writes_work() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    cursors.store(&[("orders", 1), ("audit", 1)]).unwrap();
    let intact = fs::read(cursors.path()).unwrap();

    // The disk fills up mid-write: half the records reach the file.
    cursors.fail_next_writes(2);
    let err = cursors.store(&[("orders", 5), ("audit", 5)]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert!(err.to_string().contains(JOURNAL), "{err}");
    assert!(cursors.resume(&["billing"], 9).is_err());
    assert_eq!(
        fs::read(cursors.path()).unwrap(),
        intact,
        "the partial write is cut"
    );
    assert_eq!(
        cursors.load("orders"),
        Some(1),
        "a failed write is not claimed"
    );
    assert_eq!(cursors.load("billing"), None);

    // Space again: the positions are stored again, and everything reads back.
    cursors.store(&[("orders", 6), ("audit", 6)]).unwrap();
    assert_eq!(cursors.resume(&["billing"], 9).unwrap(), [9]);
    drop(cursors);
    let cursors = open(&dir);
    assert_eq!(cursors.load("orders"), Some(6));
    assert_eq!(cursors.load("audit"), Some(6));
    assert_eq!(cursors.load("billing"), Some(9));
    let inner = cursors.lock();
    assert_eq!(
        inner.journal.len,
        HEADER_LEN as u64
            + 2 * (record_len("orders") + record_len("audit"))
            + record_len("billing"),
        "the written groups, nothing of the failed ones"
    );
}

#[test]
fn the_journal_is_compacted_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    let names: Vec<String> = (0..100).map(|i| format!("trigger-{i}")).collect();
    let mut largest = 0;
    for round in 0..2000u64 {
        let positions: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), round)).collect();
        cursors.store(&positions).unwrap();
        largest = largest.max(journal_len(&cursors));
    }
    let one_round: u64 = names.iter().map(|n| record_len(n)).sum();
    assert!(
        2000 * one_round > 4 * COMPACT_MIN_BYTES,
        "the test writes enough"
    );
    assert!(
        largest <= COMPACT_MIN_BYTES + one_round,
        "{largest} bytes at most"
    );
    assert!(!dir.path().join(TMP).exists());
    drop(cursors);
    let cursors = open(&dir);
    assert_eq!(cursors.len(), 100);
    assert!(names.iter().all(|n| cursors.load(n) == Some(1999)));
}

#[test]
fn a_failed_compaction_leaves_the_journal_as_it_was_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = open(&dir);
    let name = "t".repeat(1000);
    cursors.lock().journal.fail_compactions = 1;
    let mut grew_past = false;
    let mut offset = 0;
    loop {
        offset += 1;
        let before = journal_len(&cursors);
        cursors.store(&[(&name, offset)]).unwrap();
        let after = journal_len(&cursors);
        if after < before {
            break; // compacted
        }
        // The first compaction fails: the journal is kept as it was, and grows on.
        grew_past |= after > COMPACT_MIN_BYTES;
        assert!(!dir.path().join(TMP).exists(), "the temp file is removed");
    }
    assert!(grew_past, "the failed compaction left the journal whole");
    assert_eq!(cursors.lock().journal.fail_compactions, 0);
    assert_eq!(
        journal_len(&cursors),
        (HEADER_LEN as u64) + record_len(&name)
    );
    drop(cursors);
    assert_eq!(open(&dir).load(&name), Some(offset));
}

#[test]
fn a_torn_header_is_an_error_naming_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let path = dir.path().join(JOURNAL);
    for bad in [
        &b""[..],
        b"EMBRCU",
        b"EMBRCURJ\x02\x00\x00\x00",
        b"something else",
    ] {
        fs::write(&path, bad).unwrap();
        let err = CursorStore::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(JOURNAL), "{err}");
    }
}

#[test]
fn a_leftover_temp_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).store(&[("orders", 3)]).unwrap();
    fs::write(dir.path().join(TMP), b"half a compaction").unwrap();
    let cursors = open(&dir);
    assert_eq!(cursors.load("orders"), Some(3));
    assert!(!dir.path().join(TMP).exists());
}

#[test]
fn the_cursor_files_of_an_earlier_version_move_into_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join(LEGACY_DIR);
    legacy::write(&old, "orders", 42);
    legacy::write(&old, "../odd name", 7);
    fs::write(old.join("orders.cursor.1.tmp"), b"").unwrap();
    let cursors = open(&dir);
    assert_eq!(cursors.load("orders"), Some(42));
    assert_eq!(cursors.load("../odd name"), Some(7));
    assert!(!old.exists(), "the old files and their directory are gone");
    drop(cursors);
    let cursors = open(&dir);
    assert_eq!(
        cursors.resume(&["orders", "../odd name"], 50).unwrap(),
        [42, 7]
    );
}

#[test]
fn a_migration_cut_short_is_finished_and_the_journal_wins() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).store(&[("orders", 50)]).unwrap();
    // A crash after the journal got the cursors, before the old files were all removed.
    let old = dir.path().join(LEGACY_DIR);
    legacy::write(&old, "orders", 42);
    legacy::write(&old, "audit", 9);
    let cursors = open(&dir);
    assert_eq!(cursors.load("orders"), Some(50));
    assert_eq!(cursors.load("audit"), Some(9));
    assert!(!old.exists());
}

#[test]
fn a_damaged_old_cursor_file_stops_the_migration_and_keeps_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join(LEGACY_DIR);
    legacy::write(&old, "orders", 42);
    fs::write(old.join("audit.cursor"), b"garbage").unwrap();
    let err = CursorStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("audit.cursor"), "{err}");
    assert!(old.join("orders.cursor").exists());
}

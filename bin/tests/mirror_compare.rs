//! `halyard mirror compare`: equal journals compare equal, a missing or
//! different message is found, a folder without a journal is an error.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use halyard_core::ids::Id;
use halyard_core::journal::{encode_entry, Entry, QueueDef, QueueKind, Record, Routing};
use halyard_core::message::{Body, Message};
use halyard_io::local::{Entry as Raw, LocalJournal, LocalJournalConfig};

fn write_journal(data_dir: &Path, bodies: &[&str]) {
    let mut config = LocalJournalConfig::new(data_dir.join("journal"));
    config.fsync = false;
    let (mut j, _) = LocalJournal::open(config).expect("open");
    let q = Id::new(1, 1);
    let mut entries = vec![Entry::Put(Record::QueueCreated(QueueDef {
        id: q,
        name: "orders".into(),
        address: "orders".into(),
        kind: QueueKind::Anycast,
    }))];
    for (i, b) in bodies.iter().enumerate() {
        let mut m = Message::new(
            "orders",
            Routing::Anycast,
            Body::Bytes(Bytes::copy_from_slice(b.as_bytes())),
        );
        m.durable = true;
        entries.push(Entry::Put(Record::MessageStored {
            id: Id::new(1, 10 + i as u64),
            queues: vec![q],
            message: Arc::new(m),
        }));
    }
    let batch: Vec<Raw> = entries
        .iter()
        .map(|e| {
            let (key, value) = encode_entry(e);
            Raw { key, value }
        })
        .collect();
    j.append(&[batch]).expect("append");
}

fn compare(a: &Path, b: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["mirror", "compare"])
        .arg(a)
        .arg(b)
        .output()
        .expect("run halyard");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn equal_queues_compare_equal_and_a_difference_is_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, c, d) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
        tmp.path().join("d"),
    );
    write_journal(&a, &["x", "y"]);
    write_journal(&b, &["x", "y"]);
    write_journal(&c, &["x"]);
    write_journal(&d, &["x", "z"]);
    let (code, out) = compare(&a, &b);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the same: 1 queues"), "{out}");
    let (code, out) = compare(&a, &c);
    assert_eq!(code, Some(1), "a missing message: {out}");
    assert!(out.contains("NO"), "{out}");
    let (code, out) = compare(&a, &d);
    assert_eq!(code, Some(1), "a different body: {out}");
    let (code, out) = compare(&a, &tmp.path().join("nothing"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no journal folder"), "{out}");
}

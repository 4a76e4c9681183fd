//! A local journal written by `halyard node` before messages became
//! protocol-neutral (journal format 1, commit 70d8f86, made by
//! `fixtures/journal-format-1/written-by.py`) still replays: every message
//! comes back with its headers and body, the durable subscription keeps its
//! message, and the remembered duplicate id still stops a resend.

use std::path::Path;

use bytes::Bytes;
use halyard_core::journal::{decode_entry, Entry, Record, FORMAT_VERSION};
use halyard_core::node::NodeConfig;
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::testkit::frames::{send_receipt, subscribe};
use halyard_core::testkit::Harness;
use halyard_io::local::{LocalJournal, LocalJournalConfig};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load_fixture() -> Vec<Vec<Entry>> {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-format-1/journal");
    let dir = tmp.path().join("journal");
    copy_dir(&src, &dir);
    let (j, rec) = LocalJournal::open(LocalJournalConfig::new(&dir)).expect("open fixture");
    assert_eq!(rec.truncated_bytes, 0, "the fixture has no torn tail");
    let raw = j.read_all().expect("read fixture");
    raw.iter()
        .map(|batch| {
            batch
                .iter()
                .map(|e| decode_entry(&e.key, e.value.as_deref()).expect("format 1 decodes"))
                .collect()
        })
        .collect()
}

/// The raw value of the fixture's first record.
fn load_first_value() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-format-1/journal");
    let dir = tmp.path().join("journal");
    copy_dir(&src, &dir);
    let (j, _) = LocalJournal::open(LocalJournalConfig::new(&dir)).expect("open fixture");
    let raw = j.read_all().expect("read fixture");
    raw[0][0].value.as_ref().expect("a record").to_vec()
}

fn header<'a>(f: &'a Frame, name: &str) -> Option<&'a str> {
    f.header(name)
}

#[test]
fn a_format_1_journal_replays_with_every_message() {
    // The fixture's values say version 1; this build writes a newer one.
    let first = load_first_value();
    assert_eq!(first[0], 1);
    assert_ne!(FORMAT_VERSION, first[0]);
    let journal = load_fixture();
    let values: Vec<u8> = journal
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Entry::Put(Record::Activation { epoch, .. }) => u8::try_from(*epoch).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec![1, 2], "two activations were written");

    let mut h = Harness::with_journal(NodeConfig::default(), journal);
    assert_eq!(h.node.epoch(), 3);
    let c = h.connect_with(1, &[("client-id", "fx")]);

    h.send(c, subscribe("q", "/queue/orders", "client-individual"));
    let orders: Vec<Frame> = h
        .take(c)
        .into_iter()
        .filter(|f| f.command == Command::Message)
        .collect();
    let bodies: Vec<String> = orders
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    // order 0 was consumed and acknowledged before the restart.
    assert_eq!(
        bodies,
        ["order 1", "order 2", "order 3", "order 4", "dup body"]
    );
    for (i, f) in orders.iter().take(4).enumerate() {
        assert_eq!(header(f, "color"), Some("blue:green"));
        assert_eq!(header(f, "n"), Some((i + 1).to_string().as_str()));
        assert_eq!(header(f, "content-type"), Some("text/plain"));
    }
    assert_eq!(header(&orders[4], "_AMQ_DUPL_ID"), Some("abc-1"));
    // The order delivered but not acknowledged before the restart counts
    // its delivery after the restart as a first one.
    assert_eq!(header(&orders[0], "delivery-count"), Some("1"));

    h.send(
        c,
        Frame::new(Command::Subscribe)
            .with_header("id", "d")
            .with_header("destination", "/topic/news")
            .with_header("durable-subscription-name", "sub1")
            .with_header("ack", "auto"),
    );
    let news: Vec<Frame> = h.take(c);
    assert_eq!(
        news.iter()
            .filter(|f| f.command == Command::Message)
            .map(|f| f.body.clone())
            .collect::<Vec<_>>(),
        vec![Bytes::from_static(b"news 1")],
        "the durable subscription kept the message sent while it was away"
    );

    h.send(c, subscribe("t", "/queue/tx", "auto"));
    let tx = h.take(c);
    assert_eq!(tx.len(), 1);
    assert_eq!(&tx[0].body[..], b"in tx");
    assert_eq!(header(&tx[0], "k"), Some("v"));

    h.send(c, subscribe("b", "/queue/bin", "auto"));
    let bin = h.take(c);
    assert_eq!(bin.len(), 1);
    assert_eq!(&bin[0].body[..], &[0u8, 1, 2, 0xff]);

    // The non-persistent message did not survive, as before.
    h.send(c, subscribe("v", "/queue/volatile", "auto"));
    assert!(h.take(c).is_empty());

    // The duplicate id written in format 1 still stops a resend.
    h.send(
        c,
        send_receipt("/queue/orders", "dup again", "r").with_header("_AMQ_DUPL_ID", "abc-1"),
    );
    let got = h.take(c);
    assert!(got.iter().any(|f| f.command == Command::Receipt));
    assert!(
        got.iter()
            .all(|f| f.command != Command::Message || &f.body[..] != b"dup again"),
        "a resend with a remembered duplicate id was stored again"
    );
}

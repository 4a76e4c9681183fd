//! Property: whatever operations ran and wherever the node crashed (any
//! durable prefix of its journal), a restart holds every message whose
//! RECEIPT the producer saw and whose ACK receipt the consumer did not see,
//! and nothing whose ACK receipt it saw, and nothing never sent.

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::node::NodeConfig;
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Send { q: u8, persistent: bool },
    Tx { q: u8, n: u8, commit: bool },
    Ack { pick: u8 },
    Nack { pick: u8 },
    Reconnect,
    Complete { n: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, prop::bool::weighted(0.85)).prop_map(|(q, persistent)| Op::Send { q, persistent }),
        1 => (0u8..3, 1u8..4, any::<bool>()).prop_map(|(q, n, commit)| Op::Tx { q, n, commit }),
        3 => any::<u8>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Nack { pick }),
        1 => Just(Op::Reconnect),
        3 => (0u8..4).prop_map(|n| Op::Complete { n }),
    ]
}

const QUEUES: [&str; 3] = ["/queue/a", "/queue/b", "/queue/c"];

/// What the clients observed, with the journal length at the time.
#[derive(Default)]
struct Observed {
    sent: BTreeSet<String>,
    /// body -> journal batches durable when its receipt arrived
    receipted_at: BTreeMap<String, usize>,
    /// body -> journal batches durable when its ack receipt arrived
    acked_at: BTreeMap<String, usize>,
    /// receipt id -> bodies it covers
    send_receipts: BTreeMap<String, Vec<String>>,
    ack_receipts: BTreeMap<String, String>,
    /// bodies an ACK was sent for (receipted or not): they may be gone
    ack_sent: BTreeSet<String>,
    /// ack id -> body, for messages delivered and not yet acked
    delivered: Vec<(String, String)>,
    persistent: BTreeSet<String>,
}

fn absorb(h: &mut Harness, conn: halyard_core::ids::ConnId, o: &mut Observed) {
    let now = h.journal.len();
    for f in h.take(conn) {
        match f.command {
            Command::Receipt => {
                let id = f.header("receipt-id").unwrap_or_default().to_string();
                if let Some(bodies) = o.send_receipts.remove(&id) {
                    for b in bodies {
                        o.receipted_at.insert(b, now);
                    }
                }
                if let Some(b) = o.ack_receipts.remove(&id) {
                    o.acked_at.insert(b, now);
                }
            }
            Command::Message => {
                let ack = f.header("ack").unwrap_or_default().to_string();
                o.delivered.push((ack, body(&f)));
            }
            Command::Error => panic!("unexpected ERROR: {:?}", f.header("message")),
            _ => {}
        }
    }
}

fn drain(h: &mut Harness) -> Vec<String> {
    let c = h.connect(900);
    // Dead-lettered messages (too many deliveries) are not lost either.
    for (i, q) in QUEUES.iter().chain(&["/queue/DLQ"]).enumerate() {
        h.send(c, subscribe(&format!("d{i}"), q, "auto"));
    }
    h.take(c)
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(body)
        .collect()
}

fn run(ops: &[Op], crash_points: &[prop::sample::Index]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(NodeConfig::default());
    h.hold_journal = true;
    let p = h.connect(1);
    let mut c = h.connect(2);
    let mut next_conn = 3;
    let subscribe_all = |h: &mut Harness, c| {
        for (i, q) in QUEUES.iter().enumerate() {
            h.send(c, subscribe(&format!("s{i}"), q, "client-individual"));
        }
    };
    subscribe_all(&mut h, c);
    let mut o = Observed::default();
    let mut n = 0u32;
    let mut rid = 0u32;
    for op in ops {
        match op {
            Op::Send { q, persistent } => {
                n += 1;
                rid += 1;
                let b = format!("m{n}");
                let mut f = send_receipt(QUEUES[*q as usize], &b, &rid.to_string());
                if !persistent {
                    f.push_header("persistent", "false");
                } else {
                    o.persistent.insert(b.clone());
                }
                o.sent.insert(b.clone());
                o.send_receipts.insert(rid.to_string(), vec![b]);
                h.send(p, f);
            }
            Op::Tx {
                q,
                n: count,
                commit,
            } => {
                rid += 1;
                let tx = format!("tx{rid}");
                h.send(
                    p,
                    Frame::new(Command::Begin).with_header("transaction", tx.as_str()),
                );
                let mut bodies = Vec::new();
                for _ in 0..*count {
                    n += 1;
                    let b = format!("m{n}");
                    o.sent.insert(b.clone());
                    o.persistent.insert(b.clone());
                    bodies.push(b.clone());
                    h.send(
                        p,
                        send(QUEUES[*q as usize], &b).with_header("transaction", tx.as_str()),
                    );
                }
                let end = if *commit {
                    Command::Commit
                } else {
                    Command::Abort
                };
                if *commit {
                    o.send_receipts.insert(rid.to_string(), bodies);
                } else {
                    for b in bodies {
                        o.sent.remove(&b);
                    }
                }
                h.send(
                    p,
                    Frame::new(end)
                        .with_header("transaction", tx.as_str())
                        .with_header("receipt", rid.to_string()),
                );
            }
            Op::Ack { pick } | Op::Nack { pick } => {
                if o.delivered.is_empty() {
                    continue;
                }
                let i = *pick as usize % o.delivered.len();
                let (ack_id, b) = o.delivered.remove(i);
                rid += 1;
                let f = if matches!(op, Op::Ack { .. }) {
                    o.ack_receipts.insert(rid.to_string(), b.clone());
                    o.ack_sent.insert(b);
                    ack(&ack_id)
                } else {
                    nack(&ack_id)
                };
                h.send(c, f.with_header("receipt", rid.to_string()));
            }
            Op::Reconnect => {
                h.close(c);
                o.delivered.clear();
                // Acks in flight may still become durable; their receipts never arrive.
                o.ack_receipts.clear();
                c = h.connect(next_conn);
                next_conn += 1;
                subscribe_all(&mut h, c);
            }
            Op::Complete { n } => h.complete(*n as usize),
        }
        absorb(&mut h, p, &mut o);
        absorb(&mut h, c, &mut o);
    }
    // The live node's durable state must equal a replay of its whole journal.
    h.complete(usize::MAX);
    absorb(&mut h, p, &mut o);
    absorb(&mut h, c, &mut o);
    h.node
        .broker()
        .check_invariants()
        .map_err(TestCaseError::fail)?;
    let live = durable_view(&h);
    let replayed = h.restart();
    replayed
        .node
        .broker()
        .check_invariants()
        .map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        &live,
        &durable_view(&replayed),
        "live state differs from replay"
    );

    let total = h.journal.len();
    let mut points: Vec<usize> = crash_points.iter().map(|i| i.index(total + 1)).collect();
    points.push(total);
    for k in points {
        let mut r = h.restart_on_prefix(k);
        let got: BTreeSet<String> = drain(&mut r).into_iter().collect();
        for b in &got {
            prop_assert!(
                o.sent.contains(b),
                "crash at {k}: {b} delivered but never sent"
            );
            if let Some(at) = o.acked_at.get(b) {
                prop_assert!(
                    *at > k,
                    "crash at {k}: {b} came back after its ack receipt (at {at})"
                );
            }
        }
        for (b, at) in &o.receipted_at {
            if *at <= k && !o.ack_sent.contains(b) && o.persistent.contains(b) {
                prop_assert!(
                    got.contains(b),
                    "crash at {k}: receipted {b} (at {at}) lost"
                );
            }
        }
    }
    Ok(())
}

/// Durable queues and the messages they hold, by body.
fn durable_view(h: &Harness) -> BTreeMap<String, BTreeSet<String>> {
    let b = h.node.broker();
    b.queues()
        .filter(|q| q.durable())
        .map(|q| {
            let bodies = q
                .durable_message_ids()
                .into_iter()
                .filter_map(|id| {
                    b.message(id)
                        .and_then(|m| m.body.raw())
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .collect();
            (q.name.clone(), bodies)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn crash_after_any_durable_prefix_keeps_acknowledged_messages(
        ops in prop::collection::vec(op(), 1..80),
        crash_points in prop::collection::vec(any::<prop::sample::Index>(), 1..6),
    ) {
        run(&ops, &crash_points)?;
    }
}

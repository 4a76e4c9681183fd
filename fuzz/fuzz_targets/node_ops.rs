//! A `Node` driven through the in-memory harness by a random sequence of
//! client and driver steps (structure-aware: the input is decoded into
//! [`Step`]s with `arbitrary`).
//!
//! Steps: open a connection, CONNECT (with or without a login, client-id,
//! heart-beats), SEND (queue, topic or bare name; receipt, transaction,
//! persistence, priority, expiry, delay, duplicate id, a property for
//! selectors), BEGIN/COMMIT/ABORT, SUBSCRIBE/UNSUBSCRIBE (every ack mode,
//! durable, selector, window), ACK/NACK of a delivered message, garbage
//! bytes, AMQP bytes, DISCONNECT, close, time passing, holding and
//! completing journal batches, management changes, disk readings above and
//! below the limit, and a restart from the durable journal. Optionally with a security file and small limits, so
//! that refusals and limits are reached.
//!
//! After every step: `Node::check_invariants` holds and the node is still
//! live; and while time passes, every deadline moves once it is ticked. The harness itself checks that every byte the node sends a STOMP
//! client decodes, that journal entries survive their codec, and that a
//! restart on the durable journal comes up live.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use halyard_core::broker::BrokerConfig;
use halyard_core::ids::ConnId;
use halyard_core::node::{AdminOp, DiskUsage, FullPolicy, Input, NodeConfig};
use halyard_core::protocol::amqp::AMQP_HEADER;
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::security::{password, Pattern, Permission, Rule, Security, User};
use halyard_core::testkit::{frames, Harness};
use libfuzzer_sys::fuzz_target;

/// Steps in one input, at most; sizes below are bounded too, so that one
/// execution stays well under a millisecond.
const STEPS_MAX: usize = 64;
const SLOTS: u8 = 4;
const RAW_BYTES_MAX: usize = 64;
const ACK_IDS_MAX: usize = 16;
/// Ticks at one deadline before it counts as stuck (work done in chunks,
/// such as an expiry scan, takes a few).
const STUCK_TICKS: usize = 1_000;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dest {
    Queue(u8),
    Topic(u8),
    /// A bare address name (its routing decided by the broker).
    Bare(u8),
    DeadLetters,
    Expired,
}

impl Dest {
    fn name(self) -> String {
        match self {
            Dest::Queue(n) => format!("/queue/q{}", n % 3),
            Dest::Topic(n) => format!("/topic/t{}", n % 3),
            Dest::Bare(n) if n % 2 == 0 => format!("q{}", n / 2 % 3),
            Dest::Bare(n) => format!("t{}", n / 2 % 3),
            Dest::DeadLetters => "/queue/DLQ".into(),
            Dest::Expired => "/queue/ExpiryQueue".into(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Login {
    Anonymous,
    Alice,
    Bob,
    Root,
    Unknown,
    WrongPasscode,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
    Missing,
    Invalid,
}

#[derive(Arbitrary, Debug, Clone)]
struct SendOpts {
    persistent: Option<bool>,
    priority: Option<u8>,
    /// Expires this many ms from now (0: already expired).
    expires_in: Option<u16>,
    delay: Option<u16>,
    color: Option<bool>,
    duplicate_id: Option<u8>,
    body_len: u8,
}

#[derive(Arbitrary, Debug, Clone)]
enum Step {
    Open {
        slot: u8,
    },
    Connect {
        slot: u8,
        client_id: Option<u8>,
        login: Login,
        heart_beat: bool,
    },
    Send {
        slot: u8,
        dest: Dest,
        receipt: bool,
        tx: Option<u8>,
        opts: SendOpts,
    },
    Begin {
        slot: u8,
        tx: u8,
    },
    Commit {
        slot: u8,
        tx: u8,
        receipt: bool,
    },
    Abort {
        slot: u8,
        tx: u8,
        receipt: bool,
    },
    Subscribe {
        slot: u8,
        sub: u8,
        dest: Dest,
        ack: AckMode,
        durable: Option<u8>,
        selector: Option<u8>,
        window: Option<u8>,
        receipt: bool,
    },
    Unsubscribe {
        slot: u8,
        sub: u8,
        durable: Option<u8>,
        receipt: bool,
    },
    Ack {
        slot: u8,
        pick: u8,
        nack: bool,
        tx: Option<u8>,
        receipt: bool,
    },
    Garbage {
        slot: u8,
        bytes: Vec<u8>,
    },
    Amqp {
        slot: u8,
        bytes: Vec<u8>,
    },
    Disconnect {
        slot: u8,
        receipt: bool,
    },
    Close {
        slot: u8,
    },
    Advance {
        ms: u16,
    },
    HoldJournal(bool),
    Complete {
        batches: u8,
    },
    Admin {
        op: u8,
        queue: u8,
        to: u8,
    },
    /// A reading of the journal's disk: tenths of a percent used (the
    /// limit is 90%), so producers are held back, refused and resumed.
    Disk {
        permille: u16,
    },
    Restart,
}

#[derive(Arbitrary, Debug)]
struct Case {
    secure: bool,
    small_limits: bool,
    steps: Vec<Step>,
}

struct Slot {
    id: ConnId,
    amqp: bool,
    /// A CONNECT was sent.
    connected: bool,
    /// `ack` headers of MESSAGE frames received, newest last.
    acks: Vec<String>,
}

struct World {
    h: Harness,
    slots: BTreeMap<u8, Slot>,
    next_conn: u64,
    next_admin: u64,
    receipts: u64,
}

const PASSWORD: &str = "secret";

/// Users alice (producer), bob (consumer), root (admin), with argon2's
/// cheapest parameters so that a login costs microseconds.
fn security() -> Arc<Security> {
    static S: OnceLock<Arc<Security>> = OnceLock::new();
    S.get_or_init(|| {
        let salt = [5; password::SALT_BYTES];
        let hash = password::hash_cheap(PASSWORD.as_bytes(), &salt);
        let user = |role: &str| User {
            password_hash: hash.clone(),
            roles: vec![role.to_string()],
        };
        let rule = |pattern: &str, grants: &[(Permission, &[&str])]| Rule {
            pattern: Pattern::parse(pattern).expect("a valid pattern"),
            grants: grants
                .iter()
                .map(|(p, roles)| (*p, roles.iter().map(|r| r.to_string()).collect()))
                .collect(),
        };
        let everything: Vec<(Permission, &[&str])> = Permission::ALL
            .iter()
            .map(|p| (*p, &["admin"][..]))
            .collect();
        Arc::new(Security {
            users: [
                ("alice".to_string(), user("producer")),
                ("bob".to_string(), user("consumer")),
                ("root".to_string(), user("admin")),
            ]
            .into_iter()
            .collect(),
            rules: vec![
                rule("#", &everything),
                rule(
                    "q0",
                    &[
                        (Permission::Send, &["producer"]),
                        (Permission::Consume, &["consumer"]),
                        (Permission::CreateAddress, &["producer", "consumer"]),
                    ],
                ),
                rule(
                    "t1",
                    &[
                        (Permission::Send, &["producer"]),
                        (Permission::Consume, &["consumer"]),
                        (Permission::CreateAddress, &["consumer"]),
                        (Permission::CreateDurableQueue, &["consumer"]),
                    ],
                ),
            ],
            decoy_hash: password::hash_cheap(b"no such user", &salt),
        })
    })
    .clone()
}

fn config(secure: bool, small: bool) -> NodeConfig {
    let mut c = NodeConfig::default();
    if secure {
        c.set_security(security());
    }
    if small {
        c.conn_inflight_max = 2;
        c.transactions_per_conn_max = 2;
        c.transaction_ops_max = 3;
        c.transaction_bytes_max = 64;
        c.connections_max = 3;
        c.pending_connections_max = 2;
        // A few small messages reach it: producers held back and resumed.
        c.memory_max_bytes = 256;
        c.address_full_policy = FullPolicy::Block;
        c.heartbeat_ms = 1_000;
        c.connect_timeout_ms = 2_000;
        c.broker = BrokerConfig {
            delivery_attempts_max: 2,
            expiry_scan_period_ms: 1_000,
            expiry_batch_max: 2,
            scheduled_release_max: 2,
            dispatch_skip_max: 3,
            connection_outbound_bytes_max: 256,
            consumer_window_bytes_default: 64,
            messages_max: 8,
            duplicate_ids_per_address_max: 2,
            ..BrokerConfig::default()
        };
    }
    c
}

fn tx_name(tx: u8) -> String {
    format!("tx{}", tx % 3)
}

const SELECTORS: [&str; 6] = [
    "color = 'red'",
    "color <> 'red' OR color IS NULL",
    "JMSPriority > 4",
    "n BETWEEN 1 AND 100",
    "((",
    "",
];

impl World {
    fn new(case: &Case) -> World {
        World {
            h: Harness::new(config(case.secure, case.small_limits)),
            slots: BTreeMap::new(),
            next_conn: 1,
            next_admin: 1,
            receipts: 0,
        }
    }

    fn open(&mut self, slot: u8, amqp: bool) -> ConnId {
        if let Some(old) = self.slots.remove(&slot) {
            self.h.close(old.id);
        }
        let id = if amqp {
            self.h.open_raw(self.next_conn)
        } else {
            self.h.open(self.next_conn)
        };
        self.next_conn += 1;
        self.slots.insert(
            slot,
            Slot {
                id,
                amqp,
                connected: false,
                acks: Vec::new(),
            },
        );
        id
    }

    fn connect_frame(client_id: Option<u8>, login: Login, heart_beat: bool) -> Frame {
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost");
        if let Some(c) = client_id {
            f.push_header("client-id", format!("app{}", c % 2));
        }
        let (user, pass) = match login {
            Login::Anonymous => (None, PASSWORD),
            Login::Alice => (Some("alice"), PASSWORD),
            Login::Bob => (Some("bob"), PASSWORD),
            Login::Root => (Some("root"), PASSWORD),
            Login::Unknown => (Some("mallory"), PASSWORD),
            Login::WrongPasscode => (Some("alice"), "guess"),
        };
        if let Some(u) = user {
            f.push_header("login", u);
            f.push_header("passcode", pass);
        }
        if heart_beat {
            f.push_header("heart-beat", "1000,1000");
        }
        f
    }

    /// The STOMP connection of `slot`, opened and connected (anonymously)
    /// if the slot is empty; `None` for an AMQP slot.
    fn stomp(&mut self, slot: u8) -> Option<ConnId> {
        match self.slots.get(&slot) {
            Some(s) if s.amqp => None,
            Some(s) => Some(s.id),
            None => {
                let id = self.open(slot, false);
                self.frame(slot, Self::connect_frame(None, Login::Anonymous, false));
                Some(id)
            }
        }
    }

    fn frame(&mut self, slot: u8, f: Frame) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        s.connected |= f.command == Command::Connect;
        let id = s.id;
        self.h.send(id, f);
    }

    fn receipt(&mut self, f: Frame, want: bool) -> Frame {
        if !want {
            return f;
        }
        self.receipts += 1;
        f.with_header("receipt", format!("r{}", self.receipts))
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Open { slot } => {
                self.open(slot % SLOTS, false);
            }
            Step::Connect {
                slot,
                client_id,
                login,
                heart_beat,
            } => {
                let slot = slot % SLOTS;
                if self.slots.get(&slot).is_none_or(|s| s.amqp) {
                    self.open(slot, false);
                }
                self.frame(slot, Self::connect_frame(client_id, login, heart_beat));
            }
            Step::Send {
                slot,
                dest,
                receipt,
                tx,
                opts,
            } => {
                let slot = slot % SLOTS;
                if self.stomp(slot).is_none() {
                    return;
                }
                let body = "x".repeat(usize::from(opts.body_len % 48));
                let mut f = frames::send(&dest.name(), &body);
                if let Some(t) = tx {
                    f.push_header("transaction", tx_name(t));
                }
                if let Some(p) = opts.persistent {
                    f.push_header("persistent", if p { "true" } else { "false" });
                }
                if let Some(p) = opts.priority {
                    // 10 and 11: refused.
                    f.push_header("priority", (p % 12).to_string());
                }
                if let Some(e) = opts.expires_in {
                    let at = self.h.now + u64::from(e);
                    f.push_header("expires", at.to_string());
                }
                if let Some(d) = opts.delay {
                    f.push_header("AMQ_SCHEDULED_DELAY", d.to_string());
                }
                if let Some(red) = opts.color {
                    f.push_header("color", if red { "red" } else { "blue" });
                    f.push_header("n", u32::from(opts.body_len).to_string());
                }
                if let Some(d) = opts.duplicate_id {
                    f.push_header("_AMQ_DUPL_ID", format!("d{}", d % 4));
                }
                let f = self.receipt(f, receipt);
                self.frame(slot, f);
            }
            Step::Begin { slot, tx } => {
                let slot = slot % SLOTS;
                if self.stomp(slot).is_some() {
                    let f = Frame::new(Command::Begin).with_header("transaction", tx_name(tx));
                    self.frame(slot, f);
                }
            }
            Step::Commit { slot, tx, receipt } | Step::Abort { slot, tx, receipt } => {
                let command = if matches!(step, Step::Commit { .. }) {
                    Command::Commit
                } else {
                    Command::Abort
                };
                let slot = slot % SLOTS;
                if self.stomp(slot).is_some() {
                    let f = Frame::new(command).with_header("transaction", tx_name(tx));
                    let f = self.receipt(f, receipt);
                    self.frame(slot, f);
                }
            }
            Step::Subscribe {
                slot,
                sub,
                dest,
                ack,
                durable,
                selector,
                window,
                receipt,
            } => {
                let slot = slot % SLOTS;
                if self.stomp(slot).is_none() {
                    return;
                }
                let mut f = Frame::new(Command::Subscribe)
                    .with_header("id", format!("s{}", sub % 3))
                    .with_header("destination", dest.name());
                match ack {
                    AckMode::Auto => f.push_header("ack", "auto"),
                    AckMode::Client => f.push_header("ack", "client"),
                    AckMode::ClientIndividual => f.push_header("ack", "client-individual"),
                    AckMode::Missing => {}
                    AckMode::Invalid => f.push_header("ack", "sometimes"),
                }
                if let Some(d) = durable {
                    f.push_header("durable-subscription-name", format!("d{}", d % 2));
                }
                if let Some(s) = selector {
                    f.push_header("selector", SELECTORS[usize::from(s) % SELECTORS.len()]);
                }
                if let Some(w) = window {
                    // -1 (unbounded), 0, and small windows.
                    f.push_header("consumer-window-size", (i32::from(w % 100) - 1).to_string());
                }
                let f = self.receipt(f, receipt);
                self.frame(slot, f);
            }
            Step::Unsubscribe {
                slot,
                sub,
                durable,
                receipt,
            } => {
                let slot = slot % SLOTS;
                if self.stomp(slot).is_none() {
                    return;
                }
                let mut f =
                    Frame::new(Command::Unsubscribe).with_header("id", format!("s{}", sub % 3));
                if let Some(d) = durable {
                    f.push_header("durable-subscription-name", format!("d{}", d % 2));
                }
                let f = self.receipt(f, receipt);
                self.frame(slot, f);
            }
            Step::Ack {
                slot,
                pick,
                nack,
                tx,
                receipt,
            } => {
                let slot = slot % SLOTS;
                if self.stomp(slot).is_none() {
                    return;
                }
                let acks = &self.slots[&slot].acks;
                let id = if acks.is_empty() || pick == u8::MAX {
                    "no-such-message".to_string()
                } else {
                    acks[acks.len() - 1 - usize::from(pick) % acks.len()].clone()
                };
                let mut f = if nack {
                    frames::nack(&id)
                } else {
                    frames::ack(&id)
                };
                if let Some(t) = tx {
                    f.push_header("transaction", tx_name(t));
                }
                let f = self.receipt(f, receipt);
                self.frame(slot, f);
            }
            Step::Garbage { slot, mut bytes } => {
                let slot = slot % SLOTS;
                bytes.truncate(RAW_BYTES_MAX);
                let Some(id) = self.stomp(slot) else {
                    return;
                };
                // Also before CONNECT: the ERROR then, written without
                // escapes, must still decode under the harness's STOMP 1.2.
                self.h.send_raw(id, &bytes);
            }
            Step::Amqp { slot, mut bytes } => {
                let slot = slot % SLOTS;
                bytes.truncate(RAW_BYTES_MAX);
                let fresh = !self.slots.get(&slot).is_some_and(|s| s.amqp);
                let id = if fresh {
                    let id = self.open(slot, true);
                    self.h.send_raw(id, &AMQP_HEADER);
                    id
                } else {
                    self.slots[&slot].id
                };
                self.h.send_raw(id, &bytes);
                self.h.take_raw(id);
            }
            Step::Disconnect { slot, receipt } => {
                let slot = slot % SLOTS;
                if self.slots.get(&slot).is_some_and(|s| !s.amqp) {
                    let f = self.receipt(Frame::new(Command::Disconnect), receipt);
                    self.frame(slot, f);
                }
            }
            Step::Close { slot } => {
                if let Some(s) = self.slots.remove(&(slot % SLOTS)) {
                    self.h.close(s.id);
                }
            }
            Step::Advance { ms } => self.advance(u64::from(ms)),
            Step::HoldJournal(hold) => {
                self.h.hold_journal = hold;
                if !hold {
                    self.h.complete(usize::MAX);
                }
            }
            Step::Complete { batches } => self.h.complete(usize::from(batches % 4)),
            Step::Admin { op, queue, to } => {
                const QUEUES: [&str; 6] = ["q0", "q1", "q2", "DLQ", "ExpiryQueue", "t0"];
                let queue = QUEUES[usize::from(queue) % QUEUES.len()].to_string();
                let to = QUEUES[usize::from(to) % QUEUES.len()].to_string();
                let op = match op % 4 {
                    0 => AdminOp::Purge { queue },
                    1 => AdminOp::Move { queue, to },
                    2 => AdminOp::Retry { queue },
                    _ => AdminOp::DeleteQueue { queue },
                };
                let id = self.next_admin;
                self.next_admin += 1;
                self.h.input(Input::Admin { id, op });
            }
            Step::Disk { permille } => self.h.input(Input::Disk(DiskUsage {
                used_bytes: u64::from(permille % 1001),
                total_bytes: 1000,
            })),
            Step::Restart => {
                // Like a crash: appends in flight are lost, clients are gone.
                self.h = self.h.restart();
                self.slots.clear();
            }
        }
    }

    /// `Harness::advance`, except that a deadline ticks do not move is a
    /// failure (a driver that wakes at deadlines would spin on it) instead
    /// of a hang.
    fn advance(&mut self, ms: u64) {
        let end = self.h.now + ms;
        let mut last = None;
        let mut repeats = 0;
        while let Some(d) = self.h.node.next_deadline() {
            if d > end {
                break;
            }
            if last == Some(d) {
                repeats += 1;
                assert!(
                    repeats < STUCK_TICKS,
                    "deadline {d} still due after {STUCK_TICKS} ticks at {}",
                    self.h.now
                );
            } else {
                last = Some(d);
                repeats = 0;
            }
            self.h.now = self.h.now.max(d);
            self.h.input(Input::Tick);
        }
        self.h.now = end;
        self.h.input(Input::Tick);
    }

    /// What a driver and its clients do between steps: read what arrived,
    /// and close the connections the node asked to close.
    fn settle(&mut self) {
        let mut closed = Vec::new();
        for (n, s) in self.slots.iter_mut() {
            if !s.amqp {
                for f in self.h.take(s.id) {
                    if f.command == Command::Message {
                        if let Some(a) = f.header("ack") {
                            s.acks.push(a.to_string());
                        }
                    }
                }
                if s.acks.len() > ACK_IDS_MAX {
                    s.acks.drain(..s.acks.len() - ACK_IDS_MAX);
                }
            } else {
                self.h.take_raw(s.id);
            }
            if self.h.closed.contains(&s.id) {
                closed.push(*n);
            }
        }
        for n in closed {
            if let Some(s) = self.slots.remove(&n) {
                self.h.close(s.id);
            }
        }
    }

    fn check(&self, i: usize, step: &dyn std::fmt::Debug) {
        if let Err(e) = self.h.node.check_invariants() {
            panic!("after step {i} ({step:?}): invariant broken: {e}");
        }
        assert!(
            self.h.node.is_live(),
            "after step {i} ({step:?}): the node is {:?}",
            self.h.node.state()
        );
    }
}

fuzz_target!(|case: Case| {
    let mut w = World::new(&case);
    w.check(0, &"start");
    for (i, step) in case.steps.into_iter().take(STEPS_MAX).enumerate() {
        w.step(step.clone());
        w.settle();
        w.check(i + 1, &step);
    }
});

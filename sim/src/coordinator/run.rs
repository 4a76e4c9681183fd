//! The coordinator scenario from start to verdict: brokers, the lock
//! service and the network between them in one event queue in virtual
//! time, faults until `fault_until_ms`, then healing and the liveness bound.

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::coordinator::{Event, HANDBACK_HOLD_OFF_PERIODS};

use super::broker::{broker_name, Broker, Fx};
use super::check::CoordChecker;
use super::config::CoordConfig;
use super::data::Disk;
use super::lock_service::LockService;
use super::wire::{Node, Wire};
use super::CoordReport;
use crate::rng::Rng;
use crate::trace::Trace;

/// Every broker's clock and the service's expiry run on this tick.
const TICK_MS: u64 = 50;
/// Serving is checked this long after the liveness bound (the clients
/// stop at the bound: the brokers' queues must be the same at the end).
const SETTLED_MS: u64 = 10_000;
/// A reset reaches the other end of a crashed broker's connection.
const RESET_MS: u64 = 5;

enum Ev {
    Deliver {
        from: Node,
        to: Node,
        inc: u64,
        wire: Wire,
    },
    Tick,
    Fault,
    Restart(usize),
    Resume(usize),
    HealLink(Node, Node),
    Heal,
    Produce,
    Consume,
}

struct World {
    cfg: CoordConfig,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    net: Rng,
    faults_rng: Rng,
    brokers: Vec<Broker>,
    service: LockService,
    cuts: BTreeSet<(Node, Node)>,
    /// Open mirror connections: conn -> (dialer, listener).
    conns: BTreeMap<u64, (usize, usize)>,
    /// Connections a partition broke (their bytes are lost for good).
    broken: BTreeSet<u64>,
    /// When the last message on (conn, receiver) arrives: a connection
    /// delivers in order.
    conn_clock: BTreeMap<(u64, Node), u64>,
    clients: Rng,
    /// Each broker's pauses: (from, until), the last one open while paused.
    pauses: Vec<Vec<(u64, u64)>>,
    next_msg: u64,
    clients_until: u64,
    checker: CoordChecker,
    trace: Trace,
    healed: bool,
    faults: BTreeMap<&'static str, u64>,
    report: CoordReport,
}

fn link(a: Node, b: Node) -> (Node, Node) {
    (a.min(b), a.max(b))
}

impl World {
    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn send(&mut self, from: Node, to: Node, wire: Wire) {
        let conn = wire.conn();
        if let (Some(c), Wire::Dial { .. }, Node::Broker(a), Node::Broker(b)) =
            (conn, &wire, from, to)
        {
            self.conns.insert(c, (a, b));
        }
        if self.cuts.contains(&link(from, to)) {
            if let Some(c) = conn {
                self.broken.insert(c);
            }
            return;
        }
        if conn.is_some_and(|c| self.broken.contains(&c)) {
            return;
        }
        if let (Some(c), Wire::Down { .. }) = (conn, &wire) {
            self.conns.remove(&c);
        }
        // A connection's bytes are never lost, only a datagram's.
        let loss = if self.healed || conn.is_some() {
            0.0
        } else {
            self.cfg.loss
        };
        if loss > 0.0 && self.net.chance(loss) {
            return;
        }
        let mut delay = self.net.range(1, self.cfg.delay_max_ms);
        if let Some(c) = conn {
            let last = self.conn_clock.entry((c, to)).or_insert(0);
            delay = delay.max(last.saturating_sub(self.now));
            *last = self.now + delay;
        }
        let inc = match to {
            Node::Broker(b) => self.brokers[b].incarnation,
            Node::Service | Node::Client => 0,
        };
        self.at(
            self.now + delay,
            Ev::Deliver {
                from,
                to,
                inc,
                wire,
            },
        );
    }

    /// Carries out what broker `b` did.
    fn effects(&mut self, b: usize) {
        let fx = std::mem::take(&mut self.brokers[b].fx);
        let name = broker_name(b);
        for f in fx {
            match f {
                Fx::Send(to, wire) => self.send(Node::Broker(b), to, wire),
                Fx::Trace(what) => self.trace.line(self.now, &name, &what),
                Fx::Started(epoch) => {
                    let found = self.service.found_at.get(&epoch);
                    self.checker.started(self.now, b, epoch, found);
                    let holds = self.brokers[b].data.disk.messages();
                    self.checker.holds_receipted(self.now, b, epoch, &holds);
                    self.trace.line(
                        self.now,
                        &name,
                        &format!("accepting clients in epoch {epoch}"),
                    );
                }
                Fx::Stopped => self
                    .trace
                    .line(self.now, &name, "stopped accepting clients"),
                Fx::Observed(epoch) => self.checker.observed(b, epoch),
                Fx::Applied { from, epoch } => {
                    self.report.events_applied += 1;
                    self.checker.applied(self.now, b, from, epoch);
                }
                Fx::RefusedStale => self.report.stale_refused += 1,
                Fx::Receipted(m) => self.checker.receipted(m),
                Fx::Tombstoned(m) => self.checker.tombstoned(m),
                Fx::Event(e) => match e {
                    Event::PeerLeft { .. } | Event::PeerJoined { .. } => {
                        self.report.in_sync_changes += 1
                    }
                    Event::NotInSync { .. } => self.report.refused_takeovers += 1,
                    Event::HandingBack { .. } => self.report.handbacks += 1,
                    _ => {}
                },
            }
        }
    }

    fn deliver(&mut self, from: Node, to: Node, inc: u64, wire: Wire) {
        if self.cuts.contains(&link(from, to)) {
            return;
        }
        match to {
            Node::Service => {
                let (
                    Node::Broker(b),
                    Wire::ToService {
                        session,
                        req_id,
                        req,
                    },
                ) = (from, wire)
                else {
                    unreachable!("only brokers ask the lock service");
                };
                let acquire = matches!(req, super::lock_service::Request::Acquire);
                if let Some(answer) = self.service.handle(self.now, session, b, req) {
                    if let (true, super::lock_service::Answer::Acquired { epoch }) =
                        (acquire, &answer)
                    {
                        let line = format!("lock acquired by {} in epoch {epoch}", broker_name(b));
                        self.trace.line(self.now, "lock", &line);
                    }
                    let wire = Wire::FromService {
                        session,
                        req_id,
                        answer,
                    };
                    self.send(Node::Service, Node::Broker(b), wire);
                }
            }
            Node::Client => {}
            Node::Broker(b) => {
                let br = &mut self.brokers[b];
                if !br.up || br.incarnation != inc {
                    return;
                }
                if br.paused {
                    br.inbox.push((from, wire));
                    return;
                }
                br.receive(self.now, from, wire);
                self.effects(b);
            }
        }
    }

    fn tick(&mut self) {
        for (b, session) in self.service.tick(self.now) {
            let line = format!("session {session} of {} expired", broker_name(b));
            self.trace.line(self.now, "lock", &line);
        }
        for b in 0..self.brokers.len() {
            if self.brokers[b].up && !self.brokers[b].paused {
                self.brokers[b].tick(self.now);
                self.effects(b);
            }
        }
        self.at(self.now + TICK_MS, Ev::Tick);
    }

    fn serving(&self) -> Vec<(usize, u64)> {
        self.brokers
            .iter()
            .filter_map(|b| b.serving().map(|e| (b.idx, e)))
            .collect()
    }

    fn count(&mut self, kind: &'static str, what: String) {
        *self.faults.entry(kind).or_insert(0) += 1;
        self.trace.line(self.now, "fault", &what);
    }

    fn crash(&mut self, b: usize) {
        let br = &mut self.brokers[b];
        br.up = false;
        br.accepting = None;
        br.inbox.clear();
        self.count("crash", format!("{} crashed", broker_name(b)));
        // The other end of each of its connections sees a reset.
        let ends: Vec<(u64, usize)> = self
            .conns
            .iter()
            .filter(|(_, (x, y))| *x == b || *y == b)
            .map(|(c, (x, y))| (*c, if *x == b { *y } else { *x }))
            .collect();
        for (conn, other) in ends {
            self.conns.remove(&conn);
            let inc = self.brokers[other].incarnation;
            let at = self.now.max(
                self.conn_clock
                    .get(&(conn, Node::Broker(other)))
                    .copied()
                    .unwrap_or(0),
            ) + RESET_MS;
            self.at(
                at,
                Ev::Deliver {
                    from: Node::Broker(b),
                    to: Node::Broker(other),
                    inc,
                    wire: Wire::Down { conn },
                },
            );
        }
    }

    fn restart(&mut self, b: usize) {
        if self.brokers[b].up {
            return;
        }
        let old = &mut self.brokers[b];
        let newest = old.coord.fence().newest();
        let (sessions, inc) = (old.session_counter, old.incarnation + 1);
        let disk = std::mem::take(&mut old.data.disk);
        self.brokers[b] = Broker::new(&self.cfg, b, self.now, newest, (sessions, inc), disk);
        let line = format!(
            "{} restarted (journal knows epoch {newest})",
            broker_name(b)
        );
        self.trace.line(self.now, "fault", &line);
    }

    fn resume(&mut self, b: usize) {
        if !self.brokers[b].paused {
            return;
        }
        self.brokers[b].paused = false;
        if let Some(p) = self.pauses[b].last_mut() {
            p.1 = self.now;
        }
        self.trace
            .line(self.now, "fault", &format!("{} resumed", broker_name(b)));
        // Its timers first, as a process waking up would.
        self.brokers[b].tick(self.now);
        self.effects(b);
        for (from, wire) in std::mem::take(&mut self.brokers[b].inbox) {
            self.brokers[b].receive(self.now, from, wire);
            self.effects(b);
        }
    }

    /// The active broker half of the time, any broker otherwise.
    fn pick(&mut self) -> usize {
        let active = self.serving().first().map(|(b, _)| *b);
        match active {
            Some(b) if self.faults_rng.chance(0.5) => b,
            _ => self.faults_rng.range(0, self.brokers.len() as u64 - 1) as usize,
        }
    }

    fn fault(&mut self) {
        if self.now >= self.cfg.fault_until_ms {
            return;
        }
        let t = self.cfg.session_timeout_ms;
        let b = self.pick();
        let name = broker_name(b);
        match self.faults_rng.range(0, 9) {
            0..=1 if self.brokers[b].up => {
                self.crash(b);
                let down = self.faults_rng.range(1_000, 6_000);
                self.at(self.now + down, Ev::Restart(b));
            }
            2..=3 if self.brokers[b].up && !self.brokers[b].paused => {
                let ms = self.faults_rng.range(200, 3 * t);
                self.brokers[b].paused = true;
                self.pauses[b].push((self.now, u64::MAX));
                self.count("pause", format!("{name} paused for {ms} ms"));
                self.at(self.now + ms, Ev::Resume(b));
            }
            4..=6 => {
                let l = link(Node::Broker(b), Node::Service);
                let ms = self.faults_rng.range(300, 3 * t);
                if self.cuts.insert(l) {
                    self.count(
                        "lock-partition",
                        format!("{name} cut from the lock service for {ms} ms"),
                    );
                    self.at(self.now + ms, Ev::HealLink(l.0, l.1));
                }
            }
            _ => {
                let n = self.brokers.len() as u64;
                let other = ((b as u64 + self.faults_rng.range(1, n - 1)) % n) as usize;
                let l = link(Node::Broker(b), Node::Broker(other));
                let ms = self.faults_rng.range(500, 8_000);
                if self.cuts.insert(l) {
                    let what = format!("{name} cut from {} for {ms} ms", broker_name(other));
                    self.count("peer-partition", what);
                    self.at(self.now + ms, Ev::HealLink(l.0, l.1));
                }
            }
        }
        let next = self.now + self.faults_rng.range(500, 3_000);
        self.at(next, Ev::Fault);
    }

    /// The producer sends the next message to the broker accepting
    /// clients (the failover URL finds it), if any.
    fn produce(&mut self) {
        if self.now >= self.clients_until {
            return;
        }
        if let Some(&(b, _)) = self.serving().first() {
            self.next_msg += 1;
            let msg = self.next_msg;
            self.send(Node::Client, Node::Broker(b), Wire::Store { msg });
        }
        let next = self.now + self.clients.range(1, self.cfg.store_every_ms);
        self.at(next, Ev::Produce);
    }

    fn consume(&mut self) {
        if self.now >= self.clients_until {
            return;
        }
        if let Some(&(b, _)) = self.serving().first() {
            self.send(Node::Client, Node::Broker(b), Wire::Consume);
        }
        let next = self.now + self.clients.range(1, self.cfg.consume_every_ms);
        self.at(next, Ev::Consume);
    }

    fn heal(&mut self) {
        self.healed = true;
        self.cuts.clear();
        self.trace.line(
            self.now,
            "sim",
            "faults stop: links healed, brokers resumed and restarted",
        );
        for b in 0..self.brokers.len() {
            self.resume(b);
            self.restart(b);
        }
    }
}

/// A peer's link dialed, greeted, caught up and heard after healing.
const CATCH_UP_MS: u64 = 2_000;

/// The liveness bound after healing: the old holder's session expires,
/// every broker asks again, a peer is heard and caught up.
pub fn liveness_ms(cfg: &CoordConfig) -> u64 {
    let check = cfg.check_period_ms.iter().copied().max().unwrap_or(0);
    let bound = 2 * cfg.session_timeout_ms + 3 * check + cfg.peer_timeout_ms + CATCH_UP_MS + 3_000;
    // Then the primary joins the in-sync set, the backup drains and
    // releases, and the primary takes the lock at its next check.
    let failback = (HANDBACK_HOLD_OFF_PERIODS + 3) * check + cfg.peer_timeout_ms + CATCH_UP_MS;
    bound + if cfg.failback { failback } else { 0 }
}

pub fn run(cfg: CoordConfig, keep_trace: bool) -> CoordReport {
    let window_ms = cfg.session_timeout_ms * 2 / 5 + cfg.delay_max_ms + 2 * TICK_MS;
    let mut root = Rng::new(cfg.seed ^ 0x0C0D_0000_0000_0001);
    let brokers = (0..cfg.brokers)
        .map(|b| Broker::new(&cfg, b, 0, 0, (0, 0), Disk::default()))
        .collect();
    let mut w = World {
        net: root.fork(),
        faults_rng: root.fork(),
        clients: root.fork(),
        pauses: vec![Vec::new(); cfg.brokers],
        next_msg: 0,
        clients_until: 0,
        conns: BTreeMap::new(),
        broken: BTreeSet::new(),
        conn_clock: BTreeMap::new(),
        service: LockService::new(cfg.session_timeout_ms),
        checker: CoordChecker::new(cfg.brokers, window_ms, cfg.sync),
        trace: Trace::new(keep_trace),
        brokers,
        cfg: cfg.clone(),
        now: 0,
        seq: 0,
        queue: BTreeMap::new(),
        cuts: BTreeSet::new(),
        healed: false,
        faults: BTreeMap::new(),
        report: CoordReport {
            seed: cfg.seed,
            ..CoordReport::default()
        },
    };
    let summary = format!(
        "coordinator seed {} brokers {} {} mirroring session {} ms check {:?} ms peer timeout {} ms store every <= {} ms consume every <= {} ms delay <= {} ms loss {} window {} ms faults until {} ms",
        cfg.seed,
        cfg.brokers,
        if cfg.sync { "sync" } else { "async" },
        cfg.session_timeout_ms,
        cfg.check_period_ms,
        cfg.peer_timeout_ms,
        cfg.store_every_ms,
        cfg.consume_every_ms,
        cfg.delay_max_ms,
        cfg.loss,
        window_ms,
        if cfg.faults { cfg.fault_until_ms } else { 0 }
    );
    w.trace.line(0, "sim", &summary);
    let heal_at = if cfg.faults { cfg.fault_until_ms } else { 0 };
    let live_from = heal_at + liveness_ms(&cfg);
    let end = live_from + SETTLED_MS;
    w.clients_until = live_from;
    w.at(0, Ev::Tick);
    w.at(500, Ev::Produce);
    w.at(700, Ev::Consume);
    if cfg.faults {
        w.at(1_000, Ev::Fault);
    }
    w.at(heal_at, Ev::Heal);
    let mut single_since: Option<u64> = None;
    while let Some(((t, _), ev)) = w.queue.pop_first() {
        if t > end {
            break;
        }
        w.now = t;
        match ev {
            Ev::Deliver {
                from,
                to,
                inc,
                wire,
            } => w.deliver(from, to, inc, wire),
            Ev::Tick => w.tick(),
            Ev::Fault => w.fault(),
            Ev::Restart(b) => w.restart(b),
            Ev::Resume(b) => w.resume(b),
            Ev::HealLink(a, b) => {
                w.cuts.remove(&(a, b));
            }
            Ev::Heal => w.heal(),
            Ev::Produce => w.produce(),
            Ev::Consume => w.consume(),
        }
        w.report.events += 1;
        let serving = w.serving();
        let holder = w.service.holder();
        let pauses = &w.pauses;
        // From the last time the service heard the holder (a session
        // before the end): answers sent then are read after the pause.
        let session = w.cfg.session_timeout_ms;
        let paused_ms = |b: usize, end: u64, to: u64| -> u64 {
            let from = end.saturating_sub(session);
            pauses[b]
                .iter()
                .map(|&(p, q)| q.min(to).saturating_sub(p.max(from)))
                .sum()
        };
        w.checker
            .instant(t, &serving, holder, &w.service.ended_at, paused_ms);
        if w.healed {
            if serving.len() == 1 {
                single_since.get_or_insert(t);
            } else {
                single_since = None;
            }
        }
        if t >= live_from {
            w.checker.live(t, &serving);
        }
    }
    let queues: Vec<(usize, Option<u64>, BTreeSet<u64>)> = w
        .brokers
        .iter()
        .filter(|b| b.up)
        .map(|b| (b.idx, b.serving(), b.data.disk.messages()))
        .collect();
    w.checker.converged(w.now, &queues);
    if cfg.failback {
        w.checker.failed_back(w.now, &queues);
    }
    let r = &mut w.report;
    r.receipted = w.checker.receipted_count();
    r.acknowledged = w.checker.tombstoned_count();
    r.lost_async = w.checker.lost_async();
    r.acquisitions = w.service.acquisitions;
    r.session_expiries = w.service.expiries;
    r.single_active_after_heal_ms = single_since.map(|s| s.saturating_sub(heal_at));
    r.violations = std::mem::take(&mut w.checker.violations);
    r.faults = w.faults.clone();
    r.end_ms = w.now;
    let verdict = if r.violations.is_empty() {
        "coordinator checker: ok".to_string()
    } else {
        format!("coordinator checker: FAILED: {}", r.violations.join("; "))
    };
    w.trace.line(w.now, "sim", &verdict);
    w.report.trace_hash = w.trace.hash();
    w.report.trace = w.trace.lines().to_vec();
    w.report
}

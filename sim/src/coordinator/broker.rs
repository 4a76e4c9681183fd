//! One broker of the coordinator scenario: core's `Coordinator` driven by
//! the simulated clock, its lock service client (a session kept alive by
//! pings, one request out at a time, timeouts, giving the session up after
//! 7/5 of the session timeout without an answer, as the ZooKeeper client
//! does) and its data side (`data`: journal, mirror hub and links), whose
//! news feed the coordinator's peer inputs.

use std::collections::VecDeque;

use halyard_core::coordinator::{
    Coordinator, CoordinatorConfig, EpochFence, Event, Input, Output, WriteRefusal,
    HANDBACK_HOLD_OFF_PERIODS,
};
use halyard_core::ha::Role;
use halyard_core::mirror::HubNews;

use super::config::CoordConfig;
use super::data::{Data, DataOut, Disk};
use super::lock_service::{Answer, Request, SessionId};
use super::wire::{Node, Wire};

/// What a broker did, for the world to carry out or check.
#[derive(Clone, Debug)]
pub enum Fx {
    Send(Node, Wire),
    Trace(String),
    Started(u64),
    Stopped,
    /// An epoch this broker learned of (acquired, read, acked).
    Observed(u64),
    Applied {
        from: usize,
        epoch: u64,
    },
    RefusedStale,
    Event(Event),
    /// A receipt for `msg` went out.
    Receipted(u64),
    /// An acknowledgement of `msg` was written.
    Tombstoned(u64),
}

pub struct Broker {
    pub idx: usize,
    pub coord: Coordinator,
    pub up: bool,
    pub paused: bool,
    pub incarnation: u64,
    pub accepting: Option<u64>,
    /// Messages that arrived while paused.
    pub inbox: Vec<(Node, Wire)>,
    pub fx: Vec<Fx>,
    session_timeout_ms: u64,
    request_timeout_ms: u64,
    pub data: Data,
    in_data_out: bool,
    /// A handback asked for at this time: the release follows at the
    /// next tick.
    handing_back: Option<u64>,
    /// After a handback: the machine stays stopped until then.
    hold_off_until: Option<u64>,
    coord_config: CoordinatorConfig,
    cfg: CoordConfig,
    pub session: SessionId,
    pub session_counter: u64,
    last_answer_ms: u64,
    last_ping_ms: u64,
    /// Coordinator requests; the head is out.
    queue: VecDeque<Output>,
    out: Option<(u64, u64)>,
    /// Releases not answered yet: (req id, epoch, sent at).
    releases: Vec<(u64, u64, u64)>,
    /// The epoch of the lock held, as the lock service answered.
    held: Option<u64>,
    /// The state's version, as last read or written.
    version: u64,
    next_req: u64,
}

/// A coordinator machine (at start, and again after a handback's
/// hold-off, as the driver makes one).
fn new_coordinator(cfg: &CoordConfig, c: CoordinatorConfig, newest: u64) -> Coordinator {
    #[allow(unused_mut)]
    let mut coord = Coordinator::new(c, EpochFence::starting_at(newest));
    #[cfg(feature = "planted-bugs")]
    if let Some(bug) = cfg.planted_bug {
        coord.plant(bug);
    }
    #[cfg(not(feature = "planted-bugs"))]
    let _ = cfg;
    coord
}

pub fn broker_name(i: usize) -> String {
    format!("s{i}")
}

impl Broker {
    /// A broker (re)starting at `now` on `disk`, whose journal knew
    /// `newest` epoch.
    pub fn new(
        cfg: &CoordConfig,
        idx: usize,
        now: u64,
        newest: u64,
        (session_counter, incarnation): (u64, u64),
        disk: Disk,
    ) -> Broker {
        let names: Vec<String> = (0..cfg.brokers).map(broker_name).collect();
        let name = &names[idx];
        let mut c = CoordinatorConfig::new(name.clone())
            .with_peers(names.iter().filter(|n| *n != name).cloned());
        c.check_period_ms = cfg.check_period_ms[idx];
        c.peer_timeout_ms = cfg.peer_timeout_ms;
        if cfg.failback {
            c.role = if idx == 0 {
                Role::Primary
            } else {
                Role::Backup
            };
            c.allow_failback = idx == 0;
        }
        assert_eq!(c.validate(), Ok(()), "the scenario's coordinator config");
        let prefers_active = c.prefers_active();
        let coord_config = c.clone();
        let coord = new_coordinator(cfg, c, newest);
        let conn_base = (idx as u64 * 1_000 + incarnation) * 1_000_000;
        #[allow(unused_mut)]
        let mut data = Data::new(idx, &names, cfg.sync, disk, conn_base, prefers_active);
        #[cfg(feature = "planted-bugs")]
        if let Some(bug) = cfg.planted_bug {
            data.plant(bug);
        }
        let session_counter = session_counter + 1;
        Broker {
            idx,
            coord,
            up: true,
            paused: false,
            incarnation,
            accepting: None,
            inbox: Vec::new(),
            fx: Vec::new(),

            session_timeout_ms: cfg.session_timeout_ms,
            request_timeout_ms: cfg.request_timeout_ms,
            data,
            in_data_out: false,
            handing_back: None,
            hold_off_until: None,
            coord_config,
            cfg: cfg.clone(),
            session: idx as u64 * 1_000_000 + session_counter,
            session_counter,
            last_answer_ms: now,
            last_ping_ms: now,
            queue: VecDeque::new(),
            out: None,
            releases: Vec::new(),
            held: None,
            version: 0,
            next_req: 0,
        }
    }

    pub fn serving(&self) -> Option<u64> {
        self.accepting.filter(|_| self.up && !self.paused)
    }

    fn trace(&mut self, what: String) {
        self.fx.push(Fx::Trace(what));
    }

    fn ask_service(&mut self, req: Request) -> u64 {
        self.next_req += 1;
        let req_id = self.next_req;
        self.fx.push(Fx::Send(
            Node::Service,
            Wire::ToService {
                session: self.session,
                req_id,
                req,
            },
        ));
        req_id
    }

    /// One input to the coordinator, and its outputs carried out.
    fn feed(&mut self, now: u64, input: Input) {
        if let Input::Acquired { epoch } = input {
            self.fx.push(Fx::Observed(epoch));
        }
        self.coord.handle(now, input);
        self.drain(now);
    }

    fn drain(&mut self, now: u64) {
        while let Some(out) = self.coord.poll_output() {
            match out {
                Output::Acquire | Output::ReadState | Output::WriteState { .. } => {
                    self.queue.push_back(out);
                }
                Output::Release => {
                    if let Some(epoch) = self.held.take() {
                        let id = self.ask_service(Request::Release { epoch });
                        self.releases.push((id, epoch, now));
                    }
                }
                Output::StartAccepting { epoch } => {
                    self.accepting = Some(epoch);
                    self.fx.push(Fx::Started(epoch));
                    self.data.go_active(now, epoch);
                }
                Output::StopAccepting => {
                    self.accepting = None;
                    self.fx.push(Fx::Stopped);
                    self.data.go_passive(now);
                }
                Output::RequiredAcks { epoch, peers } => {
                    let p: Vec<&str> = peers.iter().map(String::as_str).collect();
                    self.trace(format!(
                        "receipts of epoch {epoch} wait for {{{}}}",
                        p.join(", ")
                    ));
                    self.data.required(now, epoch, peers);
                }
                // The node drains (one tick) and asks for the release.
                Output::HandBack { epoch, peer } => {
                    self.trace(format!("hand back to {peer} (epoch {epoch})"));
                    if self.serving().is_some() && self.handing_back.is_none() {
                        self.handing_back = Some(now);
                    }
                }
                Output::Stopped => {}
                Output::Event(e) => {
                    self.trace(e.to_string());
                    self.fx.push(Fx::Event(e));
                }
            }
        }
        self.send_head(now);
        self.data_out(now);
    }

    fn send_head(&mut self, now: u64) {
        if self.out.is_some() {
            return;
        }
        let req = match self.queue.front() {
            None => return,
            Some(Output::Acquire) => Request::Acquire,
            Some(Output::ReadState) => Request::Read,
            Some(Output::WriteState { epoch, in_sync }) => Request::Write {
                epoch: *epoch,
                in_sync: in_sync.clone(),
                version: self.version,
            },
            Some(other) => unreachable!("not a lock service request: {other:?}"),
        };
        let id = self.ask_service(req);
        self.out = Some((id, now));
    }

    /// The session is over (expired, or given up): a new one, and the lock
    /// it held is lost.
    fn session_ended(&mut self, now: u64, reason: &str) {
        let old = self.session;
        self.session_counter += 1;
        self.session = self.idx as u64 * 1_000_000 + self.session_counter;
        self.last_answer_ms = now;
        self.releases.clear();
        self.trace(format!(
            "lock service session {old} ended ({reason}); new session {}",
            self.session
        ));
        let waiting = std::mem::take(&mut self.queue);
        self.out = None;
        if let Some(epoch) = self.held.take() {
            self.feed(
                now,
                Input::Lost {
                    epoch,
                    reason: reason.to_string(),
                },
            );
        }
        for req in waiting {
            match req {
                Output::Acquire => self.feed(
                    now,
                    Input::AcquireFailed {
                        reason: reason.to_string(),
                    },
                ),
                Output::WriteState { epoch, .. } => self.feed(
                    now,
                    Input::StateWriteRefused {
                        epoch,
                        why: WriteRefusal::Lost,
                    },
                ),
                // Nobody reads under a lost lock.
                _ => {}
            }
        }
    }

    /// The clock: the coordinator's tick, request timeouts, pings,
    /// heartbeats, giving the session up.
    pub fn tick(&mut self, now: u64) {
        if self.handing_back.is_some_and(|t| now > t) {
            self.handing_back = None;
            self.trace("failback: drained, releasing the lock for the primary".into());
            self.feed(now, Input::Shutdown);
            let wait = HANDBACK_HOLD_OFF_PERIODS * self.coord_config.check_period_ms;
            self.hold_off_until = Some(now + wait);
        }
        if self.hold_off_until.is_some_and(|t| now >= t) {
            self.hold_off_until = None;
            let newest = self.coord.fence().newest();
            self.coord = new_coordinator(&self.cfg, self.coord_config.clone(), newest);
            self.trace("failback hold-off over: asking for the lock again".into());
        }
        if now.saturating_sub(self.last_answer_ms) > self.session_timeout_ms * 7 / 5 {
            self.session_ended(
                now,
                "no answer from the lock service for 7/5 of the session timeout",
            );
        }
        if let Some((_, sent)) = self.out {
            if now.saturating_sub(sent) >= self.request_timeout_ms {
                self.out = None;
                match self.queue.front().cloned() {
                    Some(Output::Acquire) => {
                        self.queue.pop_front();
                        // It may have been applied: give the session (and
                        // any lock it got) up.
                        self.ask_service(Request::Close);
                        self.session_ended(now, "an acquisition was not answered");
                        self.feed(
                            now,
                            Input::AcquireFailed {
                                reason: "the lock service did not answer".into(),
                            },
                        );
                    }
                    Some(Output::WriteState { epoch, .. }) => {
                        self.queue.pop_front();
                        self.feed(
                            now,
                            Input::StateWriteRefused {
                                epoch,
                                why: WriteRefusal::Unavailable,
                            },
                        );
                    }
                    // A read is asked again.
                    _ => {}
                }
            }
        }
        let timeout = self.request_timeout_ms;
        let resend: Vec<u64> = self
            .releases
            .iter()
            .filter(|(_, _, sent)| now.saturating_sub(*sent) >= timeout)
            .map(|(_, epoch, _)| *epoch)
            .collect();
        self.releases
            .retain(|(_, _, sent)| now.saturating_sub(*sent) < timeout);
        for epoch in resend {
            let id = self.ask_service(Request::Release { epoch });
            self.releases.push((id, epoch, now));
        }
        if now.saturating_sub(self.last_ping_ms) >= self.session_timeout_ms / 3 {
            self.last_ping_ms = now;
            self.ask_service(Request::Ping);
        }
        self.data.tick(now);
        self.data_out(now);
        self.feed(now, Input::Tick);
    }

    pub fn receive(&mut self, now: u64, from: Node, wire: Wire) {
        match (from, wire) {
            (
                _,
                Wire::FromService {
                    session,
                    req_id,
                    answer,
                },
            ) => self.on_answer(now, session, req_id, answer),
            (Node::Broker(p), wire) => {
                let newest = self.coord.fence().newest();
                self.data.receive(now, p, wire, newest);
                self.data_out(now);
            }
            (Node::Client, wire) => {
                self.data.receive(now, self.idx, wire, 0);
                self.data_out(now);
            }
            (from, wire) => unreachable!("{wire:?} from {from:?}"),
        }
    }

    /// Carries out what the data side did; its news go to the coordinator.
    fn data_out(&mut self, now: u64) {
        // The coordinator's outputs reach the data side and its news the
        // coordinator: the outermost call carries out both until quiet.
        if self.in_data_out {
            return;
        }
        self.in_data_out = true;
        while !self.data.out.is_empty() {
            for o in std::mem::take(&mut self.data.out) {
                match o {
                    DataOut::Send(to, wire) => self.fx.push(Fx::Send(to, wire)),
                    DataOut::News(HubNews::Known(_)) => {}
                    DataOut::News(HubNews::Preference {
                        peer,
                        prefers_active,
                    }) => self.feed(
                        now,
                        Input::PeerPreference {
                            peer,
                            prefers_active,
                        },
                    ),
                    DataOut::News(HubNews::Heard(peer)) => {
                        self.feed(now, Input::PeerHeard { peer })
                    }
                    DataOut::News(HubNews::CaughtUp(peer)) => {
                        self.trace(format!("{peer} caught up"));
                        self.feed(now, Input::PeerCaughtUp { peer })
                    }
                    DataOut::EpochSeen(epoch) => self.feed(now, Input::EpochSeen { epoch }),
                    DataOut::Applied { from, epoch } => self.fx.push(Fx::Applied { from, epoch }),
                    DataOut::RefusedStale => self.fx.push(Fx::RefusedStale),
                    DataOut::Receipted(m) => self.fx.push(Fx::Receipted(m)),
                    DataOut::Tombstoned(m) => self.fx.push(Fx::Tombstoned(m)),
                    DataOut::Consumed(_) => {}
                    DataOut::Trace(t) => self.trace(t),
                }
            }
        }
        self.in_data_out = false;
    }

    fn on_answer(&mut self, now: u64, session: SessionId, req_id: u64, answer: Answer) {
        if session != self.session {
            return;
        }
        self.last_answer_ms = now;
        match answer {
            Answer::Pong => {}
            Answer::Released => self.releases.retain(|(id, _, _)| *id != req_id),
            Answer::SessionExpired => self.session_ended(now, "session expired"),
            answer => {
                if self.out.map(|(id, _)| id) != Some(req_id) {
                    return;
                }
                self.out = None;
                self.queue.pop_front();
                let input = match answer {
                    Answer::Acquired { epoch } => {
                        self.held = Some(epoch);
                        Input::Acquired { epoch }
                    }
                    Answer::Busy => Input::Busy,
                    Answer::State { state, version } => {
                        self.version = version;
                        if let Some(s) = &state {
                            self.fx.push(Fx::Observed(s.epoch));
                        }
                        Input::StateRead { state }
                    }
                    Answer::Written { epoch, version } => {
                        self.version = version;
                        Input::StateWritten { epoch }
                    }
                    Answer::Refused { epoch, why } => Input::StateWriteRefused { epoch, why },
                    other => unreachable!("handled above: {other:?}"),
                };
                self.feed(now, input);
            }
        }
    }
}

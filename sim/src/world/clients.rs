//! The clients and their wiring: which clients a run has, and carrying out
//! their actions (timers, trace lines, connecting, sending, closing).

use halyard_core::ids::ConnId;
use halyard_core::node::{ConnEvent, Input};

use super::events::Event;
use super::state::World;
use crate::client::{AckStyle, Action, Client, Kind, Protocol};
use crate::rng::Rng;

/// Mixed into the seed for the choice of each client's protocol, so that
/// the choice draws from none of the world's generators: with no AMQP
/// share a run is the same as before AMQP clients existed.
const PROTOCOL_SEED: u64 = 0xA3F1_0C0D_E5A1_7E00;

/// Mixed into the seed for the intruder's generator (none of the world's).
const INTRUDER_SEED: u64 = 0x1A7D_0BAD_5EC0_0000;

impl World {
    /// With users: every client logs in as `sim`, and an intruder, whose
    /// user may not send, sends to the queue the consumers read.
    fn add_intruder(&mut self) {
        let (user, pass) = crate::security_check::USER;
        for client in &mut self.clients {
            client.login = Some((user.into(), pass.into()));
        }
        let mut r = Rng::new(self.cfg.seed ^ INTRUDER_SEED);
        let protocol = if r.chance(0.5) {
            Protocol::Amqp
        } else {
            Protocol::Stomp
        };
        let mut intruder = Client::new(
            crate::security_check::INTRUDER_CLIENT.into(),
            Kind::Producer {
                destination: "/queue/orders".into(),
                total: 5,
                window: 5,
                duplicate_ids: false,
                transaction_size: None,
                wait_for_subscriptions: false,
            },
            protocol,
            self.cfg.nodes,
            r,
        );
        let (user, pass) = crate::security_check::INTRUDER;
        intruder.login = Some((user.into(), pass.into()));
        intruder.expect_refusal = true;
        self.clients.push(intruder);
    }

    /// The run's clients: producers and consumers on a queue, durable
    /// subscribers on a topic, at-most-once traffic and the dead letters.
    /// Each speaks AMQP with the chance `amqp_share`, STOMP otherwise, so
    /// messages also cross from one protocol to the other.
    pub(super) fn make_clients(&mut self) {
        let c = self.cfg.clone();
        let n = c.nodes;
        // The base workload's topic is the one from before the bridge.
        let topic = if c.base_workload {
            "/topic/events"
        } else {
            crate::bridge_check::OUT_DESTINATION
        };
        let mut protocols = Rng::new(c.seed ^ PROTOCOL_SEED);
        let mut add = |w: &mut World, name: String, kind: Kind| {
            let r = w.rng.fork();
            let protocol = if protocols.chance(c.amqp_share) {
                Protocol::Amqp
            } else {
                Protocol::Stomp
            };
            w.clients.push(Client::new(name, kind, protocol, n, r));
        };
        for i in 0..c.queue_producers {
            add(
                self,
                format!("qp{i}"),
                Kind::Producer {
                    destination: "/queue/orders".into(),
                    total: c.messages_per_producer,
                    window: 20,
                    duplicate_ids: c.duplicate_ids,
                    transaction_size: None,
                    wait_for_subscriptions: false,
                },
            );
        }
        for i in 0..c.tx_producers {
            add(
                self,
                format!("tp{i}"),
                Kind::Producer {
                    destination: "/queue/orders".into(),
                    total: c.messages_per_producer,
                    window: 20,
                    duplicate_ids: c.duplicate_ids,
                    transaction_size: Some(5),
                    wait_for_subscriptions: false,
                },
            );
        }
        for i in 0..c.topic_producers {
            add(
                self,
                format!("tpub{i}"),
                Kind::Producer {
                    destination: topic.into(),
                    total: c.messages_per_producer,
                    window: 20,
                    duplicate_ids: c.duplicate_ids,
                    transaction_size: None,
                    wait_for_subscriptions: true,
                },
            );
        }
        for i in 0..c.queue_consumers {
            let ack = match i % 3 {
                0 => AckStyle::Individual,
                1 => AckStyle::Cumulative,
                _ => AckStyle::Transactional,
            };
            add(
                self,
                format!("qc{i}"),
                Kind::Consumer {
                    destination: "/queue/orders".into(),
                    ack,
                    durable: None,
                    nack_chance: 0.02,
                },
            );
        }
        for i in 0..c.durable_subscribers {
            add(
                self,
                format!("ds{i}"),
                Kind::Consumer {
                    destination: topic.into(),
                    ack: AckStyle::Individual,
                    durable: Some((format!("app{i}"), "feed".into())),
                    nack_chance: 0.0,
                },
            );
        }
        if c.bridge {
            for i in 0..c.feed_subscribers {
                add(
                    self,
                    format!("ks{i}"),
                    Kind::Consumer {
                        destination: crate::bridge_check::FEED_DESTINATION.into(),
                        ack: AckStyle::Individual,
                        durable: Some((format!("kapp{i}"), "kfeed".into())),
                        nack_chance: 0.0,
                    },
                );
            }
        }
        // At-most-once traffic: an auto-ack consumer may lose what was in
        // flight when its connection broke, so its queue is not checked for loss.
        add(
            self,
            "ap0".into(),
            Kind::Producer {
                destination: "/queue/telemetry".into(),
                total: c.messages_per_producer / 2,
                window: 20,
                duplicate_ids: c.duplicate_ids,
                transaction_size: None,
                wait_for_subscriptions: false,
            },
        );
        add(
            self,
            "ac0".into(),
            Kind::Consumer {
                destination: "/queue/telemetry".into(),
                ack: AckStyle::Auto,
                durable: None,
                nack_chance: 0.0,
            },
        );
        // The operator's queue: nobody consumes it, the operator purges it
        // (`operator.rs`). Duplicate ids, so a resend is stored at most once
        // and the purge rule can count.
        if c.operator {
            add(
                self,
                "pp0".into(),
                Kind::Producer {
                    destination: format!("/queue/{}", super::PURGED_QUEUE),
                    total: c.messages_per_producer / 4,
                    window: 20,
                    duplicate_ids: true,
                    transaction_size: None,
                    wait_for_subscriptions: false,
                },
            );
        }
        add(
            self,
            "dlq".into(),
            Kind::Consumer {
                destination: "/queue/DLQ".into(),
                ack: AckStyle::Individual,
                durable: None,
                nack_chance: 0.0,
            },
        );
        if c.security {
            self.add_intruder();
        }
        self.network.client_connection = vec![None; self.clients.len()];
        let verbose = self.trace.keeps();
        for c in &mut self.clients {
            c.verbose = verbose;
        }
    }

    /// Runs one step of client `c` and carries out what it asks for, with
    /// a buffer kept between steps. Carrying out a `Connect` opens the
    /// connection, whose greeting is written to a buffer of its own.
    pub(super) fn client_step(
        &mut self,
        c: usize,
        step: impl FnOnce(&mut Client, &mut Vec<Action>),
    ) {
        let mut out = std::mem::take(&mut self.client_out);
        step(&mut self.clients[c], &mut out);
        self.client_actions(c, out.drain(..));
        self.client_out = out;
    }

    /// Carries out a client's actions in order.
    pub(super) fn client_actions(&mut self, c: usize, actions: impl Iterator<Item = Action>) {
        for a in actions {
            match a {
                Action::Timer(t) => self.at(t, Event::ClientTimer { client: c }),
                Action::Trace(s) => {
                    let name = self.clients[c].name.clone();
                    self.log(&name, s);
                }
                Action::Detail(s) => {
                    let now = self.now;
                    self.trace.detail(now, &self.clients[c].name, &s);
                }
                Action::Connect { node } => self.connect(c, node),
                Action::Send(bytes) => {
                    let Some(id) = self.network.client_connection[c] else {
                        continue;
                    };
                    let latency = self.latency();
                    if let Some(t) = self.network.send_to_node(id, self.now, latency) {
                        self.at(
                            t,
                            Event::BytesToNode {
                                connection: id,
                                bytes,
                            },
                        );
                    }
                }
                Action::Close => {
                    if let Some((id, t)) = self.network.close_by_client(c, self.now) {
                        self.at(t, Event::CloseToNode { connection: id });
                    }
                }
            }
        }
    }

    /// Connects client `c` to `node`; a node that is down, not accepting or
    /// cut off from the client closes the connection at once.
    fn connect(&mut self, c: usize, node: usize) {
        let latency = self.latency();
        let host = &self.nodes[node];
        let reachable =
            host.node.is_some() && host.accepting && !self.network.client_cut.contains(&(c, node));
        let id = self
            .network
            .connect(c, node, host.generation, reachable, self.now);
        if !reachable {
            self.at(self.now + latency, Event::CloseToClient { connection: id });
            return;
        }
        self.nodes[node].connections.insert(id);
        let mut actions = Vec::new();
        self.clients[c].on_open(&mut actions);
        self.feed(node, Input::Conn(ConnEvent::Opened { conn: ConnId(id) }));
        self.client_actions(c, actions.drain(..));
    }

    /// Has every durable subscriber subscribed at least once?
    pub(crate) fn durable_subscriptions_exist(&self) -> bool {
        self.clients
            .iter()
            .filter(|c| {
                matches!(
                    &c.kind,
                    Kind::Consumer {
                        durable: Some(_),
                        ..
                    }
                )
            })
            .all(Client::subscribed_once)
    }

    /// Lets topic producers start once every durable subscription exists.
    pub(crate) fn release_topic_producers(&mut self) {
        let ready = self.durable_subscriptions_exist();
        for c in &mut self.clients {
            c.may_start = ready;
        }
    }
}

//! Attaching links: what each AMQP link is to the broker (a producer to
//! an address or the anonymous relay, a consumer of a queue or of a topic
//! subscription named the Qpid JMS way, a browser, the transaction
//! coordinator, a temporary queue or topic, a lookup for unsubscribe).

use super::links::{
    is_durable_source, is_shared, routing_of, LinkKind, SubscriptionName, PRODUCER_CREDIT,
};
use super::session::{AmqpSession, Waiting};
use crate::broker::AckMode;
use crate::message::Routing;
use crate::node::Gate;
use crate::node::{Op, SessionAction, SessionCx, SubscribeOp, SubscribeTarget};
use crate::protocol::amqp::connection::{AttachAnswer, AttachRequest, LinkId};
use crate::protocol::amqp::jms;
use crate::protocol::amqp::{AmqpError, AttachTarget, Condition, Role, SenderSettleMode, Source};
use crate::security::Permission;

/// Most links whose answer or deliveries are tracked per connection.
const LINKS_MAX: usize = 4096;

impl AmqpSession {
    pub(super) fn refuse_attach(
        &mut self,
        link: LinkId,
        condition: Condition,
        text: impl Into<String>,
    ) {
        let _ = self
            .conn
            .refuse_attach(link, AmqpError::new(condition, text.into()));
    }

    pub(super) fn on_attach(&mut self, cx: &mut SessionCx<'_>, req: AttachRequest) {
        if self.links.len() >= LINKS_MAX {
            self.refuse_attach(
                req.link,
                Condition::ResourceLimitExceeded,
                format!("more than {LINKS_MAX} links on one connection"),
            );
            return;
        }
        match req.role {
            // We receive: the client produces (or coordinates transactions).
            Role::Receiver => self.attach_producer(cx, req),
            Role::Sender => self.attach_consumer(cx, req),
        }
    }

    pub(super) fn attach_producer(&mut self, cx: &mut SessionCx<'_>, req: AttachRequest) {
        let link = req.link;
        match &req.target {
            Some(AttachTarget::Coordinator(_)) => {
                self.accept_now(
                    cx.gate == Gate::Block,
                    link,
                    AttachAnswer::echo(&req),
                    LinkKind::Coordinator,
                );
            }
            Some(AttachTarget::Target(t)) if t.terminus.dynamic => {
                // Qpid JMS makes a temporary queue or topic with a dynamic
                // sender link; the node exists once the attach is answered.
                let caps = &t.terminus.capabilities;
                let routing = routing_of(caps).unwrap_or(Routing::Anycast);
                let address = self.temporary_address(routing);
                let mut target = t.clone();
                target.terminus.address = Some(address.clone());
                let answer = AttachAnswer {
                    source: req.source.clone(),
                    target: Some(AttachTarget::Target(target)),
                    ..AttachAnswer::default()
                };
                let kind = LinkKind::Producer {
                    address: Some(address.clone()),
                    routing: Some(routing),
                };
                if routing == Routing::Anycast {
                    self.op(
                        cx,
                        Op::CreateTemporaryQueue { address },
                        Waiting::Attach {
                            link,
                            answer: Box::new(answer),
                            kind,
                        },
                    );
                } else {
                    self.accept_now(cx.gate == Gate::Block, link, answer, kind);
                }
            }
            Some(AttachTarget::Target(t)) => {
                // A producer to a named address needs `send` there (each
                // message is checked again when it is sent; the anonymous
                // relay's messages only then).
                if let Some(address) = t.terminus.address.as_deref() {
                    if let Err(denied) = cx.check(Permission::Send, address) {
                        cx.push(SessionAction::ClientError(denied.to_string()));
                        self.refuse_attach(link, Condition::UnauthorizedAccess, denied.to_string());
                        return;
                    }
                }
                let kind = LinkKind::Producer {
                    address: t.terminus.address.clone(),
                    routing: routing_of(&t.terminus.capabilities),
                };
                self.accept_now(cx.gate == Gate::Block, link, AttachAnswer::echo(&req), kind);
            }
            None => self.refuse_attach(link, Condition::InvalidField, "attach without a target"),
        }
    }

    /// Accepts an attach. Producer links get credit unless producers are
    /// held back (`blocked`; they get it when they may go on).
    pub(super) fn accept_now(
        &mut self,
        blocked: bool,
        link: LinkId,
        answer: AttachAnswer,
        kind: LinkKind,
    ) {
        if self.conn.accept_attach(link, answer).is_ok() {
            let credit = match kind {
                LinkKind::Consumer { .. } => false,
                LinkKind::Producer { .. } => !blocked,
                _ => true,
            };
            self.links.insert(link, kind);
            if credit {
                let _ = self.conn.grant_credit(link, PRODUCER_CREDIT, false);
            }
        }
    }

    pub(super) fn temporary_address(&mut self, routing: Routing) -> String {
        let n = self.next_temporary;
        self.next_temporary += 1;
        let kind = if routing == Routing::Anycast {
            "queue"
        } else {
            "topic"
        };
        format!("temp-{kind}://{}/{}", self.container_id, n)
    }

    pub(super) fn attach_consumer(&mut self, cx: &mut SessionCx<'_>, req: AttachRequest) {
        let link = req.link;
        let Some(source) = req.source.clone() else {
            // Qpid JMS looks a durable subscription up (to unsubscribe) by
            // attaching with its link name and no source.
            let name = SubscriptionName::parse(&req.name);
            let durable = name.durable(&self.container_id);
            match cx.broker.queue_by_name(&durable.queue_name()) {
                Some(q) => {
                    let mut s = Source::default();
                    s.terminus.address = Some(q.address.clone());
                    s.terminus.capabilities = vec![jms::TOPIC.into()];
                    let answer = AttachAnswer {
                        source: Some(s),
                        target: req.target.clone(),
                        ..AttachAnswer::default()
                    };
                    self.accept_now(
                        cx.gate == Gate::Block,
                        link,
                        answer,
                        LinkKind::Lookup { durable },
                    );
                }
                None => self.refuse_attach(
                    link,
                    Condition::NotFound,
                    format!("no subscription {:?}", name.name),
                ),
            }
            return;
        };
        let sub_id = format!("amqp-{}", link.serial());
        let ack = if req.snd_settle_mode == SenderSettleMode::Settled {
            AckMode::Auto
        } else {
            AckMode::ClientIndividual
        };
        let mut answer = AttachAnswer::echo(&req);
        let routing = routing_of(&source.terminus.capabilities);
        let (target, durable, first_op) = if source.terminus.dynamic {
            let routing = routing.unwrap_or(Routing::Anycast);
            let address = self.temporary_address(routing);
            let mut s = source.clone();
            s.terminus.address = Some(address.clone());
            answer.source = Some(s);
            if routing == Routing::Anycast {
                (
                    SubscribeTarget::Queue {
                        address: address.clone(),
                    },
                    None,
                    Some(Op::CreateTemporaryQueue { address }),
                )
            } else {
                (
                    SubscribeTarget::Topic {
                        address,
                        durable: None,
                        shared: false,
                        shared_volatile: None,
                    },
                    None,
                    None,
                )
            }
        } else {
            let Some(address) = source.terminus.address.clone() else {
                self.refuse_attach(link, Condition::InvalidField, "source without an address");
                return;
            };
            let routing = routing
                .or_else(|| cx.broker.address_routing(&address))
                .unwrap_or(Routing::Anycast);
            match routing {
                Routing::Anycast => (SubscribeTarget::Queue { address }, None, None),
                Routing::Multicast => {
                    let name = SubscriptionName::parse(&req.name);
                    let shared = is_shared(&source);
                    if is_durable_source(&source) {
                        let durable = name.durable(&self.container_id);
                        (
                            SubscribeTarget::Topic {
                                address,
                                durable: Some(durable.clone()),
                                shared,
                                shared_volatile: None,
                            },
                            Some(durable),
                            None,
                        )
                    } else if shared {
                        let queue = format!(
                            "{}:shared-volatile",
                            name.durable(&self.container_id).queue_name()
                        );
                        (
                            SubscribeTarget::Topic {
                                address,
                                durable: None,
                                shared: true,
                                shared_volatile: Some(queue),
                            },
                            None,
                            None,
                        )
                    } else {
                        (
                            SubscribeTarget::Topic {
                                address,
                                durable: None,
                                shared: false,
                                shared_volatile: None,
                            },
                            None,
                            None,
                        )
                    }
                }
            }
        };
        if let Some(op) = first_op {
            self.op(cx, op, Waiting::Quiet);
        }
        let kind = LinkKind::Consumer {
            sub_id: sub_id.clone(),
            durable,
        };
        let destination = match &target {
            SubscribeTarget::Queue { address } | SubscribeTarget::Topic { address, .. } => {
                address.clone()
            }
        };
        let is_queue = matches!(target, SubscribeTarget::Queue { .. });
        self.op(
            cx,
            Op::Subscribe(SubscribeOp {
                sub_id,
                target,
                ack,
                window_bytes: None,
                window_messages: None,
                credit: Some(0),
                no_local: source.no_local(),
                selector: source.selector().map(str::to_owned),
                // Distribution mode `copy` on a queue is a browser (JMS
                // QueueBrowser). Qpid JMS also sets it on every durable
                // topic subscription, which is consumed, not browsed (as
                // Artemis reads it: browse only where not multicast).
                browse: is_queue
                    && source
                        .distribution_mode
                        .as_ref()
                        .is_some_and(|m| m.as_str() == "copy"),
                destination,
            }),
            Waiting::Attach {
                link,
                answer: Box::new(answer),
                kind,
            },
        );
    }
}

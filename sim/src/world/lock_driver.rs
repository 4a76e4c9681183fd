//! A node's lock driver: the live lock is partition 0 of a one-partition
//! Kafka consumer group. It joins when the node asks for the lock,
//! heartbeats, tells the node when it gets or loses the partition, and leaves
//! on release. It answers with `Effect`s.

use halyard_core::ha::Role;
use halyard_core::node::{Input, LockEvent};
use halyard_core::Millis;

use super::effects::Effect;
use super::kafka_requests::{KafkaRequest, RequestKind};
use crate::kafka::{GroupStatus, KafkaError};

pub(super) struct LockDriver {
    /// This node's member name in the lock group.
    member: String,
    role: Role,
    allow_failback: bool,
    wanted: bool,
    is_member: bool,
    joining: bool,
    held: bool,
    last_answer_at: Millis,
    announced_standby: bool,
    handback_sent: bool,
    heartbeats_running: bool,
}

impl LockDriver {
    pub(super) fn new(node_name: &str, role: Role, allow_failback: bool) -> LockDriver {
        // A failback primary sorts first, so a free lock goes to it.
        let rank = if role == Role::Primary { 0 } else { 1 };
        LockDriver {
            member: format!("{rank}-{node_name}"),
            role,
            allow_failback,
            wanted: false,
            is_member: false,
            joining: false,
            held: false,
            last_answer_at: 0,
            announced_standby: false,
            handback_sent: false,
            heartbeats_running: false,
        }
    }

    /// Forgets everything but the time of the last answer (the node restarted).
    pub(super) fn reset(&mut self) {
        self.wanted = false;
        self.is_member = false;
        self.joining = false;
        self.held = false;
        self.announced_standby = false;
        self.handback_sent = false;
        self.heartbeats_running = false;
    }

    pub(super) fn acquire(&mut self, out: &mut Vec<Effect>) {
        self.wanted = true;
        self.handback_sent = false;
        self.join(out);
        if !self.heartbeats_running {
            self.heartbeats_running = true;
            out.push(Effect::ArmHeartbeat);
        }
    }

    pub(super) fn release(&mut self, out: &mut Vec<Effect>) {
        self.wanted = false;
        self.held = false;
        self.announced_standby = false;
        if self.is_member || self.joining {
            self.is_member = false;
            self.joining = false;
            out.push(Effect::Notify(KafkaRequest::LeaveGroup {
                member: self.member.clone(),
            }));
        }
    }

    /// The answer to a join or a heartbeat.
    pub(super) fn on_group(
        &mut self,
        result: Result<GroupStatus, KafkaError>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        match result {
            Ok(status) => {
                if !self.wanted {
                    return;
                }
                self.joining = false;
                self.is_member = true;
                self.last_answer_at = now;
                self.on_status(&status, out);
            }
            Err(_) => {
                self.is_member = false;
                if self.held {
                    self.held = false;
                    out.push(Self::lost(
                        "expelled from the lock group (session expired)".into(),
                    ));
                }
                if self.wanted {
                    self.join(out);
                }
            }
        }
    }

    pub(super) fn on_timeout(&mut self) {
        self.joining = false;
    }

    /// A heartbeat is due. Heartbeats stop (no next one is armed) once the
    /// lock is neither wanted nor held.
    pub(super) fn on_heartbeat_due(&mut self, now: Millis, session_ms: u64, out: &mut Vec<Effect>) {
        if !self.wanted && !self.held {
            self.heartbeats_running = false;
            return;
        }
        // The client side of the session timeout: no answer for a whole
        // session means the group has moved on without us.
        if self.held && now > self.last_answer_at + session_ms {
            self.held = false;
            self.is_member = false;
            out.push(Self::lost(format!(
                "no heartbeat answer for {session_ms} ms"
            )));
        }
        if self.is_member {
            out.push(Effect::Request(
                RequestKind::Heartbeat,
                KafkaRequest::Heartbeat {
                    member: self.member.clone(),
                },
            ));
        } else {
            self.join(out);
        }
        out.push(Effect::ArmHeartbeat);
    }

    fn join(&mut self, out: &mut Vec<Effect>) {
        if !self.wanted || self.joining || self.is_member {
            return;
        }
        self.joining = true;
        out.push(Effect::Request(
            RequestKind::JoinGroup,
            KafkaRequest::JoinGroup {
                member: self.member.clone(),
            },
        ));
    }

    fn on_status(&mut self, s: &GroupStatus, out: &mut Vec<Effect>) {
        let mine = s.holder.as_deref() == Some(self.member.as_str());
        if mine && !self.held {
            self.held = true;
            out.push(Effect::Input(Input::Lock(LockEvent::Acquired)));
        } else if !mine && self.held {
            self.held = false;
            out.push(Self::lost("lock partition reassigned".into()));
        } else if !mine && !self.announced_standby {
            self.announced_standby = true;
            out.push(Effect::Input(Input::Lock(LockEvent::Standby)));
        }
        if mine
            && self.allow_failback
            && self.role == Role::Backup
            && !self.handback_sent
            && s.members.iter().any(|m| m.starts_with("0-"))
        {
            self.handback_sent = true;
            out.push(Effect::Input(Input::Lock(LockEvent::HandBack)));
        }
    }

    fn lost(reason: String) -> Effect {
        Effect::Input(Input::Lock(LockEvent::Lost { reason }))
    }
}

//! Work waiting for the journal.
//!
//! Every client frame that changes or observes state takes a place in one
//! FIFO. An entry completes when its batch is durable (or at once if it has
//! none) *and* everything before it has completed, so receipts, deliveries
//! and state changes happen in exactly the order the journal holds them.

use std::sync::Arc;

use bytes::Bytes;

use super::session::SubscribeReq;
use super::{ConnRequest, Node, Output};
use crate::broker::RefKey;
use crate::ids::{ConnId, Id, Ticket};
use crate::journal::{Entry, StoredMessage};
use crate::protocol::stomp::{encode_to_bytes, Command, Frame};

pub(crate) struct Pending {
    pub ticket: Option<Ticket>,
    pub done: bool,
    /// Applied to the broker when the entry completes.
    pub entries: Vec<Entry>,
    pub work: Work,
}

/// A send whose turn has come: in-memory references to add.
pub(crate) struct VolatileSend {
    pub id: Id,
    pub message: Arc<StoredMessage>,
    pub queues: Vec<Id>,
}

pub(crate) enum Work {
    Activation {
        epoch: u32,
    },
    /// SEND, ACK, NACK, BEGIN, ABORT, UNSUBSCRIBE...: finish, then RECEIPT.
    Frame {
        conn: ConnId,
        receipt: Option<String>,
        sends: Vec<VolatileSend>,
        /// Non-journaled references whose ack completes here.
        drops: Vec<RefKey>,
        /// Non-journaled references moved to another queue (dead-lettering).
        moves: Vec<(RefKey, Id)>,
        /// (address, duplicate id) no longer pending.
        dups: Vec<(String, String)>,
    },
    Subscribe {
        conn: ConnId,
        receipt: Option<String>,
        req: SubscribeReq,
    },
    Disconnect {
        conn: ConnId,
        receipt: Option<String>,
    },
    /// ERROR, then close: after the work that came before the bad frame.
    Error {
        conn: ConnId,
        frame: Frame,
    },
    /// Auto-acks and tombstones nobody waits for.
    Housekeeping {
        volatile: Vec<RefKey>,
    },
}

impl Work {
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Work::Frame { conn, .. }
            | Work::Subscribe { conn, .. }
            | Work::Disconnect { conn, .. }
            | Work::Error { conn, .. } => Some(*conn),
            Work::Activation { .. } | Work::Housekeeping { .. } => None,
        }
    }

    pub fn receipt_only(conn: ConnId, receipt: Option<String>) -> Work {
        Work::Frame {
            conn,
            receipt,
            sends: Vec::new(),
            drops: Vec::new(),
            moves: Vec::new(),
            dups: Vec::new(),
        }
    }
}

impl Node {
    pub(super) fn finish_work(&mut self, work: Work) {
        match work {
            Work::Activation { epoch } => self.became_live(epoch),
            Work::Frame {
                conn,
                receipt,
                sends,
                drops,
                moves,
                dups,
            } => {
                for s in sends {
                    self.broker.add_volatile(s.id, &s.message, &s.queues);
                }
                for key in drops {
                    self.broker.drop_volatile(key);
                }
                for (key, to) in moves {
                    self.broker.move_volatile(key, to);
                }
                for d in dups {
                    self.planned_dups.remove(&d);
                }
                self.send_receipt(conn, receipt);
            }
            Work::Subscribe { conn, receipt, req } => {
                if self.conns.contains_key(&conn) {
                    match self.attach(conn, &req) {
                        Ok(()) => self.send_receipt(conn, receipt),
                        Err(msg) => self.protocol_error(conn, &msg, "", receipt.as_deref()),
                    }
                }
            }
            Work::Disconnect { conn, receipt } => {
                self.send_receipt(conn, receipt);
                if self.conns.contains_key(&conn) {
                    self.close_conn(conn);
                }
            }
            Work::Error { conn, frame } => {
                self.send_frame(conn, &frame);
                self.close_conn(conn);
            }
            Work::Housekeeping { volatile } => {
                for key in volatile {
                    self.broker.drop_volatile(key);
                }
            }
        }
    }

    pub(super) fn send_receipt(&mut self, conn: ConnId, receipt: Option<String>) {
        if let Some(r) = receipt {
            let f = Frame::new(Command::Receipt).with_header("receipt-id", r);
            self.send_frame(conn, &f);
        }
    }

    pub(super) fn send_frame(&mut self, conn: ConnId, frame: &Frame) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let bytes = encode_to_bytes(frame, c.version);
        self.send_bytes(conn, bytes);
    }

    pub(super) fn send_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_send = self.now;
        self.broker.charge(conn, bytes.len());
        self.outputs
            .push_back(Output::Conn(ConnRequest::Send { conn, bytes }));
    }

    /// Journal entries and in-memory moves that take settling references to
    /// the dead-letter queue.
    pub(super) fn dead_letter(&mut self, keys: &[RefKey]) -> (Vec<Entry>, Vec<(RefKey, Id)>) {
        if keys.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let dla = self.config.broker.dead_letter_address.clone();
        let (dlq, create) = self.broker.plan_queue(
            &dla,
            &dla,
            crate::journal::QueueKind::Anycast,
            &mut self.ids,
        );
        let mut entries: Vec<Entry> = create
            .into_iter()
            .map(|d| Entry::Put(crate::journal::Record::QueueCreated(d)))
            .collect();
        let mut moves = Vec::new();
        for k in keys {
            if k.durable {
                entries.push(Entry::Put(crate::journal::Record::Routed {
                    id: k.message,
                    queue: dlq,
                }));
                entries.push(Entry::Put(crate::journal::Record::Acked {
                    id: k.message,
                    queue: k.queue,
                }));
            } else {
                moves.push((*k, dlq));
            }
        }
        (entries, moves)
    }
}

//! Transactions: sends and settlements held per connection until commit,
//! then written as one atomic journal batch; abort puts settled messages
//! back in line, as JMS's rollback does.

use super::conn::Tx;
use super::node::Node;
use super::ops::{OpError, TxName};
use super::work::{Effects, Work};
use crate::broker::Settled;
use crate::ids::ConnId;
use crate::message::Message;

impl Node {
    fn answer_in_turn(&mut self, conn: ConnId, tag: u64) {
        self.submit(
            Vec::new(),
            Work::Op {
                conn,
                tag: Some(tag),
                effects: Effects::default(),
            },
        );
    }

    pub(crate) fn tx_begin(&mut self, conn: ConnId, tag: u64, tx: TxName) -> Result<(), OpError> {
        let max = self.config.transactions_per_conn_max;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if c.txs.contains_key(&tx) {
            return Err(OpError::TransactionOpen(tx));
        }
        if c.txs.len() >= max {
            return Err(OpError::TooManyTransactions(max));
        }
        c.txs.insert(tx, Tx::default());
        self.answer_in_turn(conn, tag);
        Ok(())
    }

    pub(crate) fn tx_send(
        &mut self,
        conn: ConnId,
        tag: u64,
        tx: &str,
        message: Message,
    ) -> Result<(), OpError> {
        let (ops_max, bytes_max) = (
            self.config.transaction_ops_max,
            self.config.transaction_bytes_max,
        );
        let t = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.txs.get_mut(tx))
            .ok_or_else(|| OpError::UnknownTransaction(tx.to_string()))?;
        let size = message.body.size_bytes();
        if t.ops() >= ops_max || t.bytes + size > bytes_max {
            return Err(OpError::TransactionTooLarge {
                tx: tx.to_string(),
                ops_max,
                bytes_max,
            });
        }
        t.bytes += size;
        t.sends.push(message);
        self.answer_in_turn(conn, tag);
        Ok(())
    }

    pub(crate) fn tx_settle(
        &mut self,
        conn: ConnId,
        tag: u64,
        tx: &str,
        ack: u64,
    ) -> Result<(), OpError> {
        let (ops_max, bytes_max) = (
            self.config.transaction_ops_max,
            self.config.transaction_bytes_max,
        );
        match self
            .conns
            .get(&conn)
            .and_then(|c| c.txs.get(tx))
            .map(Tx::ops)
        {
            None => return Err(OpError::UnknownTransaction(tx.to_string())),
            Some(n) if n >= ops_max => {
                return Err(OpError::TransactionTooLarge {
                    tx: tx.to_string(),
                    ops_max,
                    bytes_max,
                })
            }
            Some(_) => {}
        }
        let keys = self.broker.settle(conn, ack)?;
        if let Some(t) = self.conns.get_mut(&conn).and_then(|c| c.txs.get_mut(tx)) {
            t.acks.extend(keys);
        }
        self.answer_in_turn(conn, tag);
        Ok(())
    }

    fn take_tx(&mut self, conn: ConnId, tx: &str) -> Result<Tx, OpError> {
        self.conns
            .get_mut(&conn)
            .and_then(|c| c.txs.remove(tx))
            .ok_or_else(|| OpError::UnknownTransaction(tx.to_string()))
    }

    /// One atomic batch: every send and every settlement of the transaction.
    pub(crate) fn tx_commit(&mut self, conn: ConnId, tag: u64, tx: &str) -> Result<(), OpError> {
        let t = self.take_tx(conn, tx)?;
        let mut entries = Vec::new();
        let mut effects = Effects::default();
        for message in t.sends {
            if let Err(e) = self.plan_one_send(message, Some(conn), &mut entries, &mut effects) {
                // Nothing of the transaction is applied; its settlements go back.
                let dead = self.broker.requeue(&t.acks);
                self.dead_letter_now(conn, dead);
                for d in effects.dups {
                    self.planned_dups.remove(&d);
                }
                return Err(e);
            }
        }
        self.broker.count_settled(&t.acks, Settled::Acknowledged);
        entries.extend(self.broker.settle_entries(&t.acks));
        effects.drops = t.acks.into_iter().filter(|k| !k.durable).collect();
        self.submit(
            entries,
            Work::Op {
                conn,
                tag: Some(tag),
                effects,
            },
        );
        Ok(())
    }

    pub(crate) fn tx_abort(&mut self, conn: ConnId, tag: u64, tx: &str) -> Result<(), OpError> {
        let t = self.take_tx(conn, tx)?;
        // Settled messages of a rolled-back transaction are redelivered, as in JMS.
        let dead = self.broker.requeue(&t.acks);
        let (entries, moves) = self.dead_letter(&dead);
        self.submit(
            entries,
            Work::Op {
                conn,
                tag: Some(tag),
                effects: Effects {
                    moves,
                    ..Effects::default()
                },
            },
        );
        Ok(())
    }
}

//! The journal driver's reads of paged messages, as a real Kafka journal
//! driver would do them: Kafka cannot look a key up, so the driver keeps
//! the offset of every stored message's record (from the records it loaded
//! and the transactions it committed) and fetches from that offset.
//! Compaction never moves a record, and a paged message's record is the
//! latest of its key, so the record found there is the message or the
//! message is not in the journal (the node then steps down).

use std::collections::BTreeMap;
use std::sync::Arc;

use halyard_core::ids::Id;
use halyard_core::journal::codec::decode_key;
use halyard_core::journal::{Entry, Key, Record};
use halyard_core::message::Message;

use super::decoded::DecodedRecords;
use crate::kafka::FetchResult;

/// One `Read` step in flight.
struct Reading {
    asked: Vec<Id>,
    /// Index in `asked` of the next message to look for.
    next: usize,
    found: Vec<(Id, Arc<Message>)>,
    attempts: u32,
}

/// What the reader needs next.
pub(super) enum ReadStep {
    /// Fetch from this offset.
    Fetch(u64),
    /// The read is over: `found` of `asked`.
    Done {
        asked: Vec<Id>,
        found: Vec<(Id, Arc<Message>)>,
    },
}

#[derive(Default)]
pub(super) struct PageReader {
    /// Message id -> offset of its `MessageStored` record.
    offsets: BTreeMap<Id, u64>,
    reading: Option<Reading>,
}

impl PageReader {
    /// A new open reads the journal again: what was known goes.
    pub(super) fn reset(&mut self) {
        self.offsets.clear();
        self.reading = None;
    }

    pub(super) fn busy(&self) -> bool {
        self.reading.is_some()
    }

    /// A record of the journal at `offset` (loaded, or committed by us).
    pub(super) fn note(&mut self, offset: u64, entry: &Entry) {
        match entry {
            Entry::Put(Record::MessageStored { id, .. }) => {
                self.offsets.insert(*id, offset);
            }
            Entry::Tombstone(Key::Message(id)) => {
                self.offsets.remove(id);
            }
            _ => {}
        }
    }

    /// A committed record by its raw key (only message keys matter).
    pub(super) fn note_raw(&mut self, offset: u64, key: &[u8], tombstone: bool) {
        if !key.starts_with(b"m/") {
            return;
        }
        if let Ok(Key::Message(id)) = decode_key(key) {
            if tombstone {
                self.offsets.remove(&id);
            } else {
                self.offsets.insert(id, offset);
            }
        }
    }

    /// Starts a `Read` step.
    pub(super) fn start(&mut self, asked: Vec<Id>) -> ReadStep {
        assert!(self.reading.is_none(), "a read while another is in flight");
        self.reading = Some(Reading {
            asked,
            next: 0,
            found: Vec::new(),
            attempts: 0,
        });
        self.step()
    }

    /// The next fetch, or the end of the read.
    fn step(&mut self) -> ReadStep {
        let r = self.reading.as_mut().expect("a read in flight");
        while let Some(id) = r.asked.get(r.next) {
            match self.offsets.get(id) {
                Some(offset) => return ReadStep::Fetch(*offset),
                // Not in the journal as far as we know: the node judges.
                None => r.next += 1,
            }
        }
        let r = self.reading.take().expect("a read in flight");
        ReadStep::Done {
            asked: r.asked,
            found: r.found,
        }
    }

    /// A fetch for the read came back: takes every message it covers.
    pub(super) fn on_fetched(
        &mut self,
        fetched: &FetchResult,
        decoded: &mut DecodedRecords,
    ) -> Option<ReadStep> {
        let r = self.reading.as_mut()?;
        r.attempts = 0;
        let range = match (fetched.records.first(), fetched.records.last()) {
            (Some(f), Some(l)) => Some(f.offset..=l.offset),
            _ => None,
        };
        let mut first = true;
        while let Some(id) = r.asked.get(r.next).copied() {
            let Some(offset) = self.offsets.get(&id).copied() else {
                r.next += 1;
                continue;
            };
            match fetched.records.iter().find(|f| f.offset == offset) {
                Some(rec) => {
                    if let Ok(Entry::Put(Record::MessageStored {
                        id: stored,
                        message,
                        ..
                    })) = decoded.get(rec.offset, &rec.key, rec.value.as_deref())
                    {
                        if stored == id {
                            r.found.push((id, message));
                        }
                    }
                }
                // Outside what this fetch covered: fetch from it next. The
                // message this fetch was for is simply not there.
                None if !first && !range.as_ref().is_some_and(|rg| rg.contains(&offset)) => break,
                None => {}
            }
            first = false;
            r.next += 1;
        }
        Some(self.step())
    }

    /// A fetch timed out: the offset to fetch again, or `None` once the
    /// read should fail (too many attempts) or none is in flight.
    pub(super) fn on_timeout(&mut self, attempts_max: u32) -> Option<Result<u64, Vec<Id>>> {
        let r = self.reading.as_mut()?;
        r.attempts += 1;
        if r.attempts > attempts_max {
            let r = self.reading.take().expect("a read in flight");
            return Some(Err(r.asked));
        }
        let id = r.asked.get(r.next)?;
        self.offsets.get(id).map(|o| Ok(*o))
    }
}

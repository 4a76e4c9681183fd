//! The node's side of paging (see `broker::paging`): asking the journal
//! for the paged messages dispatch reached, and putting the answers back.

use std::sync::Arc;

use super::node::Node;
use super::ports::{JournalRequest, Output};
use super::Event;
use crate::ha::HaState;
use crate::ids::Id;
use crate::message::Message;

impl Node {
    fn serving(&self) -> bool {
        matches!(self.state, HaState::Live | HaState::Draining { .. })
    }

    /// After dispatch: one read request for the paged messages queues
    /// stopped at (nothing if none, or enough reads are in flight).
    pub(crate) fn request_page_reads(&mut self) {
        if !self.serving() {
            return;
        }
        let ids = self.broker.take_page_reads();
        if ids.is_empty() {
            return;
        }
        assert!(
            self.config.journal_reads,
            "paged messages without a journal driver that reads them back"
        );
        self.counters.page_reads += 1;
        self.outputs
            .push_back(Output::Journal(JournalRequest::Read { ids }));
    }

    /// The journal's answer to a read. Not serving: the broker it was for
    /// is gone (a new activation reads its own).
    pub(crate) fn on_page_read(
        &mut self,
        asked: Vec<Id>,
        found: Vec<(Id, Arc<Message>)>,
        error: Option<String>,
    ) {
        if !self.serving() {
            return;
        }
        // Every message asked for was paged, so durable and journaled: one
        // missing is a broken journal (or driver), never skipped silently.
        let missing = asked.len().saturating_sub(found.len());
        let error = error.or_else(|| {
            (missing > 0).then(|| {
                let first = asked
                    .iter()
                    .find(|id| !found.iter().any(|(f, _)| f == *id))
                    .map_or(String::new(), Id::to_string);
                format!(
                    "{missing} of {} messages not in the journal, first {first}",
                    asked.len()
                )
            })
        });
        if let Some(reason) = error {
            self.step_down(Event::JournalReadFailed { reason });
            return;
        }
        let n = found.len() as u64;
        match self.broker.paged_in(found, &asked) {
            Ok(()) => self.counters.paged_in += n,
            Err(reason) => self.step_down(Event::JournalReadFailed { reason }),
        }
    }
}

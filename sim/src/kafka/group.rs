//! A consumer group: members with their last heartbeat and the holder of partition 0 of the one-partition lock topic.

use std::collections::BTreeMap;

use halyard_core::Millis;

use super::error::KafkaError;

#[derive(Clone, Debug)]
struct Member {
    last_heartbeat: Millis,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Group {
    members: BTreeMap<String, Member>,
    holder: Option<String>,
}

/// What a member learns from a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub holder: Option<String>,
    pub members: Vec<String>,
}

impl Group {
    pub(super) fn join(&mut self, now: Millis, member: &str) -> GroupStatus {
        self.members.insert(
            member.to_string(),
            Member {
                last_heartbeat: now,
            },
        );
        self.assign();
        self.status()
    }

    pub(super) fn heartbeat(
        &mut self,
        now: Millis,
        member: &str,
    ) -> Result<GroupStatus, KafkaError> {
        match self.members.get_mut(member) {
            None => Err(KafkaError::UnknownMember(member.to_string())),
            Some(m) => {
                m.last_heartbeat = now;
                Ok(self.status())
            }
        }
    }

    pub(super) fn leave(&mut self, member: &str) {
        if self.members.remove(member).is_some() {
            if self.holder.as_deref() == Some(member) {
                self.holder = None;
            }
            self.assign();
        }
    }

    /// Expels the members silent for a whole session.
    pub(super) fn expire(&mut self, now: Millis, session_ms: u64) {
        let before = self.members.len();
        self.members
            .retain(|_, m| m.last_heartbeat + session_ms > now);
        if self.members.len() < before {
            if self
                .holder
                .as_ref()
                .is_some_and(|h| !self.members.contains_key(h))
            {
                self.holder = None;
            }
            self.assign();
        }
    }

    /// Sticky assignment: a free partition goes to the first member by name.
    fn assign(&mut self) {
        if self.holder.is_none() {
            self.holder = self.members.keys().next().cloned();
        }
    }

    pub(super) fn status(&self) -> GroupStatus {
        GroupStatus {
            holder: self.holder.clone(),
            members: self.members.keys().cloned().collect(),
        }
    }
}

//! A consumer group: members with their last heartbeat, the generation, and
//! the holder of partition 0 of the one-partition lock topic.

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
    generation: u64,
    holder: Option<String>,
}

/// What a member learns from a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub generation: u64,
    pub holder: Option<String>,
    pub members: Vec<String>,
}

impl Group {
    pub(super) fn join(&mut self, now: Millis, member: &str) -> GroupStatus {
        if self
            .members
            .insert(
                member.to_string(),
                Member {
                    last_heartbeat: now,
                },
            )
            .is_none()
        {
            self.generation += 1;
        }
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
            self.generation += 1;
            if self.holder.as_deref() == Some(member) {
                self.holder = None;
            }
            self.assign();
        }
    }

    /// Expels the members silent for a whole session; returns how many.
    pub(super) fn expire(&mut self, now: Millis, session_ms: u64) -> u64 {
        let before = self.members.len();
        self.members
            .retain(|_, m| m.last_heartbeat + session_ms > now);
        let expired = before - self.members.len();
        if expired > 0 {
            self.generation += 1;
            if self
                .holder
                .as_ref()
                .is_some_and(|h| !self.members.contains_key(h))
            {
                self.holder = None;
            }
            self.assign();
        }
        expired as u64
    }

    /// Sticky assignment: a free partition goes to the first member by name.
    fn assign(&mut self) {
        if self.holder.is_none() {
            self.holder = self.members.keys().next().cloned();
            if self.holder.is_some() {
                self.generation += 1;
            }
        }
    }

    pub(super) fn status(&self) -> GroupStatus {
        GroupStatus {
            generation: self.generation,
            holder: self.holder.clone(),
            members: self.members.keys().cloned().collect(),
        }
    }
}

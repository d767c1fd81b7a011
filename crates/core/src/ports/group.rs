//! Groups: how the processes running the engine share the partitions of some streams, each
//! partition owned by one member at a time (a Kafka consumer group; in one process, the
//! process alone).
//!
//! A member learns what it owns through [`Membership::next`]: partitions are
//! [`GroupChange::Assigned`] to it and later [`GroupChange::Revoked`]. On a revocation the
//! member stops the work on those partitions, commits what it has (unless the partitions
//! were lost: the group already gave them to another member), then calls
//! [`Membership::released`], which lets the group hand them over. Correctness does not rest
//! on the group: a new owner claims each task in the analytics store, fencing any older
//! owner that has not noticed yet ([`super::AnalyticsStore::claim`]). The group only keeps
//! two owners from fencing each other back and forth, and spreads the work.

use std::fmt::Debug;

use async_trait::async_trait;

use super::PortError;
use crate::event::StreamName;

/// A partition of a stream: the unit a group hands out.
pub type StreamPartition = (StreamName, u32);

/// A change in what a member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// These partitions are the member's now, in addition to those it had.
    Assigned(Vec<StreamPartition>),
    /// These partitions are no longer the member's: it stops their work, then calls
    /// [`Membership::released`] before anything else.
    Revoked {
        /// The partitions taken away.
        partitions: Vec<StreamPartition>,
        /// Whether the group gave them away already (the member missed its session
        /// timeout): their new owner may be running, so committing is pointless (it would
        /// be fenced, or be read by the new owner's claim if it came first: both are safe).
        lost: bool,
    },
}

/// A process's membership of one group; dropping it leaves the group, which hands its
/// partitions to the other members at once.
#[async_trait]
pub trait Membership: Send + Debug {
    /// Waits for the next change in what this member owns. The first is the initial
    /// assignment (possibly empty, when the other members own every partition).
    async fn next(&mut self) -> Result<GroupChange, PortError>;

    /// Says that the work on the partitions of the last [`GroupChange::Revoked`] has
    /// stopped and committed: the group may give them to other members.
    async fn released(&mut self) -> Result<(), PortError>;

    /// Whether other members may own partitions of the group: then a task fenced by a newer
    /// owner only stops (the group's revocation follows). A sole member's task is fenced
    /// only by something outside the group (a reset, a processor of another build), which
    /// stops the process.
    fn has_peers(&self) -> bool {
        true
    }
}

/// The only member of its group (one process: the embedded log, tests): it owns every
/// partition from the start, and nothing is ever revoked.
#[derive(Debug)]
pub struct SoleMember {
    initial: Option<Vec<StreamPartition>>,
}

impl SoleMember {
    /// A member owning `partitions`.
    #[must_use]
    pub fn new(partitions: Vec<StreamPartition>) -> Self {
        Self {
            initial: Some(partitions),
        }
    }
}

#[async_trait]
impl Membership for SoleMember {
    async fn next(&mut self) -> Result<GroupChange, PortError> {
        match self.initial.take() {
            Some(partitions) => Ok(GroupChange::Assigned(partitions)),
            None => std::future::pending().await,
        }
    }

    async fn released(&mut self) -> Result<(), PortError> {
        Ok(())
    }

    fn has_peers(&self) -> bool {
        false
    }
}

//! Lost-record accounting: records that expired before a consumer group read them are
//! counted in `tributary_log_records_lost_total` once per group, partition and range in a
//! process, however often a restarting task reopens its reader at the same offset.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A partition read by a consumer group: group, topic, partition.
pub(super) type LostKey = (String, String, i32);

/// Records `[from, to)` of a partition that expired before a reader got to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LostRange {
    pub(super) from: i64,
    pub(super) to: i64,
}

/// The last range of expired records counted as lost, per consumer group, topic and
/// partition (see [`newly_lost`]). Shared by the clones of a [`KafkaLog`](super::KafkaLog).
#[derive(Debug, Default)]
pub(super) struct LostRecords {
    counted: Mutex<HashMap<LostKey, LostRange>>,
}

impl LostRecords {
    /// Remembers `range` as lost for `key` and returns how many of its records were not
    /// counted yet ([`newly_lost`]).
    pub(super) fn count(&self, key: LostKey, range: LostRange) -> u64 {
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        newly_lost(counted.insert(key, range), range)
    }
}

/// How many of the records `range` lost were not counted yet, given the range counted
/// when a reader of the same group and partition was last opened (`previous`). A task
/// that fails before checkpointing past a loss is reopened at the same offset, and finds
/// the same records missing (and maybe more, expired since): only the new ones count.
/// A reader opened at another offset started after the previous range (its checkpoint
/// moved on), and a log start below the previous one is another topic's (a log start
/// never moves back): all of such a range is new.
fn newly_lost(previous: Option<LostRange>, range: LostRange) -> u64 {
    let counted_to = match previous {
        Some(previous) if previous.from == range.from && previous.to <= range.to => previous.to,
        _ => range.from,
    };
    u64::try_from(range.to - counted_to).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: i64, to: i64) -> LostRange {
        LostRange { from, to }
    }

    /// A reader reopened at the same offset counts only what expired since; one opened
    /// elsewhere counts its whole range.
    #[test]
    fn lost_records_are_counted_once() {
        assert_eq!(newly_lost(None, range(2, 6)), 4);
        assert_eq!(newly_lost(Some(range(2, 6)), range(2, 6)), 0);
        assert_eq!(newly_lost(Some(range(2, 6)), range(2, 9)), 3);
        assert_eq!(newly_lost(Some(range(2, 6)), range(8, 10)), 2);
        // Another topic under the same name, whose log start is below the last one's.
        assert_eq!(newly_lost(Some(range(2, 600)), range(2, 5)), 3);
    }
}

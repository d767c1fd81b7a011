//! Keeping what a task refused: late events, log records that hold no event, raw events
//! the document store refused.
//!
//! Contract: a task stores the dead letters of a batch before it checkpoints offsets past
//! them, so a crash in between only replays refusals whose ids are already stored (storing
//! them again changes nothing). Each write of a dead letter is counted in
//! `tributary_dead_letters_total{origin}`.

use std::error::Error;

use tributary_core::DeadLetter;
use tributary_core::ports::{DocumentStore, PortError};

use crate::EngineError;

/// Stores `letters` (nothing when there are none) and counts them.
///
/// A batch the document store refuses on its own ([`PortError::Refused`]) is retried
/// letter by letter; a letter refused on its own is logged at error level with everything it
/// holds but its raw data, and counted in `tributary_dead_letters_refused_total{origin}`:
/// what it refers to stays in the log, and one letter cannot stall a task.
///
/// # Errors
/// Any other error of the document store: the task restarts from its last checkpoint and
/// meets the same refusals again.
pub(crate) async fn keep(
    documents: &dyn DocumentStore,
    letters: &[DeadLetter],
) -> Result<(), EngineError> {
    if letters.is_empty() {
        return Ok(());
    }
    match documents.put_dead_letters(letters).await {
        Ok(()) => {
            for letter in letters {
                metrics::counter!("tributary_dead_letters_total", "origin" => letter.origin.kind())
                    .increment(1);
            }
            Ok(())
        }
        Err(PortError::Refused { .. }) if letters.len() > 1 => {
            for letter in letters {
                Box::pin(keep(documents, std::slice::from_ref(letter))).await?;
            }
            Ok(())
        }
        Err(err @ PortError::Refused { .. }) => {
            for letter in letters {
                metrics::counter!("tributary_dead_letters_refused_total", "origin" => letter.origin.kind())
                    .increment(1);
                tracing::error!(
                    id = %letter.id,
                    stream = %letter.stream,
                    origin = letter.origin.kind(),
                    reason = %letter.reason,
                    error = &err as &dyn Error,
                    "dead letter refused by the document store; what it refers to stays in the log"
                );
            }
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

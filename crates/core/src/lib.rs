//! Tributary's core: the domain and the pipeline logic, with no I/O.
//!
//! Everything here is deterministic and synchronous, except the port traits in [`ports`],
//! which the adapters in `tributary-connectors` implement for the embedded mode and for the
//! real servers (Kafka, PostgreSQL, MongoDB, Redis). The engine drives a pipeline through
//! these traits only, so it never knows which mode it runs in.

pub mod aggregate;
pub mod dead_letter;
pub mod event;
pub mod expr;
pub mod json;
pub mod lookup;
pub mod parse;
pub mod partition;
pub mod payload;
pub mod pipeline;
pub mod plan;
pub mod ports;
pub mod record;
pub mod repartition;
pub mod results;
pub mod value;
pub mod window;

pub use dead_letter::DeadLetter;
pub use event::{Event, EventId, StreamName, Timestamp};

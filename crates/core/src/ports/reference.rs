//! The reference port: the tables a pipeline's lookups read ([`crate::lookup`]).

use std::fmt::Debug;

use async_trait::async_trait;

use super::PortError;

/// Where a lookup table's rows are read from: a file, or a database table.
///
/// Contract: [`ReferenceSource::load`] reads the whole table as it is now, each row as a
/// JSON object (column name → value), and may be called again to read it anew. A source
/// that does not answer is [`PortError::Unavailable`] (retrying later may help); a table
/// that is missing, refused to the caller or malformed is [`PortError::Refused`], with the
/// cause (for a file, the line at fault). A table larger than the bounds of
/// [`crate::lookup`] is refused.
#[async_trait]
pub trait ReferenceSource: Send + Sync + Debug {
    /// Every row of the table.
    async fn load(&self) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, PortError>;
}

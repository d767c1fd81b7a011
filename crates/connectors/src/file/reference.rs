//! A lookup table read from a file.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tributary_core::lookup::{self, FileFormat, MAX_FILE_BYTES, ReferenceRow, TableError};
use tributary_core::ports::{PortError, ReferenceSource};

/// The system name carried by this adapter's errors.
const SYSTEM: &str = "file";

/// A CSV or NDJSON file holding a lookup table, read whole at each load.
#[derive(Debug, Clone)]
pub struct FileReference {
    path: PathBuf,
    format: FileFormat,
}

impl FileReference {
    /// The file at `path` (relative to the working directory unless absolute), written in
    /// `format`. Nothing is read before [`ReferenceSource::load`].
    #[must_use]
    pub fn new(path: PathBuf, format: FileFormat) -> Self {
        Self { path, format }
    }
}

/// Why a file's table cannot be read: the cause of a [`PortError::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be opened or read.
    #[error("cannot read lookup table {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large, or a line of it is malformed.
    #[error("lookup table {}", path.display())]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        #[source]
        source: TableError,
    },
}

#[async_trait]
impl ReferenceSource for FileReference {
    async fn load(&self) -> Result<Vec<ReferenceRow>, PortError> {
        let (path, format) = (self.path.clone(), self.format);
        tokio::task::spawn_blocking(move || read(&path, format))
            .await
            .map_err(|e| PortError::unavailable(SYSTEM, e))?
            .map_err(|e| PortError::refused(SYSTEM, e))
    }
}

/// Reads and parses the file at `path`; blocking.
fn read(path: &Path, format: FileFormat) -> Result<Vec<ReferenceRow>, FileError> {
    let read_error = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let table_error = |source| FileError::Table {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    lookup::check_file_size(size).map_err(table_error)?;
    // Never more than the bound, even if the file grows while it is read.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    lookup::parse_rows(format, &bytes).map_err(table_error)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use serde_json::json;

    use super::*;

    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    }

    #[tokio::test]
    async fn csv_and_ndjson_files_are_read_whole_at_each_load() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ads.csv");
        std::fs::write(&csv, "ad_id,campaign_id\na1,7\n").unwrap();
        let source = FileReference::new(csv.clone(), FileFormat::Csv);
        let rows = source.load().await.unwrap();
        assert_eq!(
            serde_json::Value::from(rows[0].clone()),
            json!({"ad_id": "a1", "campaign_id": 7})
        );
        std::fs::write(&csv, "ad_id,campaign_id\na1,8\na2,9\n").unwrap();
        assert_eq!(source.load().await.unwrap().len(), 2);

        let ndjson = dir.path().join("ads.ndjson");
        std::fs::write(&ndjson, "{\"ad_id\": \"a1\", \"tags\": [1]}\n").unwrap();
        let rows = FileReference::new(ndjson, FileFormat::Ndjson)
            .load()
            .await
            .unwrap();
        assert_eq!(
            serde_json::Value::from(rows[0].clone()),
            json!({"ad_id": "a1", "tags": [1]})
        );
    }

    #[tokio::test]
    async fn a_missing_or_malformed_file_is_refused_with_its_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.csv");
        let err = FileReference::new(missing.clone(), FileFormat::Csv)
            .load()
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Refused { .. }), "{err:?}");
        assert!(
            chain(&err).starts_with(&format!(
                "file refused the operation: cannot read lookup table {}",
                missing.display()
            )),
            "{}",
            chain(&err)
        );

        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "ad_id,campaign_id\na1,7\na2\n").unwrap();
        let err = FileReference::new(bad.clone(), FileFormat::Csv)
            .load()
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Refused { .. }), "{err:?}");
        let text = chain(&err);
        assert!(
            text.starts_with(&format!(
                "file refused the operation: lookup table {}: line 3: malformed CSV",
                bad.display()
            )),
            "{text}"
        );
        assert!(err.source().is_some());
    }
}

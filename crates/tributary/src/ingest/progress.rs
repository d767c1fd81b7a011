//! The progress of `tributary ingest`, kept in a small JSON file so that a run stopped at
//! any point (kill -9 included) resumes where it stopped.
//!
//! Contract:
//! - A file is known by its identity, a digest of its first [`IDENTITY_BLOCK`] bytes as
//!   stored: the same file (also renamed, moved, or grown at its end) has the same identity.
//!   Progress is kept per (stream, identity).
//! - The committed line is written only after the log acknowledged every event up to it
//!   and the store kept every dead letter up to it, so what is below it is durable; a
//!   re-run skips it. What was acknowledged after the last commit (at most one batch) is
//!   read and appended again, under the same ids (see [`super::records`]).
//! - The file is replaced atomically (written aside, synced, renamed): a crash leaves the
//!   old progress or the new one, never a torn file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many bytes of a file its identity covers.
pub const IDENTITY_BLOCK: usize = 64 * 1024;

/// A file's identity: 16 hex digits of the SHA-256 of its first [`IDENTITY_BLOCK`] bytes
/// and of its length when shorter.
///
/// # Errors
/// When the file cannot be read.
pub fn identity(path: &Path) -> io::Result<String> {
    let mut block = Vec::with_capacity(IDENTITY_BLOCK);
    File::open(path)?
        .take(IDENTITY_BLOCK as u64)
        .read_to_end(&mut block)?;
    let mut digest = Sha256::new();
    digest.update(&block);
    digest.update((block.len() as u64).to_be_bytes());
    let hash = digest.finalize();
    Ok(hex::encode(&hash[..8]))
}

/// One file's progress in one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    /// The file as last named on the command line.
    pub path: String,
    /// Every record starting on this line or before is durable.
    pub line: u64,
    /// Events appended so far.
    pub accepted: u64,
    /// Records refused (kept as dead letters) so far.
    pub refused: u64,
    /// Whether the file was read to its end.
    pub done: bool,
}

/// Every file's progress, by `stream/identity`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    files: BTreeMap<String, FileProgress>,
}

/// The progress file.
#[derive(Debug)]
pub struct Progress {
    path: PathBuf,
    stored: Stored,
}

impl Progress {
    /// Reads the progress file at `path` (none yet is no progress).
    ///
    /// # Errors
    /// When it exists but cannot be read or is not a progress file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a progress file: {e}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path: path.to_owned(),
            stored,
        })
    }

    /// The progress of the file of `identity` in `stream`.
    #[must_use]
    pub fn get(&self, stream: &str, identity: &str) -> FileProgress {
        self.stored
            .files
            .get(&format!("{stream}/{identity}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Records `progress` and writes the file atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn commit(
        &mut self,
        stream: &str,
        identity: &str,
        progress: FileProgress,
    ) -> io::Result<()> {
        self.stored
            .files
            .insert(format!("{stream}/{identity}"), progress);
        let aside = self.path.with_extension("tmp");
        let mut file = File::create(&aside)?;
        file.write_all(&serde_json::to_vec_pretty(&self.stored)?)?;
        file.sync_all()?;
        std::fs::rename(&aside, &self.path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commits_survive_a_reopen_and_identities_follow_content() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "same").unwrap();
        std::fs::write(&b, "same").unwrap();
        assert_eq!(identity(&a).unwrap(), identity(&b).unwrap());
        std::fs::write(&b, "other").unwrap();
        assert_ne!(identity(&a).unwrap(), identity(&b).unwrap());

        let path = dir.path().join("progress.json");
        let mut progress = Progress::open(&path).unwrap();
        assert_eq!(progress.get("s", "x"), FileProgress::default());
        let done = FileProgress {
            path: "a".into(),
            line: 9,
            accepted: 8,
            refused: 1,
            done: true,
        };
        progress.commit("s", "x", done.clone()).unwrap();
        assert_eq!(Progress::open(&path).unwrap().get("s", "x"), done);
        assert_eq!(Progress::open(&path).unwrap().get("t", "x").line, 0);
    }
}

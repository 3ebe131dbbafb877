//! Where downloaded bytes go before they are trusted: a temporary file next to the
//! final path, hashed as it is written, renamed into place only once verified, and
//! removed when dropped unverified. A reader of `MODEL_DIR` therefore never sees a
//! partial or unverified artifact.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Every temporary name starts with this, so leftovers are easy to recognise.
pub const TEMP_PREFIX: &str = ".mlctl-fetch-";

/// The temporary file name for final name `name` written by process `pid`. Hidden
/// (leading dot) and pid-qualified so two fetchers never share one.
pub fn temp_file_name(name: &str, pid: u32) -> String {
    format!("{TEMP_PREFIX}{pid}-{name}.part")
}

/// The staging directory name for a prefix download by process `pid`.
pub fn staging_dir_name(pid: u32) -> String {
    format!("{TEMP_PREFIX}{pid}.d")
}

/// Removes what earlier runs left behind when they were killed before they could
/// clean up (SIGKILL, OOM): an `emptyDir` outlives container restarts. Returns the
/// removed paths.
pub fn remove_stale(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed.push(path);
    }
    Ok(removed)
}

/// A temporary file being downloaded into; removed on drop unless persisted.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    file: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    persisted: bool,
}

impl PartFile {
    /// Creates (or truncates) the temporary file at `path`.
    pub fn create(path: PathBuf) -> io::Result<PartFile> {
        let file = File::create(&path)?;
        Ok(PartFile {
            path,
            // Large buffers: model files are big and chunks from the network small.
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
            persisted: false,
        })
    }

    /// Where the bytes are going.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts over (a retry downloads from the beginning).
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_mut().set_len(0)?;
        self.file.get_mut().seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.bytes = 0;
        Ok(())
    }

    /// Appends a chunk and feeds it to the hash.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk)?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written since the last reset.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lower-case hex sha256 of the bytes written since the last reset.
    pub fn sha256_hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Flushes to disk and renames to `final_path`; after this, drop keeps it.
    pub fn persist(mut self, final_path: &Path) -> io::Result<()> {
        self.file.flush()?;
        // The rename must not become visible before the data does.
        self.file.get_ref().sync_all()?;
        fs::rename(&self.path, final_path)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: a failure here leaves a hidden `.mlctl-fetch-*` file that
            // the next run's `remove_stale` deletes.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A hidden directory that a prefix download fills; removed on drop unless its
/// contents were moved into place.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Creates `dir/<staging name>`.
    pub fn create(dir: &Path, pid: u32) -> io::Result<StagingDir> {
        let path = dir.join(staging_dir_name(pid));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir(&path)?;
        Ok(StagingDir {
            path,
            committed: false,
        })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves every top-level entry into `dir`, replacing what a previous run left
    /// there, then removes the (empty) staging directory.
    pub fn commit_into(mut self, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let target = dir.join(entry.file_name());
            if target.is_dir() {
                fs::remove_dir_all(&target)?;
            }
            fs::rename(entry.path(), &target)?;
        }
        fs::remove_dir(&self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn temp_names_are_hidden_pid_qualified_and_recognised_as_stale() {
        assert_eq!(
            temp_file_name("model.txt", 42),
            ".mlctl-fetch-42-model.txt.part"
        );
        assert_eq!(staging_dir_name(42), ".mlctl-fetch-42.d");
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(temp_file_name("m", 7)), b"partial").unwrap();
        fs::create_dir(dir.path().join(staging_dir_name(7))).unwrap();
        fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        let removed = remove_stale(dir.path()).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(names(dir.path()), ["keep.txt"]);
    }

    #[test]
    fn an_unpersisted_part_file_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = PartFile::create(dir.path().join(temp_file_name("m", 1))).unwrap();
        part.write(b"abc").unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        drop(part);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn persist_renames_and_hashes_only_what_follows_the_last_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = PartFile::create(dir.path().join(temp_file_name("m", 1))).unwrap();
        part.write(b"garbage from a failed attempt").unwrap();
        part.reset().unwrap();
        part.write(b"ab").unwrap();
        part.write(b"c").unwrap();
        assert_eq!(part.bytes(), 3);
        // sha256("abc")
        assert_eq!(
            part.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let final_path = dir.path().join("m");
        part.persist(&final_path).unwrap();
        assert_eq!(fs::read(&final_path).unwrap(), b"abc");
        assert_eq!(names(dir.path()), ["m"]);
    }

    #[test]
    fn staging_dir_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = StagingDir::create(dir.path(), 3).unwrap();
        fs::create_dir(staging.path().join("sub")).unwrap();
        fs::write(staging.path().join("sub/a"), b"1").unwrap();
        drop(staging);
        assert!(names(dir.path()).is_empty());

        // A previous run's output is replaced, not merged.
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/old"), b"0").unwrap();
        let staging = StagingDir::create(dir.path(), 3).unwrap();
        fs::create_dir(staging.path().join("sub")).unwrap();
        fs::write(staging.path().join("sub/a"), b"1").unwrap();
        fs::write(staging.path().join("top"), b"2").unwrap();
        staging.commit_into(dir.path()).unwrap();
        assert_eq!(names(dir.path()), ["sub", "top"]);
        assert_eq!(names(&dir.path().join("sub")), ["a"]);
    }
}

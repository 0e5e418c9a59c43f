//! The index directory: small new files in memory, the rest on disk, made durable only by
//! [`UnsyncedDirectory::persist`].
//!
//! Commits do not wait for the disk: every fsync would add milliseconds to each commit, and
//! so to how soon new mail becomes searchable. Instead the indexer persists the directory
//! every few seconds (and at shutdown): files first, then the metadata, then the deletions
//! that waited for it. So the index on disk is always one Tantivy can open, however the
//! process ends, and the shards' logs hold whatever it has not persisted yet (see
//! docs/DECISIONS.md, "Search survives restarts").
//!
//! Each commit writes a new segment of some ten small files, and merges soon delete them
//! again. Creating a file costs far more than its bytes on some file systems: on the ext4
//! development VM a create-and-delete took 0.75 ms of CPU, a third of the indexer's time
//! under load. So a finished file of at most [`MAX_MEMORY_FILE_BYTES`] stays in memory while
//! all of them together fit in [`MEMORY_BUDGET_BYTES`]; larger files (merged segments) and
//! anything past the budget go to disk. Index metadata (`meta.json`, `.managed.json`) lives
//! in memory only. Locks are Tantivy's `MmapDirectory`'s, on disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tantivy::directory::error::{
    DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError,
};
use tantivy::directory::OwnedBytes;
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, TerminatingWrite,
    WatchCallback, WatchHandle, WritePtr,
};

/// Prefix of the temporary files earlier versions' `atomic_write` renamed into place (a
/// killed run could leave one behind; start-up wipes them with the rest of the index).
pub const TEMP_PREFIX: &str = ".allman-tmp-";

/// A file larger than this goes to disk: fresh segments are smaller, merged ones larger.
pub const MAX_MEMORY_FILE_BYTES: usize = 1024 * 1024;
/// Bytes of index files held in memory at most. Fresh segments live until the next merge
/// folds them into a larger one on disk, so a few MiB is the usual use.
pub const MEMORY_BUDGET_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct UnsyncedDirectory {
    inner: MmapDirectory,
    root: PathBuf,
    memory: Arc<Mutex<MemoryFiles>>,
}

/// The files held in memory and their total size.
#[derive(Debug, Default)]
struct MemoryFiles {
    files: HashMap<PathBuf, OwnedBytes>,
    bytes: usize,
    /// Files on disk Tantivy deleted since the last persist: the metadata on disk may still
    /// name them, so they go only once newer metadata is written.
    deferred_deletes: Vec<PathBuf>,
    /// Files finished on disk (merged segments, spills) since the last persist: synced before
    /// newer metadata names them. Noted when a file is finished, not when it spills: a
    /// persist while it is still being written would sync only its first part, and metadata
    /// that names it is only written once it is finished.
    unsynced: Vec<PathBuf>,
}

/// Index metadata: written last when persisting, so it only names files already on disk.
fn is_metadata(path: &Path) -> bool {
    path == Path::new("meta.json") || path == Path::new(".managed.json")
}

impl MemoryFiles {
    fn insert(&mut self, path: PathBuf, data: Vec<u8>) {
        self.bytes += data.len();
        if let Some(old) = self.files.insert(path, OwnedBytes::new(data)) {
            self.bytes -= old.len();
        }
    }

    fn remove(&mut self, path: &Path) -> bool {
        match self.files.remove(path) {
            Some(old) => {
                self.bytes -= old.len();
                true
            }
            None => false,
        }
    }
}

impl UnsyncedDirectory {
    pub fn open(root: &Path) -> Result<Self, OpenDirectoryError> {
        Ok(UnsyncedDirectory {
            inner: MmapDirectory::open(root)?,
            root: root.to_path_buf(),
            memory: Arc::default(),
        })
    }

    /// Files on disk the next persist syncs.
    #[cfg(test)]
    fn unsynced(&self) -> Vec<PathBuf> {
        self.memory().unsynced.clone()
    }

    /// Bytes of index files held in memory now.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.memory().bytes
    }

    fn memory(&self) -> MutexGuard<'_, MemoryFiles> {
        // The map stays consistent even if a holder panicked: each change is one step.
        self.memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves every in-memory file to disk and syncs it: data files, then the metadata
    /// (each replaced atomically), then the deletions that waited for newer metadata. The
    /// directory on disk then holds a whole index that Tantivy can open, even after kill -9.
    pub fn persist(&self) -> io::Result<()> {
        let mut memory = self.memory();
        for path in std::mem::take(&mut memory.unsynced) {
            match File::open(self.root.join(&path)) {
                Ok(file) => file.sync_data()?,
                // Merged away and deleted already: nothing will name it.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        let mut paths: Vec<PathBuf> = memory.files.keys().cloned().collect();
        paths.sort_by_key(|path| is_metadata(path));
        for path in paths {
            if let Some(bytes) = memory.files.get(&path) {
                let target = self.root.join(&path);
                let temporary = self.root.join(format!("{TEMP_PREFIX}persist"));
                let mut file = File::create(&temporary)?;
                file.write_all(bytes.as_slice())?;
                file.sync_data()?;
                std::fs::rename(&temporary, &target)?;
            }
            memory.remove(&path);
        }
        shards::log::files::sync_directory_blocking(&self.root)?;
        for path in std::mem::take(&mut memory.deferred_deletes) {
            match std::fs::remove_file(self.root.join(&path)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn create_on_disk(&self, path: &Path) -> Result<File, OpenWriteError> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(path))
            .map_err(|error| {
                if error.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    OpenWriteError::wrap_io_error(error, path.to_path_buf())
                }
            })
    }
}

/// A file being written: in memory until it outgrows [`MAX_MEMORY_FILE_BYTES`] (then on
/// disk from there on); at its end it stays in memory if the budget allows, else goes to
/// disk. Its end flushes to the OS but never waits for the disk.
struct TieredFile {
    path: PathBuf,
    directory: UnsyncedDirectory,
    buffered: Vec<u8>,
    on_disk: Option<File>,
}

impl TieredFile {
    fn spill(&mut self) -> io::Result<&mut File> {
        if self.on_disk.is_none() {
            let mut file = self
                .directory
                .create_on_disk(&self.path)
                .map_err(io::Error::other)?;
            file.write_all(&self.buffered)?;
            self.buffered = Vec::new();
            self.on_disk = Some(file);
        }
        self.on_disk
            .as_mut()
            .ok_or_else(|| io::Error::other("spilled file missing"))
    }
}

impl Write for TieredFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.on_disk.is_none() && self.buffered.len() + buf.len() <= MAX_MEMORY_FILE_BYTES {
            self.buffered.extend_from_slice(buf);
            return Ok(buf.len());
        }
        self.spill()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.on_disk {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl TerminatingWrite for TieredFile {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        if self.on_disk.is_none() {
            let directory = self.directory.clone();
            let mut memory = directory.memory();
            if memory.bytes + self.buffered.len() <= MEMORY_BUDGET_BYTES {
                memory.insert(self.path.clone(), std::mem::take(&mut self.buffered));
                return Ok(());
            }
            drop(memory);
            self.spill()?;
        }
        self.flush()?;
        self.directory.memory().unsynced.push(self.path.clone());
        Ok(())
    }
}

impl Directory for UnsyncedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        if let Some(bytes) = self.memory().files.get(path) {
            return Ok(Arc::new(bytes.clone()));
        }
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let mut memory = self.memory();
        if memory.remove(path) {
            return Ok(());
        }
        if !self.root.join(path).exists() {
            return Err(DeleteError::FileDoesNotExist(path.to_path_buf()));
        }
        memory.deferred_deletes.push(path.to_path_buf());
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let memory = self.memory();
        if memory.files.contains_key(path) {
            return Ok(true);
        }
        if memory.deferred_deletes.iter().any(|p| p == path) {
            return Ok(false);
        }
        drop(memory);
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        if self.exists(path).unwrap_or(false) {
            return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()));
        }
        let file = TieredFile {
            path: path.to_path_buf(),
            directory: self.clone(),
            buffered: Vec::new(),
            on_disk: None,
        };
        Ok(BufWriter::new(Box::new(file)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        if let Some(bytes) = self.memory().files.get(path) {
            return Ok(bytes.as_slice().to_vec());
        }
        self.inner.atomic_read(path)
    }

    /// Metadata is replaced in memory in one step: readers see the old or the new content,
    /// never a torn one.
    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.memory().insert(path.to_path_buf(), data.to_vec());
        Ok(())
    }

    /// Nothing to sync: fresh files live in memory until `persist`, which syncs the directory.
    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_dir(name: &str) -> (PathBuf, UnsyncedDirectory) {
        let root = std::env::temp_dir().join(format!("allman-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        let directory = UnsyncedDirectory::open(&root).expect("open");
        (root, directory)
    }

    fn write(directory: &UnsyncedDirectory, name: &str, len: usize) {
        let mut file = directory.open_write(Path::new(name)).expect("open_write");
        file.write_all(&vec![7u8; len]).expect("write");
        file.terminate().expect("terminate");
    }

    fn read_len(directory: &UnsyncedDirectory, name: &str) -> usize {
        let handle = directory.get_file_handle(Path::new(name)).expect("handle");
        handle.read_bytes(0..handle.len()).expect("read").len()
    }

    #[test]
    fn small_files_live_in_memory_and_large_ones_on_disk() {
        let (root, directory) = fresh_dir("tiers");
        write(&directory, "small.idx", 1000);
        write(&directory, "large.idx", MAX_MEMORY_FILE_BYTES + 1);
        assert!(
            !root.join("small.idx").exists(),
            "a small file stays off disk"
        );
        assert!(root.join("large.idx").exists());
        assert_eq!(read_len(&directory, "small.idx"), 1000);
        assert_eq!(read_len(&directory, "large.idx"), MAX_MEMORY_FILE_BYTES + 1);
        assert_eq!(directory.memory_bytes(), 1000);
        assert!(matches!(
            directory.open_write(Path::new("small.idx")),
            Err(OpenWriteError::FileAlreadyExists(_))
        ));
        directory.delete(Path::new("small.idx")).expect("delete");
        directory.delete(Path::new("large.idx")).expect("delete");
        assert_eq!(directory.memory_bytes(), 0);
        assert!(!directory.exists(Path::new("small.idx")).expect("exists"));
        assert!(!directory.exists(Path::new("large.idx")).expect("exists"));
        assert!(
            root.join("large.idx").exists(),
            "a file on disk stays until metadata that no longer names it is persisted"
        );
        directory.persist().expect("persist");
        assert!(!root.join("large.idx").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_file_still_being_written_at_a_persist_is_synced_again_once_finished() {
        let (root, directory) = fresh_dir("rewritten");
        let mut file = directory
            .open_write(Path::new("merged.store"))
            .expect("open");
        file.write_all(&vec![7u8; MAX_MEMORY_FILE_BYTES + 1])
            .expect("spills to disk");
        file.flush().expect("flush");
        // A merge thread is still writing it when the indexer persists.
        directory.persist().expect("persist");
        assert!(directory.unsynced().is_empty());
        file.write_all(&[8u8; 4096]).expect("write more");
        file.terminate().expect("terminate");
        assert_eq!(
            directory.unsynced(),
            vec![PathBuf::from("merged.store")],
            "metadata naming the finished file must find all of it on disk"
        );
        directory.persist().expect("persist");
        assert!(directory.unsynced().is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn past_the_memory_budget_files_go_to_disk() {
        let (root, directory) = fresh_dir("budget");
        let count = MEMORY_BUDGET_BYTES / MAX_MEMORY_FILE_BYTES;
        for n in 0..count {
            write(&directory, &format!("{n}.store"), MAX_MEMORY_FILE_BYTES);
        }
        assert_eq!(directory.memory_bytes(), MEMORY_BUDGET_BYTES);
        write(&directory, "over.store", 10);
        assert!(root.join("over.store").exists(), "the budget is full");
        assert_eq!(read_len(&directory, "over.store"), 10);
        assert_eq!(directory.memory_bytes(), MEMORY_BUDGET_BYTES);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn persisting_moves_every_memory_file_to_disk() {
        let (root, directory) = fresh_dir("persist");
        write(&directory, "seg.idx", 300);
        directory
            .atomic_write(Path::new("meta.json"), b"{}")
            .expect("meta");
        directory.persist().expect("persist");
        assert_eq!(directory.memory_bytes(), 0);
        assert_eq!(
            std::fs::read(root.join("seg.idx")).expect("on disk").len(),
            300
        );
        assert_eq!(
            std::fs::read(root.join("meta.json")).expect("on disk"),
            b"{}"
        );
        assert_eq!(
            read_len(&directory, "seg.idx"),
            300,
            "still readable, now from disk"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn metadata_is_replaced_whole_in_memory() {
        let (root, directory) = fresh_dir("meta");
        let meta = Path::new("meta.json");
        directory.atomic_write(meta, b"{\"v\":1}").expect("write");
        directory.atomic_write(meta, b"{\"v\":22}").expect("write");
        assert_eq!(directory.atomic_read(meta).expect("read"), b"{\"v\":22}");
        assert_eq!(directory.memory_bytes(), 8);
        assert!(!root.join("meta.json").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}

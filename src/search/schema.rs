//! The index schema and the index directory.

use super::directory::UnsyncedDirectory;
use super::{index_error, SearchError};
use std::path::Path;
use tantivy::schema::{Field, Schema, STORED, STRING, TEXT};
use tantivy::{Index, IndexSettings};

/// The fields of one message document. `subject` and `body` are tokenised for full-text
/// search; `from`, `to`, `cc`, `thread_id`, `importance` and `project_id` are exact-match
/// (`from:BlueLake`, `thread_id:plan-7`). `id` and
/// `timestamp` are stored for the results but not indexed: each is unique to its message, and
/// a term dictionary entry per message more than doubled indexing CPU (docs/BENCHMARKS.md).
/// A feature that must find a message by id can add it as a pair of u64 fast fields
/// (measured at about 3 µs a message), not as a term.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub project_id: Field,
    pub from: Field,
    pub to: Field,
    pub cc: Field,
    pub thread_id: Field,
    pub importance: Field,
    pub subject: Field,
    pub body: Field,
    pub timestamp: Field,
}

/// allman's lock on the index, held from before the index is opened, wiped or created until
/// the server exits. Tantivy's writer lock is taken only once the index is open, too late to
/// keep a second server from wiping it first.
pub const LOCK_FILE: &str = ".allman-index.lock";

/// Locks the index directory at `path` (created if missing) for this server. A directory
/// that holds anything but an index is refused before the lock file is written into it.
fn lock_index(path: &Path) -> Result<std::fs::File, SearchError> {
    refuse_foreign_or_locked(path)?;
    std::fs::create_dir_all(path).map_err(|e| index_error(path, e))?;
    shards::log::files::try_lock_file(path, LOCK_FILE)
        .map_err(|e| index_error(path, e))?
        .ok_or_else(|| {
            index_error(
                path,
                "is in use by another running allman; give each server its own INDEX_PATH",
            )
        })
}

/// Tantivy's files (and allman's lock): its metadata and locks, segment files named `<32 hex digits>.<ext>`, and
/// temporary files of our own atomic writes (left behind if a run was killed mid-write).
fn is_tantivy_file(name: &str) -> bool {
    const NAMED: [&str; 5] = [
        "meta.json",
        ".managed.json",
        ".tantivy-meta.lock",
        ".tantivy-writer.lock",
        LOCK_FILE,
    ];
    NAMED.contains(&name)
        || name.starts_with(super::directory::TEMP_PREFIX)
        || name.split_once('.').is_some_and(|(segment, _)| {
            segment.len() == 32 && segment.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

pub fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STORED),
        project_id: builder.add_text_field("project_id", STRING | STORED),
        from: builder.add_text_field("from", STRING | STORED),
        to: builder.add_text_field("to", STRING | STORED),
        cc: builder.add_text_field("cc", STRING | STORED),
        thread_id: builder.add_text_field("thread_id", STRING | STORED),
        importance: builder.add_text_field("importance", STRING | STORED),
        subject: builder.add_text_field("subject", TEXT | STORED),
        body: builder.add_text_field("body", TEXT | STORED),
        timestamp: builder.add_text_field("timestamp", STORED),
    };
    (builder.build(), fields)
}

pub fn fields_of(schema: &Schema) -> Result<Fields, tantivy::TantivyError> {
    Ok(Fields {
        id: schema.get_field("id")?,
        project_id: schema.get_field("project_id")?,
        from: schema.get_field("from")?,
        to: schema.get_field("to")?,
        cc: schema.get_field("cc")?,
        thread_id: schema.get_field("thread_id")?,
        importance: schema.get_field("importance")?,
        subject: schema.get_field("subject")?,
        body: schema.get_field("body")?,
        timestamp: schema.get_field("timestamp")?,
    })
}

/// An index opened at start, and what its last persisted commit recorded.
pub struct OpenedIndex {
    pub index: Index,
    pub directory: UnsyncedDirectory,
    /// The payload of the last commit on disk (how far into each shard's log it got).
    pub payload: Option<String>,
    /// Why an existing index could not be kept (it was recreated empty), if it could not.
    pub recreated_because: Option<String>,
    /// This server's lock on the index directory, held while the server runs.
    pub lock: std::fs::File,
}

/// Opens the index at `path` if it is whole and has this build's schema (a durable server
/// keeps its index across restarts); otherwise creates a fresh one, saying why.
pub fn open_or_create_index(path: &Path) -> Result<OpenedIndex, SearchError> {
    let lock = lock_index(path)?;
    let existing = path.join("meta.json").exists();
    if existing {
        match open_existing(path) {
            Ok((index, directory, payload)) => {
                return Ok(OpenedIndex {
                    index,
                    directory,
                    payload,
                    recreated_because: None,
                    lock,
                })
            }
            Err(reason) => {
                let (index, directory) = create_index(path)?;
                return Ok(OpenedIndex {
                    index,
                    directory,
                    payload: None,
                    recreated_because: Some(reason),
                    lock,
                });
            }
        }
    }
    empty_index(path, lock)
}

/// Creates a fresh, empty index at `path` (deleting an earlier one, see [`create_index`]),
/// locked for this server.
pub fn create_empty_index(path: &Path) -> Result<OpenedIndex, SearchError> {
    empty_index(path, lock_index(path)?)
}

fn empty_index(path: &Path, lock: std::fs::File) -> Result<OpenedIndex, SearchError> {
    let (index, directory) = create_index(path)?;
    Ok(OpenedIndex {
        index,
        directory,
        payload: None,
        recreated_because: None,
        lock,
    })
}

/// The index, its directory and its last commit's payload.
type Existing = (Index, UnsyncedDirectory, Option<String>);

fn open_existing(path: &Path) -> Result<Existing, String> {
    let directory = UnsyncedDirectory::open(path).map_err(|e| e.to_string())?;
    let index = Index::open(directory.clone()).map_err(|e| e.to_string())?;
    let (schema, _) = build();
    if index.schema() != schema {
        return Err("its schema is not this build's".into());
    }
    let metas = index.load_metas().map_err(|e| e.to_string())?;
    // Every segment must be readable: a reader opens them all.
    index
        .reader_builder()
        .reload_policy(tantivy::ReloadPolicy::Manual)
        .try_into()
        .map(|_: tantivy::IndexReader| ())
        .map_err(|e| e.to_string())?;
    Ok((index, directory, metas.payload))
}

/// Creates a fresh index at `path`, deleting an earlier one but the lock file. The caller
/// holds the lock, so [`lock_index`] has already refused a directory holding anything but
/// Tantivy's own files, and an index another process is writing.
fn create_index(path: &Path) -> Result<(Index, UnsyncedDirectory), SearchError> {
    for entry in std::fs::read_dir(path).map_err(|e| index_error(path, e))? {
        let entry = entry.map_err(|e| index_error(path, e))?;
        if entry.file_name() != LOCK_FILE {
            std::fs::remove_file(entry.path()).map_err(|e| index_error(path, e))?;
        }
    }
    let (schema, _) = build();
    let directory = UnsyncedDirectory::open(path).map_err(|e| index_error(path, e))?;
    let index = Index::create(directory.clone(), schema, IndexSettings::default())
        .map_err(|e| index_error(path, e))?;
    Ok((index, directory))
}

fn refuse_foreign_or_locked(path: &Path) -> Result<(), SearchError> {
    if path.exists() {
        for entry in std::fs::read_dir(path).map_err(|e| index_error(path, e))? {
            let entry = entry.map_err(|e| index_error(path, e))?;
            let name = entry.file_name();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if !is_file || !is_tantivy_file(&name.to_string_lossy()) {
                return Err(index_error(
                    path,
                    format!(
                        "holds {name:?}, which is not part of a search index; refusing to \
                         delete it (point INDEX_PATH at an empty or new directory)"
                    ),
                ));
            }
        }
        let lock_path = path.join(".tantivy-writer.lock");
        if lock_path.exists() {
            let lock = std::fs::File::open(&lock_path).map_err(|e| index_error(path, e))?;
            if lock.try_lock().is_err() {
                return Err(index_error(
                    path,
                    "is in use by another running allman (its writer lock is held); give each \
                     server its own INDEX_PATH",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tantivy_files_are_recognised() {
        for name in [
            "meta.json",
            ".managed.json",
            ".tantivy-writer.lock",
            "0123456789abcdef0123456789abcdef.idx",
            "0123456789abcdef0123456789abcdef.17.del",
            ".allman-tmp-12-3",
        ] {
            assert!(is_tantivy_file(name), "{name}");
        }
        for name in ["precious.txt", "meta.json.bak", "0123.idx", "notes", ""] {
            assert!(!is_tantivy_file(name), "{name}");
        }
    }

    #[test]
    fn a_directory_with_foreign_files_is_never_wiped() {
        let dir = std::env::temp_dir().join(format!("allman-schema-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("meta.json"), "{}").expect("write");
        std::fs::write(dir.join("precious.txt"), "keep").expect("write");
        assert!(create_empty_index(&dir).is_err());
        assert!(dir.join("precious.txt").exists());
        assert!(
            !dir.join(LOCK_FILE).exists(),
            "nothing is written into a directory that is not an index"
        );
        std::fs::remove_file(dir.join("precious.txt")).expect("rm");
        std::fs::remove_file(dir.join("meta.json")).expect("rm");
        assert!(
            create_index(&dir).is_ok(),
            "an empty directory becomes an index"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

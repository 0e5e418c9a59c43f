//! The log's files at start-up, as bytes: the generations under the log root, and one shard's
//! newest snapshot and segments read back as records (what a record means is the caller's
//! `decode`), with torn tails cut. Plain blocking `std::fs` on the main thread; no executor
//! runs yet. What the records rebuild is [`crate::recovery`].
//!
//! Layout under the log root: one directory per generation, `gen-NNNNNN-shards-C`, holding a
//! `shard-K` directory per shard with its snapshots (`POSITION.snap`) and segments
//! (`BASE.log`), a `LOG_ID` file naming the log's identity, and a `COMPLETE` marker written
//! once the generation is whole.

use super::progress::Ticker;
use super::segment::{record_offset, scan, Corrupt, FileKind, Header, Scanned, HEADER_BYTES};
use super::watermarks::LogIdentity;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const COMPLETE_MARKER: &str = "COMPLETE";
/// Holds the generation's identity (a random UUID): the helpers' watermarks name it, so
/// positions of a wiped or replaced log never pass for this one's.
const IDENTITY_FILE: &str = "LOG_ID";
/// Why the logs could not be recovered. Start-up stops; nothing is dropped silently.
#[derive(Debug)]
pub enum RecoveryError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// A damaged record that is not a torn tail, or a header that does not fit.
    Corrupt {
        path: PathBuf,
        detail: String,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            RecoveryError::Corrupt { path, detail } => write!(
                f,
                "{}: {detail}; refusing to start rather than drop mail (see docs/OPERATIONS.md, \"A corrupt log\")",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RecoveryError {}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |error| RecoveryError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One shard's log as read back: its snapshot (position and records) and the records after.
#[derive(Debug)]
pub struct ShardLog<R> {
    pub snapshot: Option<(u64, Vec<R>)>,
    pub records: Vec<(u64, R)>,
    /// Records below the snapshot still on disk (compaction keeps them until the search index
    /// and git trail have recorded them): not replayed, only handed to the helpers again.
    pub below_snapshot: Vec<(u64, R)>,
    /// The position after the last record.
    pub end: u64,
    /// The files the records came from, to name where one that does not replay lies.
    pub files: LogFiles,
}

impl<R> Default for ShardLog<R> {
    fn default() -> Self {
        ShardLog {
            snapshot: None,
            records: Vec::new(),
            below_snapshot: Vec::new(),
            end: 0,
            files: LogFiles::default(),
        }
    }
}

/// One shard's files as read: its snapshot, and its segments by first position.
#[derive(Debug, Clone, Default)]
pub struct LogFiles {
    pub snapshot: Option<PathBuf>,
    pub segments: Vec<(u64, PathBuf)>,
}

/// Where a record read back lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAt {
    /// The snapshot's record of this index (from 0).
    Snapshot(usize),
    /// The log's record at this position.
    Log(u64),
}

impl LogFiles {
    /// The file holding the record `at`, and its byte offset there if the file reads again.
    pub fn locate(&self, at: RecordAt) -> Option<(PathBuf, Option<usize>)> {
        let (path, index) = match at {
            RecordAt::Snapshot(index) => (self.snapshot.as_ref()?, index),
            RecordAt::Log(seq) => {
                let (base, path) = self.segments.iter().rev().find(|(base, _)| *base <= seq)?;
                (path, usize::try_from(seq - base).ok()?)
            }
        };
        let offset = fs::read(path).ok().and_then(|bytes| {
            let header = Header::decode(&bytes).ok()?;
            record_offset(&bytes, &header, index)
        });
        Some((path.clone(), offset))
    }
}

/// What reading the logs cost, and what it cut.
#[derive(Debug, Default, Clone)]
pub struct ReadCost {
    pub bytes_read: u64,
    /// Records after the snapshots.
    pub records: usize,
    /// Files whose torn tail was cut, and how many bytes.
    pub torn: Vec<(PathBuf, usize)>,
}

/// Where a generation's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub shard_count: usize,
    pub dir: PathBuf,
    /// Nil for a generation made before logs had identities.
    pub id: uuid::Uuid,
}

impl Generation {
    fn new(root: &Path, number: u64, shard_count: usize) -> Generation {
        Generation {
            number,
            shard_count,
            dir: root.join(format!("gen-{number:06}-shards-{shard_count}")),
            id: uuid::Uuid::nil(),
        }
    }

    /// The log this generation is, as the helpers' watermarks name it.
    pub fn identity(&self) -> LogIdentity {
        LogIdentity {
            generation: self.number,
            id: self.id,
        }
    }

    /// Reads the identity file (absent: made before identities, nil).
    fn read_identity(&mut self) -> Result<(), RecoveryError> {
        let path = self.dir.join(IDENTITY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(RecoveryError::Io { path, error }),
        };
        self.id = uuid::Uuid::parse_str(text.trim()).map_err(|error| RecoveryError::Corrupt {
            path,
            detail: format!("not a log identity: {error}"),
        })?;
        Ok(())
    }

    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(format!("shard-{shard}"))
    }

    fn parse(root: &Path, name: &str) -> Option<Generation> {
        let rest = name.strip_prefix("gen-")?;
        let (number, count) = rest.split_once("-shards-")?;
        Some(Generation::new(
            root,
            number.parse().ok()?,
            count.parse().ok()?,
        ))
    }
}

/// The generation in use (the newest complete one), after removing unfinished or superseded
/// ones; `None` on a fresh data directory.
pub fn current_generation(root: &Path) -> Result<Option<Generation>, RecoveryError> {
    fs::create_dir_all(root).map_err(io_error(root))?;
    let mut found: Vec<(Generation, bool)> = Vec::new();
    for entry in fs::read_dir(root).map_err(io_error(root))? {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name();
        if let Some(generation) = name.to_str().and_then(|n| Generation::parse(root, n)) {
            let complete = generation.dir.join(COMPLETE_MARKER).exists();
            found.push((generation, complete));
        }
    }
    found.sort_by_key(|(g, _)| g.number);
    let mut current = found
        .iter()
        .rev()
        .find(|(_, complete)| *complete)
        .map(|(g, _)| g.clone());
    for (generation, _) in &found {
        if Some(generation) != current.as_ref() {
            fs::remove_dir_all(&generation.dir).map_err(io_error(&generation.dir))?;
        }
    }
    if let Some(generation) = &mut current {
        generation.read_identity()?;
    }
    Ok(current)
}

/// Starts generation `number` of `shard_count` shards: its directory (emptied if an unfinished
/// attempt left one) with a directory per shard. It is in use once [`complete_generation`].
pub fn begin_generation(
    root: &Path,
    number: u64,
    shard_count: usize,
) -> Result<Generation, RecoveryError> {
    let mut generation = Generation::new(root, number, shard_count);
    if generation.dir.exists() {
        fs::remove_dir_all(&generation.dir).map_err(io_error(&generation.dir))?;
    }
    for shard in 0..shard_count {
        let dir = generation.shard_dir(shard);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }
    generation.id = random_identity()?;
    let path = generation.dir.join(IDENTITY_FILE);
    fs::File::create(&path)
        .and_then(|mut file| {
            writeln!(file, "{}", generation.id.hyphenated())?;
            file.sync_all()
        })
        .map_err(io_error(&path))?;
    Ok(generation)
}

/// Makes `generation` (its shard directories written and synced) the one in use: the marker,
/// synced, then the directories above it.
pub fn complete_generation(root: &Path, generation: &Generation) -> Result<(), RecoveryError> {
    let marker = generation.dir.join(COMPLETE_MARKER);
    fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&marker))?;
    sync_dir(&generation.dir)?;
    sync_dir(root)
}

/// A fresh random identity, from the kernel.
fn random_identity() -> Result<uuid::Uuid, RecoveryError> {
    use std::io::Read;
    let source = Path::new("/dev/urandom");
    let mut bytes = [0u8; 16];
    fs::File::open(source)
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(io_error(source))?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

pub fn sync_dir(dir: &Path) -> Result<(), RecoveryError> {
    sync_directory_blocking(dir).map_err(io_error(dir))
}

/// Syncs a directory's entries (a created, renamed or removed file) with a blocking call: for
/// threads that may block (start-up, the search indexer). A shard uses
/// [`super::journal::sync_directory`], through io_uring.
pub fn sync_directory_blocking(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// An exclusive lock on the file `name` in `dir` (created if missing), held while the returned
/// file stays open: `flock`, which the kernel releases when the process dies, however it dies.
/// `Ok(None)` when another process holds it. The data directory, the search index and the git
/// repository each have one, so two servers never write the same store, wherever it lives.
pub fn try_lock_file(dir: &Path, name: &str) -> io::Result<Option<fs::File>> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

/// The name of the snapshot that stands for every record below `position`.
pub fn snapshot_name(position: u64) -> String {
    format!("{position:020}.snap")
}

/// Writes the snapshot at `position` in `dir`, its records appended by `fill` a piece of about
/// the given bytes at a time (true once done): to a temporary name, synced, then renamed.
pub fn write_snapshot(
    dir: &Path,
    shard: usize,
    shard_count: usize,
    position: u64,
    mut fill: impl FnMut(&mut Vec<u8>, usize) -> bool,
) -> Result<PathBuf, RecoveryError> {
    let header = Header::snapshot(shard as u32, shard_count as u32, position);
    let path = dir.join(snapshot_name(position));
    let temporary = path.with_extension("snap.tmp");
    let mut file = io::BufWriter::new(fs::File::create(&temporary).map_err(io_error(&temporary))?);
    let mut buffer = header.encode();
    loop {
        let done = fill(&mut buffer, 1 << 20);
        file.write_all(&buffer).map_err(io_error(&temporary))?;
        buffer.clear();
        if done {
            break;
        }
    }
    file.flush()
        .and_then(|()| file.get_ref().sync_all())
        .map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads one shard's directory: the newest snapshot, then every segment's records from the
/// snapshot's position on. A torn tail of the last segment is cut from the file and
/// reported; anything else damaged is an error naming the file and offset.
pub fn read_shard<R>(
    dir: &Path,
    shard: usize,
    shard_count: usize,
    decode: &impl Fn(&[u8]) -> Result<R, &'static str>,
    cost: &mut ReadCost,
    ticker: &mut Ticker<'_>,
) -> Result<ShardLog<R>, RecoveryError> {
    let (snapshots, segments) = list_files(dir)?;
    let mut log = ShardLog::default();
    if let Some((position, path)) = snapshots.last() {
        let bytes = read_reporting(path, ticker)?;
        cost.bytes_read += bytes.len() as u64;
        let scanned = check_and_scan(path, &bytes, FileKind::Snapshot, shard, shard_count, decode)?;
        log.snapshot = Some((
            *position,
            scanned.records.into_iter().map(|(_, r)| r).collect(),
        ));
        log.files.snapshot = Some(path.clone());
        log.end = *position;
    }
    let last = segments.len().saturating_sub(1);
    for (index, (base, path)) in segments.iter().enumerate() {
        let bytes = read_reporting(path, ticker)?;
        cost.bytes_read += bytes.len() as u64;
        if index == last && never_written(&bytes) {
            // A crash between creating the segment and writing its header: it holds nothing.
            fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        let scanned = check_and_scan(path, &bytes, FileKind::Segment, shard, shard_count, decode)?;
        check_segment(path, *base, log.end, &scanned, index == last)?;
        if scanned.torn_bytes > 0 {
            cost.torn.push((path.clone(), scanned.torn_bytes));
        }
        if index == last && scanned.records.is_empty() && scanned.next_seq == *base {
            // Created by a run that wrote nothing to it: this run creates it again.
            fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        if index == last {
            // Cuts a torn tail, and gives back the space preallocated past the last record.
            cut_to(path, scanned.valid_bytes)?;
        }
        log.files.segments.push((*base, path.clone()));
        for (seq, record) in scanned.records {
            if seq >= log.end {
                log.records.push((seq, record));
            } else {
                log.below_snapshot.push((seq, record));
            }
        }
        log.end = log.end.max(scanned.next_seq);
    }
    cost.records += log.records.len();
    Ok(log)
}

/// A shard directory's snapshots and segments, each by its number, in order; a snapshot
/// that was never finished is removed.
type Numbered = Vec<(u64, PathBuf)>;

fn list_files(dir: &Path) -> Result<(Numbered, Numbered), RecoveryError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let (mut snapshots, mut segments) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        match (path.extension().and_then(|e| e.to_str()), number) {
            (Some("snap"), Some(n)) => snapshots.push((n, path)),
            (Some("log"), Some(n)) => segments.push((n, path)),
            (Some("tmp"), _) => fs::remove_file(&path).map_err(io_error(&path))?,
            _ => {}
        }
    }
    snapshots.sort();
    segments.sort();
    Ok((snapshots, segments))
}

/// A segment must continue the log before it (no gap), and only the last may have a torn
/// tail.
fn check_segment<R>(
    path: &Path,
    base: u64,
    log_end: u64,
    scanned: &Scanned<R>,
    is_last: bool,
) -> Result<(), RecoveryError> {
    let corrupt = |detail: String| RecoveryError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if base > log_end {
        return Err(corrupt(format!(
            "starts at record {base}, but the log before it ends at {log_end}"
        )));
    }
    if scanned.torn_bytes > 0 && !is_last {
        return Err(corrupt(format!(
            "damaged record at byte offset {} in a segment that is not the last",
            scanned.valid_bytes
        )));
    }
    Ok(())
}

/// Bytes read between two progress checks: a snapshot (the whole state) can be gigabytes.
const READ_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Reads a whole file in chunks, telling the ticker after each.
fn read_reporting(path: &Path, ticker: &mut Ticker<'_>) -> Result<Vec<u8>, RecoveryError> {
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let mut bytes = Vec::with_capacity(size);
    loop {
        let before = bytes.len();
        let read = (&mut file)
            .take(READ_CHUNK_BYTES as u64)
            .read_to_end(&mut bytes)
            .map_err(io_error(path))?;
        if read == 0 {
            return Ok(bytes);
        }
        ticker.read((bytes.len() - before) as u64);
    }
}

/// Bytes of the files [`read_shard`] reads in `dir` (its segments and newest snapshot), for
/// the progress report; 0 for what cannot be listed (reading will say why).
pub fn files_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let (mut segments, mut newest_snapshot) = (0u64, (0u64, 0u64));
    for entry in entries.flatten() {
        let path = entry.path();
        let size = entry.metadata().map_or(0, |m| m.len());
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        match (path.extension().and_then(|e| e.to_str()), number) {
            (Some("log"), Some(_)) => segments += size,
            (Some("snap"), Some(n)) if n >= newest_snapshot.0 => newest_snapshot = (n, size),
            _ => {}
        }
    }
    segments + newest_snapshot.1
}

/// A segment whose header never made it to disk and that holds no data after it.
fn never_written(bytes: &[u8]) -> bool {
    Header::decode(bytes).is_err()
        && bytes
            .get(HEADER_BYTES..)
            .is_none_or(|rest| rest.iter().all(|b| *b == 0))
}

fn check_and_scan<R>(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    shard: usize,
    shard_count: usize,
    decode: &impl Fn(&[u8]) -> Result<R, &'static str>,
) -> Result<Scanned<R>, RecoveryError> {
    let corrupt = |detail: String| RecoveryError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let header = Header::decode(bytes).map_err(corrupt)?;
    if header.kind != kind
        || header.shard as usize != shard
        || header.shard_count as usize != shard_count
    {
        return Err(corrupt(format!(
            "header says {:?} of shard {} of {}, expected {kind:?} of shard {shard} of {shard_count}",
            header.kind, header.shard, header.shard_count
        )));
    }
    scan(bytes, &header, decode)
        .map_err(|Corrupt { offset, reason }| corrupt(format!("byte offset {offset}: {reason}")))
}

/// Cuts a segment after its last valid record (the next run writes a new segment after it).
fn cut_to(path: &Path, valid_bytes: usize) -> Result<(), RecoveryError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(valid_bytes as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_segment_with_no_header_and_no_data_counts_as_never_written() {
        assert!(never_written(&[]));
        assert!(never_written(&[0; 100]));
        assert!(never_written(&vec![0; 3 * HEADER_BYTES]));
        let mut garbage_header = vec![0; 2 * HEADER_BYTES];
        garbage_header[..8].copy_from_slice(b"ALLMANLX");
        assert!(
            never_written(&garbage_header),
            "a torn header, nothing after it"
        );
        garbage_header[HEADER_BYTES + 3] = 1;
        assert!(
            !never_written(&garbage_header),
            "data after a bad header is corruption"
        );
        let header = Header::segment(0, 1, 0, 512, 1);
        assert!(!never_written(&header.encode()));
    }

    #[test]
    fn each_generation_has_its_own_identity_which_start_up_reads_back() {
        let root = std::env::temp_dir().join(format!("allman-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let first = begin_generation(&root, 1, 1).expect("begins");
        complete_generation(&root, &first).expect("completes");
        let read = current_generation(&root).expect("reads").expect("one");
        assert_eq!(read.identity(), first.identity());
        assert!(!first.id.is_nil());
        // A wiped log starts at generation 1 again, as another log.
        fs::remove_dir_all(&root).expect("wipes");
        let again = begin_generation(&root, 1, 1).expect("begins");
        complete_generation(&root, &again).expect("completes");
        assert_eq!(again.number, first.number);
        assert_ne!(again.identity(), first.identity());
        // A generation made before identities reads as the nil one.
        fs::remove_file(again.dir.join(IDENTITY_FILE)).expect("removes");
        let old = current_generation(&root).expect("reads").expect("one");
        assert!(old.id.is_nil());
        let _ = fs::remove_dir_all(&root);
    }
}

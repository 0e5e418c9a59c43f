//! Writing a shard's log: one segment writer and one flusher task per shard, on the shard's
//! own executor, through io_uring.
//!
//! Group commit: the flusher takes everything the shard appended while its previous write
//! was in flight and writes it as one batch, starting on a fresh block (so a block that holds
//! acknowledged records is never rewritten), then advances the durable position. Replies wait
//! for the position they saw (see [`Journal::wait_durable`]); emissions to the helper threads
//! wait for theirs.

use super::segment::{batch_span, BatchHeader, Header, HEADER_BYTES};
use super::simulated::{SimulatedDisk, SimulatedFile};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// When a reply is released, relative to its log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the batch is written and `fdatasync`ed: survives power loss.
    Fsync,
    /// After the batch is written to the file; `fdatasync` at most this far apart. Survives a
    /// crash of the process (kill -9, panic, OOM); a power cut loses at most the interval.
    Batch { fsync_interval: Duration },
    /// No log: memory only.
    None,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Fsync => "fsync",
            Durability::Batch { .. } => "batch",
            Durability::None => "none",
        })
    }
}

/// The largest segment: they roll over past their size. Preallocated, so a write never
/// changes the file size (no metadata update per sync); a batch larger than a whole segment
/// still goes in one.
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// The smallest segment.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;

/// The segment size for a compaction threshold: a quarter of it, so compaction can delete
/// most of the log it replaces (the segment being written is never deleted).
pub fn segment_bytes_for(compact_bytes: u64) -> u64 {
    (compact_bytes / 4).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
}
/// The smallest block a commit starts on: the sector size every device supports.
const MIN_BLOCK_BYTES: u64 = 512;

/// A segment's file: O_DIRECT where the filesystem allows it, the page cache where it refuses,
/// or (in the power-cut tests) a file whose unsynced writes a simulated cut decides about.
enum LogFile {
    Direct(glommio::io::DmaFile),
    Buffered(glommio::io::BufferedFile),
    Simulated(SimulatedFile),
}

/// Where a writer's segments are made.
#[derive(Clone)]
enum Storage {
    /// Real files, O_DIRECT if asked for and allowed.
    Files { direct_io: bool },
    /// [`SimulatedDisk`]: the power-cut tests.
    Simulated(Rc<SimulatedDisk>),
}

impl LogFile {
    /// O_DIRECT when `direct_io` and the filesystem allows it (blocks no larger than the
    /// header); else the page cache.
    async fn create(path: &Path, storage: &Storage) -> io::Result<(LogFile, u64)> {
        let direct_io = match storage {
            Storage::Files { direct_io } => *direct_io,
            Storage::Simulated(disk) => {
                return Ok((LogFile::Simulated(disk.create(path)?), MIN_BLOCK_BYTES));
            }
        };
        if direct_io {
            let direct = glommio::io::OpenOptions::new()
                .write(true)
                .create_new(true)
                .dma_open(path)
                .await;
            match direct {
                Ok(file) if file.alignment() <= HEADER_BYTES as u64 => {
                    let block = file.alignment().max(MIN_BLOCK_BYTES);
                    return Ok((LogFile::Direct(file), block));
                }
                Ok(file) => {
                    let _ = file.close().await;
                    let _ = std::fs::remove_file(path);
                }
                // O_DIRECT refused: the page cache below.
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .create_new(true)
            .buffered_open(path)
            .await
            .map_err(io::Error::from)?;
        Ok((LogFile::Buffered(file), MIN_BLOCK_BYTES))
    }

    fn is_direct(&self) -> bool {
        matches!(self, LogFile::Direct(_))
    }

    /// Writes `bytes` (a multiple of the block size) at `offset`, all of it.
    async fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            let rest = &bytes[done..];
            let at = offset + done as u64;
            let written = match self {
                LogFile::Direct(file) => {
                    let mut buffer = file.alloc_dma_buffer(rest.len());
                    buffer.as_bytes_mut().copy_from_slice(rest);
                    file.write_at(buffer, at).await
                }
                LogFile::Buffered(file) => file.write_at(rest.to_vec(), at).await,
                LogFile::Simulated(file) => Ok(file.write_at(rest, at)?),
            }
            .map_err(io::Error::from)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "log write wrote nothing",
                ));
            }
            done += written;
        }
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        match self {
            LogFile::Direct(file) => file.fdatasync().await,
            LogFile::Buffered(file) => file.fdatasync().await,
            LogFile::Simulated(file) => return file.sync(),
        }
        .map_err(io::Error::from)
    }

    async fn pre_allocate(&self, bytes: u64, keep_size: bool) -> io::Result<()> {
        match self {
            LogFile::Direct(file) => file.pre_allocate(bytes, keep_size).await,
            LogFile::Buffered(file) => file.pre_allocate(bytes, keep_size).await,
            LogFile::Simulated(file) => return file.pre_allocate(bytes),
        }
        .map_err(io::Error::from)
    }

    async fn close(self) {
        let _ = match self {
            LogFile::Direct(file) => file.close().await,
            LogFile::Buffered(file) => file.close().await,
            LogFile::Simulated(_) => Ok(()),
        };
    }
}

/// The name of the segment whose first record is `base_seq`.
pub fn segment_name(base_seq: u64) -> String {
    format!("{base_seq:020}.log")
}

/// Appends batches to a shard's current segment and opens the next one when it is full.
pub struct SegmentWriter {
    dir: PathBuf,
    shard: u32,
    shard_count: u32,
    storage: Storage,
    file: LogFile,
    block_bytes: u64,
    /// The segment's random number, seeding its batch checksums.
    salt: u64,
    offset: u64,
    /// Written since the last sync.
    dirty: bool,
    /// The position after the last record written, and after the last one synced: every
    /// batch header says how far the log was synced when it was written.
    written_end: u64,
    synced_end: u64,
    /// Reused for padding each batch to whole blocks.
    staging: Vec<u8>,
    segment_bytes: u64,
}

impl SegmentWriter {
    /// Creates the segment starting at `base_seq` in `dir` (which must exist); its writes
    /// bypass the page cache if `direct_io` and the filesystem allows it.
    ///
    /// Every record below `base_seq` must be synced already: the batches written here say so.
    /// (A writer rolls over only after a sync, and start-up syncs the segment it cut.)
    pub async fn create(
        dir: &Path,
        shard: u32,
        shard_count: u32,
        base_seq: u64,
        direct_io: bool,
        segment_bytes: u64,
    ) -> io::Result<SegmentWriter> {
        let storage = Storage::Files { direct_io };
        Self::create_in(dir, storage, shard, shard_count, base_seq, segment_bytes).await
    }

    /// [`SegmentWriter::create`] on a [`SimulatedDisk`], for the power-cut tests.
    pub async fn create_simulated(
        disk: &Rc<SimulatedDisk>,
        dir: &Path,
        shard: u32,
        shard_count: u32,
        base_seq: u64,
        segment_bytes: u64,
    ) -> io::Result<SegmentWriter> {
        let storage = Storage::Simulated(Rc::clone(disk));
        Self::create_in(dir, storage, shard, shard_count, base_seq, segment_bytes).await
    }

    async fn create_in(
        dir: &Path,
        storage: Storage,
        shard: u32,
        shard_count: u32,
        base_seq: u64,
        segment_bytes: u64,
    ) -> io::Result<SegmentWriter> {
        let path = dir.join(segment_name(base_seq));
        let (file, block_bytes) = LogFile::create(&path, &storage).await?;
        // Where O_DIRECT was refused, the next segment does not ask again.
        let storage = match storage {
            Storage::Files { .. } => Storage::Files {
                direct_io: file.is_direct(),
            },
            simulated => simulated,
        };
        let salt = random_salt()?;
        let header = Header::segment(shard, shard_count, base_seq, block_bytes as u32, salt);
        file.write_all_at(&header.encode(), 0).await?;
        file.pre_allocate(segment_bytes, false).await?;
        file.sync().await?;
        // The new file's name must survive a power cut too (a simulated disk keeps names).
        if let Storage::Files { .. } = storage {
            sync_directory(dir).await?;
        }
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            shard,
            shard_count,
            storage,
            file,
            block_bytes,
            salt,
            offset: HEADER_BYTES as u64,
            dirty: false,
            written_end: base_seq,
            synced_end: base_seq,
            staging: Vec::new(),
            segment_bytes,
        })
    }

    /// The position after the last record synced (`fdatasync` returned).
    pub fn synced_end(&self) -> u64 {
        self.synced_end
    }

    /// Written since the last sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether writes bypass the page cache (O_DIRECT).
    pub fn is_direct(&self) -> bool {
        self.file.is_direct()
    }

    /// Writes one group commit (records `first_seq..end`) behind its batch header, on a
    /// fresh block.
    pub async fn write(&mut self, batch: &[u8], first_seq: u64, end: u64) -> io::Result<u64> {
        debug_assert_eq!(first_seq, self.written_end, "batches are written in order");
        let records_bytes = u32::try_from(batch.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a group commit over 4 GiB")
        })?;
        let span = |block_bytes: u64| batch_span(batch.len(), block_bytes as usize) as u64;
        let full = self.offset + span(self.block_bytes) > self.segment_bytes
            && self.offset > HEADER_BYTES as u64;
        // The seal at close stays in its segment, full or not.
        if full && !batch.is_empty() {
            self.roll(first_seq).await?;
        }
        // In the segment's own blocks, which a roll-over may have changed.
        let span = span(self.block_bytes);
        let header = BatchHeader {
            first_seq,
            records_bytes,
            synced_before: self.synced_end,
        };
        self.staging.clear();
        header.encode(&mut self.staging, batch, self.salt);
        self.staging.extend_from_slice(batch);
        self.staging.resize(span as usize, 0);
        self.file.write_all_at(&self.staging, self.offset).await?;
        self.offset += span;
        self.dirty = true;
        self.written_end = end;
        Ok(span)
    }

    /// `fdatasync` if anything was written since the last one.
    pub async fn sync(&mut self) -> io::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.file.sync().await?;
        self.dirty = false;
        self.synced_end = self.written_end;
        Ok(true)
    }

    async fn roll(&mut self, base_seq: u64) -> io::Result<()> {
        self.sync().await?;
        let next = SegmentWriter::create_in(
            &self.dir,
            self.storage.clone(),
            self.shard,
            self.shard_count,
            base_seq,
            self.segment_bytes,
        )
        .await?;
        let previous = std::mem::replace(self, next);
        previous.file.close().await;
        Ok(())
    }

    /// Syncs, then seals the segment with an empty batch saying all of it was synced (and
    /// syncs that): a record damaged after a clean stop then reads as corruption, never as a
    /// power cut's torn tail.
    pub async fn close(mut self) -> io::Result<()> {
        self.sync().await?;
        let end = self.written_end;
        self.write(&[], end, end).await?;
        self.sync().await?;
        self.file.close().await;
        Ok(())
    }
}

/// A segment's salt: random, so no bytes a client sends can be taken for a batch header.
/// Read from the kernel once per segment (every few MiB of log), never per write.
fn random_salt() -> io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Syncs a directory (its entries: a created, renamed or removed file) through io_uring: the
/// shards' form of [`super::files::sync_directory_blocking`].
pub async fn sync_directory(dir: &Path) -> io::Result<()> {
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(io::Error::from)?;
    directory.sync().await.map_err(io::Error::from)?;
    directory.close().await.map_err(io::Error::from)
}

/// What the flusher has made durable, who waits for what, and counters for `/metrics`.
pub struct Journal {
    mode: Durability,
    durable: Cell<u64>,
    /// Every record below this is on disk past a power cut (fdatasync returned).
    synced: Cell<u64>,
    waiters: RefCell<Vec<(u64, Waker)>>,
    /// Who waits for a position to be synced (see [`Journal::wait_synced`]).
    sync_waiters: RefCell<Vec<(u64, Waker)>>,
    /// The flusher, when it waits for records.
    idle_flusher: RefCell<Option<Waker>>,
    work: Cell<bool>,
    closing: Cell<bool>,
    sync_requested: Cell<bool>,
    pub stats: RefCell<JournalStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub bytes_written: u64,
    pub batches: u64,
    pub records: u64,
    pub syncs: u64,
    pub sync_micros_total: u64,
    /// Records in the largest batch so far.
    pub largest_batch_records: u64,
    /// Snapshots written by compaction.
    pub snapshots: u64,
}

impl Journal {
    pub fn new(mode: Durability, durable: u64) -> Rc<Journal> {
        Rc::new(Journal {
            mode,
            durable: Cell::new(durable),
            synced: Cell::new(durable),
            waiters: RefCell::new(Vec::new()),
            sync_waiters: RefCell::new(Vec::new()),
            idle_flusher: RefCell::new(None),
            work: Cell::new(false),
            closing: Cell::new(false),
            sync_requested: Cell::new(false),
            stats: RefCell::new(JournalStats::default()),
        })
    }

    pub fn mode(&self) -> Durability {
        self.mode
    }

    pub fn durable(&self) -> u64 {
        self.durable.get()
    }

    /// Every record below this position has been `fdatasync`ed.
    pub fn synced(&self) -> u64 {
        self.synced.get()
    }

    /// Asks the flusher to sync at its next round, whatever the interval.
    pub fn request_sync(&self) {
        self.sync_requested.set(true);
        self.kick();
    }

    pub fn take_sync_request(&self) -> bool {
        self.sync_requested.replace(false)
    }

    /// Records below `position` are synced: wake whoever waited for them.
    pub fn advance_synced(&self, position: u64) {
        self.synced.set(self.synced.get().max(position));
        let synced = self.synced.get();
        self.sync_waiters.borrow_mut().retain(|(wanted, waker)| {
            if *wanted <= synced {
                waker.wake_by_ref();
                false
            } else {
                true
            }
        });
    }

    /// Tells the flusher there are records to write.
    pub fn kick(&self) {
        self.work.set(true);
        if let Some(waker) = self.idle_flusher.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Asks the flusher to write what is left, sync and stop.
    pub fn close(&self) {
        self.closing.set(true);
        self.kick();
    }

    /// Resolves once every record below `position` is durable.
    pub fn wait_durable(self: &Rc<Self>, position: u64) -> WaitDurable {
        WaitDurable {
            journal: Rc::clone(self),
            position,
            synced: false,
        }
    }

    /// Resolves once every record below `position` is synced (`fdatasync` returned), asking
    /// the flusher for a sync now rather than at its `batch` interval. A multi-owner prepare
    /// waits for this in `batch` mode: every owner's prepare must survive a power cut before
    /// any owner commits, or recovery could deliver the message on some owners only.
    pub fn wait_synced(self: &Rc<Self>, position: u64) -> WaitDurable {
        WaitDurable {
            journal: Rc::clone(self),
            position,
            synced: true,
        }
    }

    /// Records below `position` are durable: wake whoever waited for them.
    pub fn advance(&self, position: u64) {
        debug_assert!(position >= self.durable.get(), "durable position went back");
        self.durable.set(position);
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|(wanted, waker)| {
            if *wanted <= position {
                waker.wake_by_ref();
                false
            } else {
                true
            }
        });
    }

    /// Waits until there is work (or `timeout` passes); true if there is.
    pub async fn wait_for_work(&self, timeout: Option<Duration>) -> bool {
        let work = WaitWork { journal: self };
        match timeout {
            Some(timeout) => {
                futures_lite::future::or(
                    async {
                        work.await;
                        true
                    },
                    async {
                        glommio::timer::sleep(timeout).await;
                        false
                    },
                )
                .await
            }
            None => {
                work.await;
                true
            }
        }
    }

    fn take_work(&self) -> bool {
        self.work.replace(false)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }
}

pub struct WaitDurable {
    journal: Rc<Journal>,
    position: u64,
    /// Wait for the sync, not only the write.
    synced: bool,
}

impl WaitDurable {
    /// Whether the wait is over already.
    pub fn is_done(&self) -> bool {
        let reached = if self.synced {
            self.journal.synced.get()
        } else {
            self.journal.durable.get()
        };
        reached >= self.position
    }
}

impl Future for WaitDurable {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        let waiter = (self.position, cx.waker().clone());
        if self.synced {
            self.journal.sync_waiters.borrow_mut().push(waiter);
            self.journal.request_sync();
        } else {
            self.journal.waiters.borrow_mut().push(waiter);
        }
        Poll::Pending
    }
}

struct WaitWork<'a> {
    journal: &'a Journal,
}

impl Future for WaitWork<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.journal.take_work() {
            return Poll::Ready(());
        }
        *self.journal.idle_flusher.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One flush: how many records and bytes went out, and whether it synced.
#[derive(Debug, Clone, Copy)]
pub struct Flushed {
    pub records: u64,
    pub bytes: u64,
    /// How long the fdatasync took, if one was made.
    pub synced_in: Option<Duration>,
    /// Everything written so far is synced (a sync ran, or there was nothing to sync).
    pub synced: bool,
}

/// Writes `batch` (records `first_seq..end`) and syncs as `mode` asks; `last_sync` is when the
/// log was last synced (batch mode syncs once the interval has passed).
pub async fn flush_batch(
    writer: &mut SegmentWriter,
    mode: Durability,
    batch: &[u8],
    first_seq: u64,
    end: u64,
    last_sync: &mut Instant,
    force_sync: bool,
) -> io::Result<Flushed> {
    let bytes = if batch.is_empty() {
        0
    } else {
        writer.write(batch, first_seq, end).await?
    };
    let due = match mode {
        Durability::Fsync => true,
        Durability::Batch { fsync_interval } => last_sync.elapsed() >= fsync_interval,
        Durability::None => false,
    };
    let mut synced_in = None;
    if due || force_sync {
        let started = Instant::now();
        if writer.sync().await? {
            synced_in = Some(started.elapsed());
        }
        *last_sync = Instant::now();
    }
    Ok(Flushed {
        records: end - first_seq,
        bytes,
        synced_in,
        synced: !writer.is_dirty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(wait: &mut WaitDurable) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Each batch's header as written: (first position, records' bytes, synced before).
    fn batch_headers(path: &Path) -> Vec<(u64, u32, u64)> {
        let bytes = std::fs::read(path).expect("reads");
        let header = Header::decode(&bytes).expect("a header");
        let mut found = Vec::new();
        let mut offset = HEADER_BYTES;
        let word = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        while offset < bytes.len() && &bytes[offset..offset + 4] == b"ALGB" {
            let records = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
            found.push((word(offset + 8), records, word(offset + 16)));
            offset +=
                super::super::segment::batch_span(records as usize, header.block_bytes as usize);
        }
        found
    }

    #[test]
    fn each_batch_says_how_far_the_log_was_synced_before_it_and_a_new_segment_starts_synced() {
        let dir = std::env::temp_dir().join(format!("allman-batches-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creates");
        let disk = SimulatedDisk::new();
        let segment_bytes = HEADER_BYTES as u64 + 2048;
        let writer = futures_lite::future::block_on(SegmentWriter::create_simulated(
            &disk,
            &dir,
            0,
            1,
            5,
            segment_bytes,
        ))
        .expect("creates");
        let record = [7u8; 300];
        futures_lite::future::block_on(async move {
            let mut writer = writer;
            writer.write(&record, 5, 6).await?;
            writer.write(&record, 6, 8).await?;
            writer.sync().await?;
            writer.write(&record, 8, 9).await?;
            // Past the segment's 2 KiB: the writer syncs and rolls over to segment 9.
            writer.write(&[1u8; 1500], 9, 10).await?;
            writer.close().await
        })
        .expect("writes");
        let first = batch_headers(&dir.join(segment_name(5)));
        assert_eq!(first, vec![(5, 300, 5), (6, 300, 5), (8, 300, 8)]);
        let second = batch_headers(&dir.join(segment_name(9)));
        assert_eq!(second, vec![(9, 1500, 9), (10, 0, 10)], "sealed at close");
        assert_eq!(disk.unsynced_bytes(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_wait_for_the_sync_asks_for_one_and_ends_only_when_it_is_done() {
        let interval = Duration::from_secs(3600);
        let journal = Journal::new(
            Durability::Batch {
                fsync_interval: interval,
            },
            0,
        );
        journal.advance(5);
        let mut written = journal.wait_durable(5);
        assert_eq!(poll(&mut written), Poll::Ready(()), "written is enough");
        let mut synced = journal.wait_synced(5);
        assert_eq!(poll(&mut synced), Poll::Pending, "written, not synced");
        assert!(
            journal.take_sync_request(),
            "the flusher is asked to sync now, not in an hour"
        );
        journal.advance_synced(4);
        assert_eq!(poll(&mut synced), Poll::Pending);
        journal.advance_synced(5);
        assert!(journal.sync_waiters.borrow().is_empty(), "woken and gone");
        assert_eq!(poll(&mut synced), Poll::Ready(()));
    }
}

//! A disk for the power-cut tests: segment files whose writes wait in memory until synced, as
//! in a page cache, so a test can cut the power and decide which of them reach the file.
//!
//! A write is kept aside until its file is synced, when it goes to the real file. A
//! [`SimulatedDisk::cut`] then drops every write not yet synced, keeps a random subset of
//! their 512-byte sectors, or tears the last one mid-way (a kill -9 keeps them all), and
//! leaves real files that recovery reads as it would after the cut. Creating a file and
//! preallocating it count as durable at once: the writer syncs both, and the directory,
//! before its first batch.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The unit a cut keeps or drops: a device sector.
pub const SECTOR_BYTES: usize = 512;

/// What a power cut (or a crash of the process) does to the writes not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// kill -9, not a power cut: the page cache outlives the process, so every write
    /// reaches the file.
    Crash,
    /// None reaches the disk.
    DropAll,
    /// Each sector of each write reaches it or not, at random and in no order.
    RandomSectors,
    /// In each file, every write but the last reaches it whole; the last only up to a
    /// random byte.
    TearLast,
}

/// Writes not yet synced, per file, in the order they were made.
#[derive(Default)]
pub struct SimulatedDisk {
    files: RefCell<Vec<Rc<RefCell<Unsynced>>>>,
}

struct Unsynced {
    path: PathBuf,
    writes: Vec<(u64, Vec<u8>)>,
}

/// One file of a [`SimulatedDisk`].
pub struct SimulatedFile {
    unsynced: Rc<RefCell<Unsynced>>,
}

impl SimulatedDisk {
    pub fn new() -> Rc<SimulatedDisk> {
        Rc::new(SimulatedDisk::default())
    }

    /// Creates `path` (which must not exist) as a file of this disk.
    pub(crate) fn create(&self, path: &Path) -> io::Result<SimulatedFile> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let unsynced = Rc::new(RefCell::new(Unsynced {
            path: path.to_path_buf(),
            writes: Vec::new(),
        }));
        self.files.borrow_mut().push(Rc::clone(&unsynced));
        Ok(SimulatedFile { unsynced })
    }

    /// Bytes written and not yet synced, over every file.
    pub fn unsynced_bytes(&self) -> usize {
        let files = self.files.borrow();
        let each = files.iter().map(|f| {
            f.borrow()
                .writes
                .iter()
                .map(|(_, w)| w.len())
                .sum::<usize>()
        });
        each.sum()
    }

    /// The power goes: each file's unsynced writes reach it as `cut` says, `below(n)` giving
    /// a random number below `n`. Afterwards the disk holds nothing unsynced.
    pub fn cut(&self, cut: Cut, below: &mut impl FnMut(u64) -> u64) -> io::Result<()> {
        let files = std::mem::take(&mut *self.files.borrow_mut());
        for file in &files {
            let Unsynced { path, writes } = &mut *file.borrow_mut();
            let count = writes.len();
            for (n, (offset, bytes)) in writes.drain(..).enumerate() {
                match cut {
                    Cut::Crash => write_at(path, &bytes, offset)?,
                    Cut::DropAll => {}
                    Cut::RandomSectors => {
                        for (k, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                            if below(2) == 0 {
                                let at = offset + (k * SECTOR_BYTES) as u64;
                                write_at(path, sector, at)?;
                            }
                        }
                    }
                    Cut::TearLast if n + 1 == count => {
                        let kept = below(bytes.len() as u64) as usize;
                        write_at(path, &bytes[..kept], offset)?;
                    }
                    Cut::TearLast => write_at(path, &bytes, offset)?,
                }
            }
        }
        Ok(())
    }
}

impl SimulatedFile {
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<usize> {
        self.unsynced
            .borrow_mut()
            .writes
            .push((offset, bytes.to_vec()));
        Ok(bytes.len())
    }

    /// The writes so far reach the file, in order.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let Unsynced { path, writes } = &mut *self.unsynced.borrow_mut();
        for (offset, bytes) in writes.drain(..) {
            write_at(path, &bytes, offset)?;
        }
        Ok(())
    }

    /// Durable at once (see the module's note): the file reads as zeros up to `bytes`.
    pub(crate) fn pre_allocate(&self, bytes: u64) -> io::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&self.unsynced.borrow().path)?;
        if file.metadata()?.len() < bytes {
            file.set_len(bytes)?;
        }
        Ok(())
    }
}

fn write_at(path: &Path, bytes: &[u8], offset: u64) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all_at(bytes, offset)
}

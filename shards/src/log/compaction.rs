//! Compaction: a shard's log does not grow without bound. Once the log written since the last
//! snapshot passes `max(min_log_bytes, 2 × live bytes)`, the shard copies pointers to its
//! whole state in one synchronous step ([`crate::ShardState::image`]), writes them as a
//! snapshot in the background (bytes encoded by the state in chunks, yielding between them;
//! the driving loop is [`crate::runtime`]'s compactor), and once the snapshot is
//! durable deletes what it makes obsolete: older snapshots, and segments whose records are all
//! below both the snapshot and what the search index and git trail have safely recorded.

use super::files::snapshot_name;
use super::journal::sync_directory;
use super::segment::Header;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// When to snapshot.
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    /// Snapshot once the log since the last snapshot is at least this long (and twice the
    /// live state).
    pub min_log_bytes: u64,
    /// How often the shard looks.
    pub check_interval: Duration,
}

/// Bytes encoded before each write of a snapshot: the work between two yields.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Writes the snapshot at `position` in `dir`, through io_uring, its records appended by
/// `fill` a chunk at a time (true once done), yielding to the executor after each chunk: to a
/// temporary name, synced, renamed, directory synced.
pub async fn write_snapshot(
    dir: &Path,
    shard: u32,
    shard_count: u32,
    position: u64,
    mut fill: impl FnMut(&mut Vec<u8>, usize) -> bool,
) -> io::Result<PathBuf> {
    let path = dir.join(snapshot_name(position));
    let temporary = path.with_extension("snap.tmp");
    let file = glommio::io::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&temporary)
        .await
        .map_err(io::Error::from)?;
    let header = Header::snapshot(shard, shard_count, position);
    let mut chunk = header.encode();
    let mut offset = 0u64;
    loop {
        let done = fill(&mut chunk, SNAPSHOT_CHUNK_BYTES);
        if !chunk.is_empty() {
            offset += write_chunk(&file, &mut chunk, offset).await?;
        }
        if done {
            break;
        }
    }
    file.fdatasync().await.map_err(io::Error::from)?;
    file.close().await.map_err(io::Error::from)?;
    glommio::io::rename(&temporary, &path)
        .await
        .map_err(io::Error::from)?;
    sync_directory(dir).await?;
    Ok(path)
}

/// Writes `chunk` at `offset` and empties it; then gives the executor back its turn.
async fn write_chunk(
    file: &glommio::io::BufferedFile,
    chunk: &mut Vec<u8>,
    offset: u64,
) -> io::Result<u64> {
    let len = chunk.len();
    let mut done = 0;
    while done < len {
        // The file takes a buffer of its own (a copy: 1 MiB costs tens of microseconds).
        let part = chunk[done..].to_vec();
        let written = file
            .write_at(part, offset + done as u64)
            .await
            .map_err(io::Error::from)?;
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "snapshot write wrote nothing",
            ));
        }
        done += written;
    }
    chunk.clear();
    glommio::yield_if_needed().await;
    Ok(len as u64)
}

/// The files in `dir` nothing needs once the snapshot at `snapshot` is durable: older
/// snapshots, and segments whose records all lie below `deletable_below` (never the last
/// segment, which is being written).
pub fn obsolete_files(dir: &Path, snapshot: u64, deletable_below: u64) -> io::Result<Vec<PathBuf>> {
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    let mut obsolete = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        match (path.extension().and_then(|e| e.to_str()), number) {
            (Some("snap"), Some(position)) if position < snapshot => obsolete.push(path),
            (Some("log"), Some(base)) => segments.push((base, path)),
            _ => {}
        }
    }
    segments.sort();
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_base, _) = &pair[1];
        if *next_base <= deletable_below {
            obsolete.push(path.clone());
        }
    }
    Ok(obsolete)
}

/// Removes `files` through io_uring, then syncs `dir`.
pub async fn remove_files(dir: &Path, files: &[PathBuf]) -> io::Result<()> {
    for file in files {
        match glommio::io::remove(file).await {
            Ok(()) => {}
            Err(error) => {
                let error = io::Error::from(error);
                if error.kind() != io::ErrorKind::NotFound {
                    return Err(error);
                }
            }
        }
    }
    if !files.is_empty() {
        sync_directory(dir).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_wholly_below_the_bound_and_older_snapshots_are_obsolete() {
        let dir = std::env::temp_dir().join(format!("allman-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for name in [
            "00000000000000000000.log",
            "00000000000000000100.log",
            "00000000000000000200.log",
            "00000000000000000050.snap",
            "00000000000000000150.snap",
        ] {
            std::fs::write(dir.join(name), b"").expect("file");
        }
        let mut obsolete = obsolete_files(&dir, 150, 150).expect("list");
        obsolete.sort();
        let names: Vec<String> = obsolete
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        // The segment at 100 holds records 100..200, some above 150: kept. The last: kept.
        assert_eq!(
            names,
            vec!["00000000000000000000.log", "00000000000000000050.snap"]
        );
        let none = obsolete_files(&dir, 150, 99).expect("list");
        assert_eq!(
            none.len(),
            1,
            "only the older snapshot while the helpers lag"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The compactor: snapshots a shard's state once its log is long enough, and deletes the log
//! files the snapshot and the helpers' watermarks make obsolete.

use super::Shard;
use crate::log::compaction::{obsolete_files, remove_files, write_snapshot, CompactPolicy};
use crate::log::watermarks::HelperWatermarks;
use crate::state::ImageEncoder;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

impl Shard {
    /// Compaction (see [`crate::log::compaction`]): snapshots the state once the log since
    /// the last snapshot is long enough, then deletes what the snapshot and the helper
    /// threads' watermarks make obsolete. `log_bytes_before` is the log this run started with.
    /// Returns when the journal closes, or on an I/O error (the caller decides).
    pub async fn compact_log(
        self: Rc<Self>,
        dir: std::path::PathBuf,
        policy: CompactPolicy,
        log_bytes_before: u64,
        helpers: Arc<HelperWatermarks>,
    ) -> std::io::Result<()> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let written = || journal.stats.borrow().bytes_written;
        let mut carried = log_bytes_before;
        let mut mark = written();
        // A snapshot whose older files wait for the helper threads: (position, emitted ends).
        let mut cleanup: Option<(u64, u64, u64)> = None;
        loop {
            glommio::timer::sleep(policy.check_interval).await;
            if journal.is_closing() {
                return Ok(());
            }
            if let Some((position, message_end, profile_end)) = cleanup {
                let (index, git) = helpers.of(self.id);
                let reached = |helper: u64, emitted_end: u64| {
                    if helper >= emitted_end {
                        position
                    } else {
                        helper
                    }
                };
                let below = reached(index, message_end).min(reached(git, profile_end));
                let files = obsolete_files(&dir, position, below)?;
                remove_files(&dir, &files).await?;
                if below >= position {
                    cleanup = None;
                }
            }
            let since_snapshot = carried + written() - mark;
            let live = self.state.borrow().live_bytes() as u64;
            if since_snapshot < policy.min_log_bytes.max(2 * live) {
                continue;
            }
            let (image, (message_end, profile_end)) = {
                let mut state = self.state.borrow_mut();
                let image = state.image();
                (image, state.outbox().emitted_ends())
            };
            let at_image = written();
            let position = image.position;
            // The snapshot may replace log records only once they are on disk for good.
            journal.wait_durable(position).await;
            while journal.synced() < position {
                if journal.is_closing() {
                    return Ok(());
                }
                journal.request_sync();
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let mut encoder = ImageEncoder::new(&image);
            let fill = |out: &mut Vec<u8>, piece_bytes| encoder.fill(out, piece_bytes);
            write_snapshot(&dir, self.id as u32, self.count as u32, position, fill).await?;
            let markers = image.recent_visible.len();
            drop(image);
            self.state.borrow_mut().forget_recent_visible(markers);
            journal.stats.borrow_mut().snapshots += 1;
            carried = 0;
            mark = at_image;
            cleanup = Some((position, message_end, profile_end));
        }
    }
}

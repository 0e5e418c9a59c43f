//! The flusher: the shard's group commit, and the emissions and wakes it releases once
//! records are durable.

use super::Shard;
use crate::log::journal::{flush_batch, SegmentWriter};
use std::rc::Rc;
use std::time::{Duration, Instant};

impl Shard {
    /// Hands the emissions whose records are durable up to `durable` to the sink.
    pub(super) fn release_events(&self, durable: u64) {
        let sink = self.sink.borrow();
        let Some(sink) = sink.as_ref() else {
            return;
        };
        let mut released = self.released.borrow_mut();
        self.state
            .borrow_mut()
            .outbox_mut()
            .take_events(durable, &mut released);
        for event in released.drain(..) {
            sink(event);
        }
    }

    /// The flusher: writes what the state appended, group commit, until the journal is
    /// closed and everything is written and synced. An error ends it (and should end the
    /// server: nothing unlogged may be acknowledged).
    pub async fn flush_log(self: Rc<Self>, mut writer: SegmentWriter) -> std::io::Result<()> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let mode = journal.mode();
        // Records appended before serving (recovery's resolutions) go out at once.
        if self.state.borrow().log().pending_bytes() > 0 {
            journal.kick();
        }
        let mut spare = Vec::new();
        let mut written_end = journal.durable();
        let mut last_sync = Instant::now();
        loop {
            let timeout = match mode {
                crate::log::journal::Durability::Batch { fsync_interval } if writer.is_dirty() => {
                    Some(
                        fsync_interval
                            .saturating_sub(last_sync.elapsed())
                            .max(Duration::from_millis(1)),
                    )
                }
                _ => None,
            };
            journal.wait_for_work(timeout).await;
            let closing = journal.is_closing();
            let force_sync = closing || journal.take_sync_request();
            let (batch, end) = self.state.borrow_mut().log_mut().take_batch(spare);
            let flushed = flush_batch(
                &mut writer,
                mode,
                &batch,
                written_end,
                end,
                &mut last_sync,
                force_sync,
            )
            .await?;
            written_end = end;
            {
                let mut stats = journal.stats.borrow_mut();
                stats.bytes_written += flushed.bytes;
                stats.records += flushed.records;
                if flushed.records > 0 {
                    stats.batches += 1;
                }
                stats.largest_batch_records = stats.largest_batch_records.max(flushed.records);
                if let Some(took) = flushed.synced_in {
                    stats.syncs += 1;
                    stats.sync_micros_total += took.as_micros() as u64;
                }
            }
            if flushed.synced {
                journal.advance_synced(end);
            }
            journal.advance(end);
            self.release_events(end);
            self.wake_for_mail(end);
            spare = batch;
            spare.clear();
            if closing && self.state.borrow().log().pending_bytes() == 0 {
                return writer.close().await;
            }
        }
    }
}

//! Giving a shard's executor back to its reactor at a bounded interval.
//!
//! glommio polls I/O (new connections, socket readiness, timers, other shards' wake-ups) only
//! when no task is runnable, or when its preempt timer fires (100 ms by default). A task
//! serving a pipelining client, or draining a busy channel, never stops being runnable: its
//! socket reads and channel receives complete at once while data is there. `yield_if_needed`
//! alone would hand the executor back only every 100 ms, and a shorter preempt timer made
//! executors miss each other's wake-ups while joining the mesh (a start-up hang seen in 1 of
//! ~20 starts under load), so it is not lowered. Instead a busy loop sleeps for a moment
//! once it has run for [`RUN_SLICE`]: the task is then not runnable, the run queue empties,
//! and the executor polls its I/O before it comes back.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a loop may keep the executor before it steps aside. Small enough that a fresh
/// connection is served within a few slices under any flood; large enough that the timer
/// costs nothing measurable (one per half millisecond of continuous work).
pub const RUN_SLICE: Duration = Duration::from_micros(500);
/// How long a loop that stepped aside stays out. Long enough that the work the reactor just
/// woke (a new connection, another client's request) runs before the busy loops come back:
/// with 1 µs, four flooding connections returned in the very next pass and a fresh
/// connection's ping took 25-40 ms in a debug build; with 50 µs, 4-6 ms. A loop that floods
/// for good loses at most a tenth of its time to it.
const STEP_ASIDE: Duration = Duration::from_micros(50);

/// One loop's share of the executor. Call [`Turn::done`] after each unit of work.
#[derive(Debug)]
pub struct Turn {
    started: Instant,
}

impl Default for Turn {
    fn default() -> Self {
        Self::new()
    }
}

impl Turn {
    pub fn new() -> Self {
        Turn {
            started: Instant::now(),
        }
    }

    /// Whether this loop has had the executor for a whole slice.
    pub fn is_over(&self) -> bool {
        self.started.elapsed() >= RUN_SLICE
    }

    /// Steps aside if this loop has run for a whole slice, so the executor polls its I/O and
    /// runs its other tasks; then starts a new slice.
    pub async fn done(&mut self) {
        if self.is_over() {
            step_aside().await;
            self.started = Instant::now();
        }
    }

    /// Starts a new slice without stepping aside (the loop just waited anyway).
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// Awaits `future`. If it had to wait (it was not ready at once), the executor ran other
    /// work meanwhile, so a new slice starts: a connection that waits for each request never
    /// has to step aside, only one whose input is always there.
    pub async fn wait<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        if let Some(output) = futures_lite::future::poll_once(&mut future).await {
            return output;
        }
        let output = future.await;
        self.started = Instant::now();
        output
    }
}

/// Sleeps for `STEP_ASIDE`. A timer whose time has already come when it is first polled
/// completes at once, without yielding (the thread may be descheduled in between), so the
/// pause doubles until one really waits.
async fn step_aside() {
    let mut pause = STEP_ASIDE;
    loop {
        let mut timer = std::pin::pin!(glommio::timer::sleep(pause));
        if futures_lite::future::poll_once(&mut timer).await.is_none() {
            timer.await;
            return;
        }
        pause = pause.saturating_mul(2);
    }
}

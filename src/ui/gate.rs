//! Keeps the web view from slowing `/mcp`. A shard renders one page at a time, and after a
//! page that took `t` the next may start only `(100 / UI_DUTY_PERCENT - 1) * t` later: the
//! view gets at most [`UI_DUTY_PERCENT`] of the shard's time however hard it is hammered.
//! Pages over that pace wait their turn (bounded) instead of being refused, so a client that
//! reloads as fast as it can is slowed down rather than answered into a flood.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Share of a shard's time the view may take. A page's time counts from its start to its end,
/// waits on other shards and on search included, so the real share is lower.
pub const UI_DUTY_PERCENT: u32 = 1;
/// Pages waiting for their turn on one shard; past it a page gets 503 at once. A browser opens
/// at most six connections to a host, so this is several viewers' worth.
pub const MAX_WAITING_PAGES: usize = 32;
/// The longest a page waits for its turn before it gets 503.
pub const MAX_PAGE_WAIT: Duration = Duration::from_secs(5);
/// The longest pause one slow page imposes on the next.
const MAX_PAUSE: Duration = Duration::from_secs(1);

pub struct Gate {
    /// One page at a time; waiting pages queue here in order (no polling).
    turn: glommio::sync::Semaphore,
    /// When the next page may start: the pause the last one earned.
    next_start: Cell<Instant>,
    waiting: Cell<usize>,
}

/// Too many pages are waiting, or this one waited too long.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

impl Default for Gate {
    fn default() -> Self {
        Gate {
            turn: glommio::sync::Semaphore::new(1),
            next_start: Cell::new(Instant::now()),
            waiting: Cell::new(0),
        }
    }
}

impl Gate {
    /// Waits for this page's turn; the page runs while the [`Pass`] lives.
    pub async fn enter(&self) -> Result<Pass<'_>, Busy> {
        if self.waiting.get() >= MAX_WAITING_PAGES {
            return Err(Busy);
        }
        let _waiting = Waiting::new(&self.waiting);
        let deadline = Instant::now() + MAX_PAGE_WAIT;
        let turn =
            futures_lite::future::or(async { self.turn.acquire_permit(1).await.ok() }, async {
                glommio::timer::sleep(MAX_PAGE_WAIT).await;
                None
            })
            .await
            .ok_or(Busy)?;
        let now = Instant::now();
        let start = self.next_start.get();
        if start > now {
            if start > deadline {
                return Err(Busy);
            }
            glommio::timer::sleep(start - now).await;
        }
        Ok(Pass {
            gate: self,
            _turn: turn,
            started: Instant::now(),
        })
    }
}

/// The right to render one page; dropping it sets the pause before the next.
pub struct Pass<'a> {
    gate: &'a Gate,
    _turn: glommio::sync::Permit<'a>,
    started: Instant,
}

impl Pass<'_> {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let pause = (took * (100 / UI_DUTY_PERCENT - 1)).min(MAX_PAUSE);
        self.gate.next_start.set(Instant::now() + pause);
    }
}

/// Counts a waiting page for as long as it waits (also if its request is dropped).
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn new(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_paced_to_the_duty_share_and_excess_waiters_refused() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let gate = Gate::default();
                let pass = gate.enter().await.expect("idle gate opens at once");
                let busy_for = Duration::from_millis(4);
                std::thread::sleep(busy_for);
                drop(pass);
                let pause = gate
                    .next_start
                    .get()
                    .saturating_duration_since(Instant::now());
                let expected = busy_for * (100 / UI_DUTY_PERCENT - 1);
                assert!(pause >= expected.mul_f64(0.9), "{pause:?} < {expected:?}");
                assert!(pause <= MAX_PAUSE);
                let waited = Instant::now();
                let second = gate.enter().await.expect("opens after the pause");
                assert!(waited.elapsed() >= pause.mul_f64(0.9));
                // Waiters queue up to the bound; the next is refused.
                gate.waiting.set(MAX_WAITING_PAGES);
                assert_eq!(gate.enter().await.map(|_| ()), Err(Busy));
                gate.waiting.set(0);
                drop(second);
            })
            .expect("executor")
            .join()
            .expect("joins");
    }
}

//! Keeps the web view from slowing `/mcp`. A shard renders one page at a time, and after a
//! page that kept the shard busy for `t` (its own polls, not its waits on other shards or on
//! search) the next may start only `(100 / UI_DUTY_PERCENT - 1) * t` later: the view gets at
//! most [`UI_DUTY_PERCENT`] of the shard's time however hard it is hammered. Pages over that
//! pace wait their turn (bounded) instead of being refused, so a client that reloads as fast
//! as it can is slowed down rather than answered into a flood.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

/// Share of a shard's time the view may take.
pub const UI_DUTY_PERCENT: u32 = 1;
/// Pages waiting for their turn on one shard; past it a page gets 503 at once. A browser opens
/// at most six connections to a host, so this is several viewers' worth.
pub const MAX_WAITING_PAGES: usize = 32;
/// The longest a page waits for its turn before it gets 503.
pub const MAX_PAGE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
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
            busy: Cell::new(Duration::ZERO),
            pause_at_least: Cell::new(Duration::ZERO),
        })
    }
}

/// The right to render one page; dropping it sets the pause before the next.
pub struct Pass<'a> {
    gate: &'a Gate,
    _turn: glommio::sync::Permit<'a>,
    /// Time the shard spent inside the page's polls.
    busy: Cell<Duration>,
    pause_at_least: Cell<Duration>,
}

impl Pass<'_> {
    /// Runs `page`, counting the time the shard spends polling it.
    pub async fn run<F: Future>(&self, page: F) -> F::Output {
        let mut page = std::pin::pin!(page);
        std::future::poll_fn(|cx| {
            let started = Instant::now();
            let polled = page.as_mut().poll(cx);
            self.busy.set(self.busy.get() + started.elapsed());
            polled
        })
        .await
    }

    /// The shard time the page has taken so far.
    pub fn busy(&self) -> Duration {
        self.busy.get()
    }

    /// Makes the pause after this page at least `pause` (a failed login, whatever it cost).
    pub fn pause_at_least(&self, pause: Duration) {
        self.pause_at_least.set(pause);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let pause = (self.busy.get() * (100 / UI_DUTY_PERCENT - 1)).max(self.pause_at_least.get());
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
                // Busy in its polls; the wait on a timer in between is not counted. The wait
                // is long beside the busy time, so a loaded machine oversleeping the busy
                // part cannot be taken for the wait being counted.
                let timer_wait = Duration::from_millis(200);
                pass.run(async {
                    std::thread::sleep(busy_for / 2);
                    glommio::timer::sleep(timer_wait).await;
                    std::thread::sleep(busy_for / 2);
                })
                .await;
                let busy = pass.busy();
                assert!(busy >= busy_for && busy < timer_wait, "{busy:?}");
                drop(pass);
                let pause = gate
                    .next_start
                    .get()
                    .saturating_duration_since(Instant::now());
                let expected = busy * (100 / UI_DUTY_PERCENT - 1);
                assert!(pause >= expected.mul_f64(0.9), "{pause:?} < {expected:?}");
                assert!(pause <= expected, "{pause:?} > {expected:?}");
                let waited = Instant::now();
                let second = gate.enter().await.expect("opens after the pause");
                assert!(waited.elapsed() >= pause.mul_f64(0.9));
                // Waiters queue up to the bound; the next is refused.
                gate.waiting.set(MAX_WAITING_PAGES);
                assert_eq!(gate.enter().await.map(|_| ()), Err(Busy));
                gate.waiting.set(0);
                // A failed login pauses the next page however cheap it was.
                second.pause_at_least(Duration::from_millis(500));
                drop(second);
                let pause = gate
                    .next_start
                    .get()
                    .saturating_duration_since(Instant::now());
                assert!(pause > Duration::from_millis(450), "{pause:?}");
            })
            .expect("executor")
            .join()
            .expect("joins");
    }
}

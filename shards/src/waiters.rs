//! Long polls (`wait_for_mail`) parked on the shard that owns their agent. A waiter is an
//! entry here plus the future that owns it; nothing runs while it waits. New mail wakes the
//! agent's waiters once its record is durable; a stop wakes them all at once.

use std::collections::HashMap;
use std::task::Waker;

/// How many long polls may wait at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaiterLimits {
    /// On one shard: each costs an entry here and its request's future (a few hundred bytes).
    pub per_shard: usize,
    /// On one agent: more than a handful waiting on one inbox is a client bug, not a need.
    pub per_agent: usize,
}

impl Default for WaiterLimits {
    fn default() -> Self {
        WaiterLimits {
            per_shard: 10_000,
            per_agent: 64,
        }
    }
}

/// Why a waiter's future was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// New mail for its agent (or a spurious wake): look again.
    Mail,
    /// The server is stopping, or the caller went away: answer now.
    Now,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    waker: Option<Waker>,
    wake: Option<Wake>,
}

#[derive(Debug, Default)]
pub struct Waiters {
    by_agent: HashMap<Box<str>, Vec<Entry>>,
    count: usize,
    limits: WaiterLimits,
    next_id: u64,
    closing: bool,
    /// Waits asked for by other shards, by (peer, the peer's wait id), for cancelling.
    remote: HashMap<(usize, u64), (Box<str>, u64)>,
}

impl Waiters {
    pub fn new(limits: WaiterLimits) -> Self {
        Waiters {
            limits,
            ..Waiters::default()
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Adds a waiter on `name`; `Err` names the bound that is full. The bool says whether it
    /// is the agent's first (the state should start watching it).
    pub fn register(
        &mut self,
        name: &str,
        remote: Option<(usize, u64)>,
    ) -> Result<(u64, bool), (bool, usize)> {
        if self.count >= self.limits.per_shard {
            return Err((false, self.limits.per_shard));
        }
        let entries = self.by_agent.get(name).map_or(0, Vec::len);
        if entries >= self.limits.per_agent {
            return Err((true, self.limits.per_agent));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_agent.entry(name.into()).or_default().push(Entry {
            id,
            waker: None,
            wake: None,
        });
        self.count += 1;
        if let Some(key) = remote {
            self.remote.insert(key, (name.into(), id));
        }
        Ok((id, entries == 0))
    }

    /// Removes a waiter; true if its agent has none left (the state may stop watching it).
    pub fn unregister(&mut self, name: &str, id: u64, remote: Option<(usize, u64)>) -> bool {
        if let Some(key) = remote {
            self.remote.remove(&key);
        }
        let Some(entries) = self.by_agent.get_mut(name) else {
            return false;
        };
        let before = entries.len();
        entries.retain(|e| e.id != id);
        self.count -= before - entries.len();
        if entries.is_empty() {
            self.by_agent.remove(name);
            return true;
        }
        false
    }

    /// Takes the waiter's wake reason, or stores `waker` for the next one.
    pub fn poll(&mut self, name: &str, id: u64, waker: &Waker) -> Option<Wake> {
        if self.closing {
            return Some(Wake::Now);
        }
        let entry = self
            .by_agent
            .get_mut(name)?
            .iter_mut()
            .find(|e| e.id == id)?;
        if let Some(wake) = entry.wake.take() {
            return Some(wake);
        }
        if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            entry.waker = Some(waker.clone());
        }
        None
    }

    /// Wakes every waiter of `name` to look at its mail again.
    pub fn wake_agent(&mut self, name: &str) {
        if let Some(entries) = self.by_agent.get_mut(name) {
            for entry in entries {
                wake(entry, Wake::Mail);
            }
        }
    }

    /// The caller of a remote wait went away.
    pub fn cancel(&mut self, peer: usize, wait_id: u64) {
        let Some((name, id)) = self.remote.get(&(peer, wait_id)) else {
            return;
        };
        if let Some(entry) = self
            .by_agent
            .get_mut(name)
            .and_then(|entries| entries.iter_mut().find(|e| e.id == *id))
        {
            wake(entry, Wake::Now);
        }
    }

    /// The server is stopping: every waiter answers now, and new ones do not wait.
    pub fn close(&mut self) {
        self.closing = true;
        for entries in self.by_agent.values_mut() {
            for entry in entries {
                wake(entry, Wake::Now);
            }
        }
    }
}

fn wake(entry: &mut Entry, reason: Wake) {
    // `Now` wins over `Mail`: a cancelled waiter must not go back to sleep.
    if entry.wake != Some(Wake::Now) {
        entry.wake = Some(reason);
    }
    if let Some(waker) = entry.waker.take() {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake as WakeTrait;

    struct Counter(AtomicUsize);

    impl WakeTrait for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn bounds_wakes_and_cancels() {
        let mut waiters = Waiters::new(WaiterLimits {
            per_shard: 3,
            per_agent: 2,
        });
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        assert_eq!(waiters.register("a", None).map(|r| r.1), Ok(true));
        assert_eq!(waiters.register("a", Some((1, 9))).map(|r| r.1), Ok(false));
        assert_eq!(waiters.register("a", None), Err((true, 2)));
        let (b, _) = waiters.register("b", None).expect("room");
        assert_eq!(waiters.register("c", None), Err((false, 3)));
        assert_eq!(waiters.poll("b", b, &waker), None);
        waiters.wake_agent("a");
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "b was not woken");
        waiters.wake_agent("b");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(waiters.poll("b", b, &waker), Some(Wake::Mail));
        assert_eq!(waiters.poll("a", 2, &waker), Some(Wake::Mail));
        waiters.cancel(1, 9);
        assert_eq!(waiters.poll("a", 2, &waker), Some(Wake::Now));
        assert!(!waiters.unregister("a", 1, None));
        assert!(waiters.unregister("a", 2, Some((1, 9))));
        assert_eq!(waiters.len(), 1);
        waiters.close();
        assert_eq!(waiters.poll("b", b, &waker), Some(Wake::Now));
    }
}

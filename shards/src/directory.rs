//! The projects one shard knows, for the read-only web view: each project's agents here in
//! name order, its queued mail here, and the traffic its agents here sent (per minute over
//! the last hour, and the newest few messages).
//!
//! Everything is derived from records the state applies anyway (agents, deliveries, drains,
//! sent copies), so replay rebuilds it and it needs no records of its own. Each page of the
//! view reads it in bounded steps: ranges of ordered maps, never a scan of every agent.

use crate::envelope::SharedEnvelope;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use uuid::Uuid;

/// Minutes of traffic kept per project: the view's chart covers the last hour.
pub const TRAFFIC_MINUTES: usize = 60;
/// Newest sent messages remembered per project and shard for the roster page: by time, id and
/// sender only, so no message outlives its sender's history here (the page finds each in the
/// sender's sent list, and skips one evicted since).
pub const RECENT_PER_PROJECT: usize = 12;

/// Messages sent per minute: `counts[i]` is minute `newest_minute - i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    newest_minute: i64,
    counts: [u32; TRAFFIC_MINUTES],
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            newest_minute: i64::MIN,
            counts: [0; TRAFFIC_MINUTES],
        }
    }
}

impl Traffic {
    /// Counts one message sent at `at_ms`. A message older than the window is not counted.
    pub fn record(&mut self, at_ms: i64) {
        let minute = at_ms.div_euclid(60_000);
        if minute > self.newest_minute {
            let gap = minute.saturating_sub(self.newest_minute);
            if gap >= TRAFFIC_MINUTES as i64 {
                self.counts = [0; TRAFFIC_MINUTES];
            } else {
                let gap = gap as usize;
                self.counts.copy_within(..TRAFFIC_MINUTES - gap, gap);
                self.counts[..gap].fill(0);
            }
            self.newest_minute = minute;
        }
        let age = self.newest_minute - minute;
        if age < TRAFFIC_MINUTES as i64 {
            self.counts[age as usize] = self.counts[age as usize].saturating_add(1);
        }
    }

    /// Messages per minute for the hour ending at `now_ms`'s minute, oldest minute first.
    pub fn last_hour(&self, now_ms: i64) -> [u32; TRAFFIC_MINUTES] {
        let now_minute = now_ms.div_euclid(60_000);
        let mut out = [0u32; TRAFFIC_MINUTES];
        for (slot, count) in out.iter_mut().enumerate() {
            let minute = now_minute - (TRAFFIC_MINUTES - 1 - slot) as i64;
            let age = self.newest_minute.saturating_sub(minute);
            if (0..TRAFFIC_MINUTES as i64).contains(&age) {
                *count = self.counts[age as usize];
            }
        }
        out
    }
}

/// One project as this shard knows it.
#[derive(Debug, Default)]
pub struct ProjectEntry {
    pub key: Box<str>,
    /// Its agents owned by this shard.
    pub agents: BTreeSet<Box<str>>,
    /// Undrained deliveries to those agents.
    pub queued: usize,
    /// Messages those agents sent.
    pub traffic: Traffic,
    /// The newest messages those agents sent, oldest first (by time, then id).
    pub recent: VecDeque<RecentRef>,
}

/// A message an agent here sent, as the roster's recent list remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRef {
    pub timestamp_ms: i64,
    pub id: Uuid,
    pub from: Box<str>,
}

/// A project as the overview lists it (one shard's part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSummary {
    pub id: Uuid,
    pub key: Box<str>,
    pub agents: usize,
    pub queued: usize,
    /// Messages per minute over the last hour, oldest first.
    pub traffic: [u32; TRAFFIC_MINUTES],
}

#[derive(Debug, Default)]
pub struct Directory {
    /// Projects in key order, for paging the overview.
    by_key: BTreeMap<Box<str>, Uuid>,
    projects: HashMap<Uuid, ProjectEntry>,
}

impl Directory {
    pub fn project(&self, id: &Uuid) -> Option<&ProjectEntry> {
        self.projects.get(id)
    }

    /// An agent of `project_id` now lives here (registered, replayed or moved in).
    pub fn add_agent(&mut self, project_id: Uuid, key: &str, name: &str) {
        let entry = self.projects.entry(project_id).or_insert_with(|| {
            self.by_key.insert(key.into(), project_id);
            ProjectEntry {
                key: key.into(),
                ..ProjectEntry::default()
            }
        });
        if !entry.agents.contains(name) {
            entry.agents.insert(name.into());
        }
    }

    /// Undrained deliveries of the project's agents here went up by `added` and down by
    /// `removed`.
    pub fn queued(&mut self, project_id: &Uuid, added: usize, removed: usize) {
        if let Some(entry) = self.projects.get_mut(project_id) {
            debug_assert!(entry.queued + added >= removed, "queued below zero");
            entry.queued = (entry.queued + added).saturating_sub(removed);
        }
    }

    /// An agent of the project sent `envelope` (its copy is kept here).
    pub fn sent(&mut self, project_id: &Uuid, envelope: &SharedEnvelope) {
        let Some(entry) = self.projects.get_mut(project_id) else {
            return;
        };
        entry.traffic.record(envelope.timestamp_ms);
        let key = (envelope.timestamp_ms, envelope.id);
        let recent = &mut entry.recent;
        if recent.len() == RECENT_PER_PROJECT
            && recent
                .front()
                .is_some_and(|oldest| (oldest.timestamp_ms, oldest.id) >= key)
        {
            return;
        }
        let at = recent.partition_point(|e| (e.timestamp_ms, e.id) < key);
        if recent.get(at).is_some_and(|e| e.id == envelope.id) {
            return;
        }
        let entry = RecentRef {
            timestamp_ms: envelope.timestamp_ms,
            id: envelope.id,
            from: envelope.from().into(),
        };
        recent.insert(at, entry);
        if recent.len() > RECENT_PER_PROJECT {
            recent.pop_front();
        }
    }

    /// Up to `limit` projects with keys after `after`, in key order, with whether more follow.
    pub fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> (Vec<ProjectSummary>, bool) {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut found = Vec::with_capacity(limit.min(64));
        let mut range = self
            .by_key
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, id)| id);
        for id in range.by_ref().take(limit) {
            if let Some(entry) = self.projects.get(id) {
                found.push(ProjectSummary {
                    id: *id,
                    key: entry.key.clone(),
                    agents: entry.agents.len(),
                    queued: entry.queued,
                    traffic: entry.traffic.last_hour(now_ms),
                });
            }
        }
        (found, range.next().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Message};
    use std::sync::Arc;

    const MINUTE: i64 = 60_000;

    #[test]
    fn traffic_counts_per_minute_over_the_last_hour() {
        let mut traffic = Traffic::default();
        let start = 1_000 * MINUTE;
        traffic.record(start + 5);
        traffic.record(start + 59_999);
        traffic.record(start + 2 * MINUTE);
        // Late by more than the window: not counted, and the window does not move back.
        traffic.record(start - 61 * MINUTE);
        let hour = traffic.last_hour(start + 2 * MINUTE + 1);
        assert_eq!(hour[TRAFFIC_MINUTES - 1], 1);
        assert_eq!(hour[TRAFFIC_MINUTES - 2], 0);
        assert_eq!(hour[TRAFFIC_MINUTES - 3], 2);
        assert_eq!(hour.iter().sum::<u32>(), 3);
        // An hour later the first minutes have left the window.
        let later = traffic.last_hour(start + 61 * MINUTE);
        assert_eq!(later.iter().sum::<u32>(), 1);
        assert_eq!(later[TRAFFIC_MINUTES - 60], 1, "the minute 59 minutes ago");
        // A jump past the window clears it.
        traffic.record(start + 500 * MINUTE);
        assert_eq!(
            traffic.last_hour(start + 500 * MINUTE).iter().sum::<u32>(),
            1
        );
    }

    fn envelope(n: u128, at_ms: i64) -> SharedEnvelope {
        Arc::new(Envelope::compose(Message {
            id: Uuid::from_u128(n),
            project_id: Uuid::from_u128(7),
            timestamp_ms: at_ms,
            from: "a",
            subject: "s",
            body: "b",
            thread_id: None,
            reply_to: None,
            importance: Default::default(),
            ack_required: false,
            to: vec!["b".into()],
            cc: Vec::new(),
        }))
    }

    #[test]
    fn recent_keeps_the_newest_in_time_order_once_each() {
        let mut directory = Directory::default();
        let project = Uuid::from_u128(7);
        directory.add_agent(project, "key", "a");
        for n in (0..30u128).rev() {
            directory.sent(&project, &envelope(n, 1_000 + n as i64));
        }
        directory.sent(&project, &envelope(29, 1_029));
        let entry = directory.project(&project).expect("project");
        let ids: Vec<u128> = entry.recent.iter().map(|e| e.id.as_u128()).collect();
        let expected: Vec<u128> = (30 - RECENT_PER_PROJECT as u128..30).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn projects_page_in_key_order_with_counts() {
        let mut directory = Directory::default();
        for (n, key) in ["b", "a", "c"].iter().enumerate() {
            let id = Uuid::from_u128(n as u128 + 1);
            directory.add_agent(id, key, &format!("x{n}"));
            directory.add_agent(id, key, &format!("y{n}"));
            directory.add_agent(id, key, &format!("y{n}"));
            directory.queued(&id, n + 2, 1);
        }
        let (first, more) = directory.list(None, 2, 0);
        let keys: Vec<&str> = first.iter().map(|p| &*p.key).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(more);
        assert_eq!(first[0].agents, 2);
        assert_eq!(first[0].queued, 2, "project 'a' got 3 and lost 1");
        let (rest, more) = directory.list(Some("b"), 2, 0);
        assert_eq!(rest.len(), 1);
        assert_eq!(&*rest[0].key, "c");
        assert!(!more);
    }
}

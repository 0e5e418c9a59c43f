//! File reservations: the leases of one project, all held by the project's owner shard (see
//! [`owner_of_project`]), so every conflict check is local and serialized by that shard.
//!
//! Plain synchronous code over a project's leases; `ShardState` logs each change (a lease's
//! whole state, an upsert) and replays it. Expiry needs no record: a lease whose `expires_ms`
//! has passed is inactive whenever it is looked at, and is moved out of the active list lazily
//! (on access) and by a bounded sweep.

use crate::glob::{self, Pattern};
use crate::routing::owner_of;
use std::collections::{BTreeMap, VecDeque};
use uuid::Uuid;

/// Active leases one project holds: each reserve compares its paths with all of them, so this
/// bounds that work (100 paths x 4,096 leases, most pruned by their first segment).
pub const MAX_PROJECT_LEASES: usize = 4096;
/// Active leases one agent holds in a project.
pub const MAX_AGENT_LEASES: usize = 256;
/// Released or expired leases kept per project for `list_file_reservations`.
pub const RECENT_INACTIVE: usize = 256;
/// Holders listed for one conflicting path (the rest are counted): keeps an answer small
/// even when a broad pattern meets thousands of leases.
pub const MAX_HOLDERS_LISTED: usize = 4;

/// How long a reservation request's idempotency key is remembered: the longest TTL a lease
/// may have, so a retry can never come back after everything it granted has expired anyway.
pub const KEY_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Idempotency keys remembered per project (the oldest are forgotten first).
pub const MAX_PROJECT_KEYS: usize = 4096;

/// A keyed reservation request's first answer, kept so that a repeat gets it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveKey {
    pub agent: Box<str>,
    pub key: Box<str>,
    /// A stable hash of the request (paths, TTL, exclusive, reason).
    pub request_hash: u64,
    pub at_ms: i64,
    /// What it granted, by lease id, and the paths it refused for conflicts.
    pub granted: Vec<u64>,
    pub conflicts: Vec<Box<str>>,
}

/// The shard that owns a project's reservations.
pub fn owner_of_project(project_id: &Uuid, shard_count: usize) -> usize {
    let mut buffer = Uuid::encode_buffer();
    owner_of(
        project_id.hyphenated().encode_lower(&mut buffer),
        shard_count,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Unique within its project, never reused.
    pub id: u64,
    pub agent: Box<str>,
    /// Normalised (see [`glob::normalize`]).
    pub path: Box<str>,
    pub exclusive: bool,
    pub reason: Box<str>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub released_ms: Option<i64>,
}

impl Lease {
    /// A new lease whose id (0) is given once every grant of its request fits.
    fn unnumbered(
        agent: &str,
        path: &str,
        exclusive: bool,
        reason: &str,
        created_ms: i64,
        expires_ms: i64,
    ) -> Lease {
        Lease {
            id: 0,
            agent: agent.into(),
            path: path.into(),
            exclusive,
            reason: reason.into(),
            created_ms,
            expires_ms,
            released_ms: None,
        }
    }

    pub fn active(&self, now_ms: i64) -> bool {
        self.released_ms.is_none() && self.expires_ms > now_ms
    }
}

/// Why a lease request is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// Granting would pass a bound: per agent, or per project.
    TooMany { per_agent: bool, max: usize },
    /// The lease (or a lease on that path) is another agent's.
    HeldByOther {
        id: u64,
        path: Box<str>,
        holder: Box<str>,
    },
    /// No such active lease of this agent.
    NotFound { what: String },
    /// The agent used this idempotency key for another reservation request.
    KeyReused { key: Box<str> },
}

/// One requested path's outcome in a check or a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConflicts {
    pub path: Box<str>,
    /// Other agents' active leases that conflict with it (at most [`MAX_HOLDERS_LISTED`]).
    pub holders: Vec<Lease>,
    /// How many more conflicting leases there are.
    pub more_holders: usize,
    /// The requesting agent's own active leases that overlap it.
    pub own: Vec<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct ProjectLeases {
    /// By id: an upsert (live or replayed) finds its lease in O(log n).
    active: BTreeMap<u64, (Lease, Pattern)>,
    recent: VecDeque<Lease>,
    /// The next lease's id; kept in snapshots (a `LeaseIds` record), so ids are never reused
    /// even when the newest lease left `recent`.
    next_id: u64,
    /// Keyed reservation requests, oldest first: at most [`MAX_PROJECT_KEYS`], none older than
    /// [`KEY_WINDOW_MS`] once a newer one arrives.
    keys: VecDeque<ReserveKey>,
}

impl ProjectLeases {
    pub fn is_empty(&self) -> bool {
        self.active.is_empty() && self.recent.is_empty() && self.keys.is_empty()
    }

    /// Remembers a keyed request's answer (live and on replay), forgetting the oldest past
    /// the bounds.
    pub fn remember_key(&mut self, key: ReserveKey) {
        let too_old = key.at_ms.saturating_sub(KEY_WINDOW_MS);
        self.keys
            .retain(|k| !(k.agent == key.agent && k.key == key.key));
        self.keys.push_back(key);
        while self.keys.len() > MAX_PROJECT_KEYS
            || self.keys.front().is_some_and(|k| k.at_ms < too_old)
        {
            self.keys.pop_front();
        }
    }

    /// The answer `agent` got for its request with `key`, if remembered and recent.
    pub fn keyed(&self, agent: &str, key: &str, now_ms: i64) -> Option<&ReserveKey> {
        let since = now_ms.saturating_sub(KEY_WINDOW_MS);
        (self.keys.iter().rev())
            .find(|k| *k.agent == *agent && *k.key == *key)
            .filter(|k| k.at_ms >= since)
    }

    /// Every remembered key, oldest first, for a snapshot.
    pub fn keys(&self) -> impl Iterator<Item = &ReserveKey> {
        self.keys.iter()
    }

    /// The first answer again, as the leases stand now: the leases it granted (still known
    /// here), and who now holds each path it refused. Changes nothing.
    pub fn answer_again(
        &self,
        first: &ReserveKey,
        exclusive: bool,
    ) -> (Vec<Lease>, Vec<PathConflicts>) {
        let granted = (first.granted.iter())
            .filter_map(|id| self.all().find(|l| l.id == *id).cloned())
            .collect();
        let conflicts = (first.conflicts.iter())
            .filter_map(|path| glob::parse(path).ok().map(|pattern| (path, pattern)))
            .map(|(path, pattern)| self.conflicts(&first.agent, path, &pattern, exclusive))
            .collect();
        (granted, conflicts)
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Replay of a snapshot's `LeaseIds`: ids below this were handed out.
    pub fn set_next_id(&mut self, next_id: u64) {
        self.next_id = self.next_id.max(next_id);
    }

    fn active_leases(&self) -> impl Iterator<Item = &Lease> {
        self.active.values().map(|(l, _)| l)
    }

    /// Every lease, active first, for a snapshot.
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.active_leases().chain(&self.recent)
    }

    /// Moves leases that expired by `now_ms` out of the active list.
    pub fn reap(&mut self, now_ms: i64) {
        let expired: Vec<u64> = self
            .active
            .values()
            .filter(|(l, _)| !l.active(now_ms))
            .map(|(l, _)| l.id)
            .collect();
        for id in expired {
            if let Some((lease, _)) = self.active.remove(&id) {
                self.recent.push_back(lease);
            }
        }
        while self.recent.len() > RECENT_INACTIVE {
            self.recent.pop_front();
        }
    }

    /// Applies a lease's whole state (a new lease, an update, a release): live and on replay.
    pub fn upsert(&mut self, lease: Lease) {
        self.next_id = self.next_id.max(lease.id + 1);
        self.active.remove(&lease.id);
        self.recent.retain(|l| l.id != lease.id);
        if lease.released_ms.is_none() {
            if let Ok(pattern) = glob::parse(&lease.path) {
                self.active.insert(lease.id, (lease, pattern));
                return;
            }
        }
        self.recent.push_back(lease);
        while self.recent.len() > RECENT_INACTIVE {
            self.recent.pop_front();
        }
    }

    /// Other agents' active leases conflicting with `pattern` (`exclusive`: the request is),
    /// and the agent's own overlapping ones.
    pub fn conflicts(
        &self,
        agent: &str,
        path: &str,
        pattern: &Pattern,
        exclusive: bool,
    ) -> PathConflicts {
        let mut out = PathConflicts {
            path: path.into(),
            holders: Vec::new(),
            more_holders: 0,
            own: Vec::new(),
        };
        for (lease, held) in self.active.values() {
            if !quick_overlap(path, &lease.path) || !glob::overlap(pattern, held) {
                continue;
            }
            if *lease.agent == *agent {
                out.own.push(lease.id);
            } else if exclusive || lease.exclusive {
                if out.holders.len() < MAX_HOLDERS_LISTED {
                    out.holders.push(lease.clone());
                } else {
                    out.more_holders += 1;
                }
            }
        }
        out
    }

    /// Grants what does not conflict; re-reserving an own pattern extends it. Returns the
    /// granted (or extended) leases, to log, and the conflicts. All or nothing on the bounds.
    pub fn reserve(
        &mut self,
        agent: &str,
        paths: &[(Box<str>, Pattern)],
        exclusive: bool,
        reason: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(Vec<Lease>, Vec<PathConflicts>), LeaseError> {
        self.reap(now_ms);
        let mut conflicts = Vec::new();
        let mut grants: Vec<(usize, Lease)> = Vec::new();
        let mut new_count = 0;
        for (index, (path, pattern)) in paths.iter().enumerate() {
            let check = self.conflicts(agent, path, pattern, exclusive);
            if !check.holders.is_empty() {
                conflicts.push(check);
                continue;
            }
            debug_assert_eq!(check.more_holders, 0);
            let existing = self
                .active_leases()
                .find(|l| *l.agent == *agent && l.path == *path)
                .cloned();
            let lease = match existing {
                Some(mut lease) => {
                    lease.expires_ms = lease.expires_ms.max(expires_ms);
                    lease.exclusive = exclusive;
                    lease.reason = reason.into();
                    lease
                }
                None => {
                    new_count += 1;
                    Lease::unnumbered(agent, path, exclusive, reason, now_ms, expires_ms)
                }
            };
            grants.push((index, lease));
        }
        let agent_count = self.active_leases().filter(|l| *l.agent == *agent).count();
        if agent_count + new_count > MAX_AGENT_LEASES {
            return Err(LeaseError::TooMany {
                per_agent: true,
                max: MAX_AGENT_LEASES,
            });
        }
        if self.active.len() + new_count > MAX_PROJECT_LEASES {
            return Err(LeaseError::TooMany {
                per_agent: false,
                max: MAX_PROJECT_LEASES,
            });
        }
        let mut granted = Vec::with_capacity(grants.len());
        for (_, mut lease) in grants {
            if lease.id == 0 {
                self.next_id = self.next_id.max(1);
                lease.id = self.next_id;
            }
            self.upsert(lease.clone());
            granted.push(lease);
        }
        Ok((granted, conflicts))
    }

    /// The agent's active leases chosen by `paths` and `ids` (all when neither is given). A
    /// named lease or path held only by another agent is an error naming the holder; one that
    /// is the agent's own but expired or released is nothing to do; one nobody ever held here
    /// is an error.
    fn own_selection(
        &self,
        agent: &str,
        paths: Option<&[Box<str>]>,
        ids: Option<&[u64]>,
    ) -> Result<Vec<Lease>, LeaseError> {
        let mine = |l: &Lease| *l.agent == *agent;
        let mut chosen: Vec<Lease> = Vec::new();
        if paths.is_none() && ids.is_none() {
            return Ok(self.active_leases().filter(|l| mine(l)).cloned().collect());
        }
        let held_by_other = |l: &Lease| LeaseError::HeldByOther {
            id: l.id,
            path: l.path.clone(),
            holder: l.agent.clone(),
        };
        for id in ids.unwrap_or_default() {
            match self.active.get(id).map(|(l, _)| l) {
                Some(l) if mine(l) => chosen.push(l.clone()),
                Some(l) => return Err(held_by_other(l)),
                None if self.recent.iter().any(|l| l.id == *id && mine(l)) => {}
                None => {
                    return Err(LeaseError::NotFound {
                        what: format!("no active reservation with id {id}"),
                    })
                }
            }
        }
        for path in paths.unwrap_or_default() {
            let mut on_path = self.active_leases().filter(|l| l.path == *path).peekable();
            let first = on_path.peek().map(|l| (*l).clone());
            match on_path.find(|l| mine(l)) {
                Some(l) => chosen.push(l.clone()),
                None => match first {
                    Some(l) => return Err(held_by_other(&l)),
                    None if self.recent.iter().any(|l| l.path == *path && mine(l)) => {}
                    None => {
                        return Err(LeaseError::NotFound {
                            what: format!("no active reservation on {path:?}"),
                        })
                    }
                },
            }
        }
        chosen.sort_by_key(|l| l.id);
        chosen.dedup_by_key(|l| l.id);
        Ok(chosen)
    }

    /// Releases the chosen leases at `now_ms`; returns them as released (to log).
    pub fn release(
        &mut self,
        agent: &str,
        paths: Option<&[Box<str>]>,
        ids: Option<&[u64]>,
        now_ms: i64,
    ) -> Result<Vec<Lease>, LeaseError> {
        self.update_chosen(agent, paths, ids, now_ms, |lease| {
            lease.released_ms = Some(now_ms)
        })
    }

    /// Extends the chosen leases by `extend_ms` past their expiry; returns them (to log).
    pub fn renew(
        &mut self,
        agent: &str,
        paths: Option<&[Box<str>]>,
        ids: Option<&[u64]>,
        extend_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Lease>, LeaseError> {
        self.update_chosen(agent, paths, ids, now_ms, |lease| {
            lease.expires_ms = lease.expires_ms.max(now_ms).saturating_add(extend_ms)
        })
    }

    /// Applies `change` to each lease [`Self::own_selection`] chooses; returns them (to log).
    fn update_chosen(
        &mut self,
        agent: &str,
        paths: Option<&[Box<str>]>,
        ids: Option<&[u64]>,
        now_ms: i64,
        change: impl Fn(&mut Lease),
    ) -> Result<Vec<Lease>, LeaseError> {
        self.reap(now_ms);
        let chosen = self.own_selection(agent, paths, ids)?;
        Ok(chosen
            .into_iter()
            .map(|mut lease| {
                change(&mut lease);
                self.upsert(lease.clone());
                lease
            })
            .collect())
    }

    /// Releases lease `id` of `holder` for another agent, if it is still as the caller saw it
    /// (same expiry: not renewed since; the staleness was checked on the holder's owner).
    pub fn force_release(
        &mut self,
        id: u64,
        holder: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Option<Lease> {
        self.reap(now_ms);
        let (lease, _) = self
            .active
            .get(&id)
            .filter(|(l, _)| *l.agent == *holder && l.expires_ms == expires_ms)?;
        let mut lease = lease.clone();
        lease.released_ms = Some(now_ms);
        self.upsert(lease.clone());
        Some(lease)
    }

    pub fn active_lease(&mut self, id: u64, now_ms: i64) -> Option<Lease> {
        self.reap(now_ms);
        self.active.get(&id).map(|(l, _)| l.clone())
    }

    /// Leases for a listing: active ones (and with `include_inactive`, recent released or
    /// expired ones), of one agent or all, newest first.
    pub fn list(
        &mut self,
        agent: Option<&str>,
        include_inactive: bool,
        limit: usize,
        now_ms: i64,
    ) -> Vec<Lease> {
        self.reap(now_ms);
        let wanted = |l: &&Lease| agent.is_none_or(|a| *l.agent == *a);
        let mut out: Vec<Lease> = self.active_leases().filter(wanted).cloned().collect();
        if include_inactive {
            out.extend(self.recent.iter().filter(wanted).cloned());
        }
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        out.truncate(limit);
        out
    }
}

/// A cheap first test: two paths whose first segments are both plain text and differ cannot
/// overlap (most pairs in a project end here).
fn quick_overlap(a: &str, b: &str) -> bool {
    let (fa, fb) = (first_segment(a), first_segment(b));
    let plain = |s: &str| !s.contains(['*', '?', '[', '\\']);
    !(fa != fb && plain(fa) && plain(fb))
}

fn first_segment(path: &str) -> &str {
    path.split('/').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<(Box<str>, Pattern)> {
        list.iter()
            .map(|p| {
                let text = glob::normalize(p).expect("valid");
                let pattern = glob::parse(&text).expect("parses");
                (text.into(), pattern)
            })
            .collect()
    }

    const HOUR: i64 = 3_600_000;

    fn reserve(
        leases: &mut ProjectLeases,
        agent: &str,
        list: &[&str],
        exclusive: bool,
        now: i64,
    ) -> (Vec<Lease>, Vec<PathConflicts>) {
        leases
            .reserve(agent, &paths(list), exclusive, "r", now, now + HOUR)
            .expect("within bounds")
    }

    #[test]
    fn exclusive_and_shared_combinations() {
        for (first, second, conflict) in [
            (true, true, true),
            (true, false, true),
            (false, true, true),
            (false, false, false),
        ] {
            let mut leases = ProjectLeases::default();
            reserve(&mut leases, "a", &["src/"], first, 0);
            let (granted, conflicts) = reserve(&mut leases, "b", &["src/main.rs"], second, 0);
            assert_eq!(conflicts.is_empty(), !conflict, "{first} then {second}");
            assert_eq!(granted.is_empty(), conflict);
            if conflict {
                assert_eq!(&*conflicts[0].holders[0].agent, "a");
            }
        }
    }

    #[test]
    fn conflicting_paths_are_refused_and_the_others_granted() {
        let mut leases = ProjectLeases::default();
        reserve(&mut leases, "a", &["src/*.rs"], true, 0);
        let (granted, conflicts) = reserve(
            &mut leases,
            "b",
            &["src/lib.rs", "docs/", "port:3000"],
            true,
            0,
        );
        let got: Vec<&str> = granted.iter().map(|l| &*l.path).collect();
        assert_eq!(got, vec!["docs", "port:3000"]);
        assert_eq!(&*conflicts[0].path, "src/lib.rs");
    }

    #[test]
    fn own_leases_never_conflict_and_re_reserving_extends() {
        let mut leases = ProjectLeases::default();
        let (first, _) = reserve(&mut leases, "a", &["src/"], true, 0);
        let (again, conflicts) = leases
            .reserve(
                "a",
                &paths(&["src/", "src/x.rs"]),
                false,
                "new reason",
                10,
                10 + 2 * HOUR,
            )
            .expect("ok");
        assert!(conflicts.is_empty(), "own leases never conflict");
        assert_eq!(
            again[0].id, first[0].id,
            "the same pattern is the same lease"
        );
        assert_eq!(
            again[0].expires_ms,
            10 + 2 * HOUR,
            "extended to the later expiry"
        );
        assert!(!again[0].exclusive && &*again[0].reason == "new reason");
        assert_eq!(leases.active_count(), 2);
        // An earlier expiry does not shorten it.
        let (shorter, _) = leases
            .reserve("a", &paths(&["src/"]), true, "r", 20, 30)
            .expect("ok");
        assert_eq!(shorter[0].expires_ms, 10 + 2 * HOUR);
    }

    #[test]
    fn expiry_frees_a_path_without_any_record() {
        let mut leases = ProjectLeases::default();
        reserve(&mut leases, "a", &["src/main.rs"], true, 0);
        let (_, conflicts) = reserve(&mut leases, "b", &["src/main.rs"], true, HOUR - 1);
        assert_eq!(conflicts.len(), 1, "still held a millisecond before expiry");
        let (granted, conflicts) = reserve(&mut leases, "b", &["src/main.rs"], true, HOUR);
        assert!(conflicts.is_empty() && granted.len() == 1, "free at expiry");
        let listed = leases.list(None, true, 10, HOUR);
        assert_eq!(listed.len(), 2, "the expired lease is listed as inactive");
        assert_eq!(leases.list(None, false, 10, HOUR).len(), 1);
    }

    #[test]
    fn release_renew_and_force_release() {
        let mut leases = ProjectLeases::default();
        let (a_leases, _) = reserve(&mut leases, "a", &["src/", "docs/"], true, 0);
        let error = leases
            .release("b", None, Some(&[a_leases[0].id]), 5)
            .expect_err("not b's");
        assert!(matches!(error, LeaseError::HeldByOther { ref holder, .. } if &**holder == "a"));
        let error = leases
            .release("b", Some(&["docs".into()]), None, 5)
            .expect_err("not b's");
        assert!(matches!(error, LeaseError::HeldByOther { .. }));
        let renewed = leases
            .renew("a", Some(&["docs".into()]), None, HOUR, 5)
            .expect("renews");
        assert_eq!(renewed[0].expires_ms, 2 * HOUR);
        let released = leases
            .release("a", Some(&["docs".into()]), None, 6)
            .expect("releases");
        assert_eq!(released[0].released_ms, Some(6));
        let again = leases.release("a", Some(&["docs".into()]), Some(&[released[0].id]), 6);
        assert_eq!(
            again,
            Ok(vec![]),
            "an own lease already released is nothing to do"
        );
        assert_eq!(leases.active_count(), 1);
        let expiry = a_leases[0].expires_ms;
        let (id, b, a) = (a_leases[0].id, "b", "a");
        assert!(
            leases.force_release(id, b, expiry, 7).is_none(),
            "b does not hold it"
        );
        assert!(
            leases.force_release(id, a, expiry + 1, 7).is_none(),
            "renewed since"
        );
        let forced = leases.force_release(id, a, expiry, 7).expect("held by a");
        assert_eq!(forced.released_ms, Some(7));
        let (granted, _) = reserve(&mut leases, "b", &["src/x.rs"], true, 8);
        assert_eq!(granted.len(), 1, "free after the force release");
        assert!(granted[0].id > a_leases[1].id, "ids are never reused");
        assert_eq!(
            leases.release("a", None, None, 9).expect("none left"),
            vec![]
        );
    }

    #[test]
    fn a_broad_pattern_lists_a_bounded_number_of_holders() {
        let mut leases = ProjectLeases::default();
        for n in 0..40 {
            reserve(
                &mut leases,
                &format!("agent{n}"),
                &[&format!("d{n}/")],
                true,
                0,
            );
        }
        let (_, conflicts) = reserve(&mut leases, "late", &["**"], true, 0);
        assert_eq!(conflicts[0].holders.len(), MAX_HOLDERS_LISTED);
        assert_eq!(conflicts[0].more_holders, 40 - MAX_HOLDERS_LISTED);
    }

    #[test]
    fn bounds_refuse_the_whole_request() {
        let mut leases = ProjectLeases::default();
        let many: Vec<String> = (0..MAX_AGENT_LEASES).map(|n| format!("f{n}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        reserve(&mut leases, "a", &refs, true, 0);
        let error = leases
            .reserve("a", &paths(&["one-more"]), true, "r", 0, HOUR)
            .expect_err("bound");
        assert_eq!(
            error,
            LeaseError::TooMany {
                per_agent: true,
                max: MAX_AGENT_LEASES
            }
        );
        assert_eq!(
            leases.active_count(),
            MAX_AGENT_LEASES,
            "nothing of it was granted"
        );
    }

    #[test]
    fn replaying_upserts_gives_the_same_leases() {
        let mut live = ProjectLeases::default();
        let mut log: Vec<Lease> = Vec::new();
        let (granted, _) = reserve(&mut live, "a", &["src/", "port:1"], true, 0);
        log.extend(granted);
        log.extend(live.renew("a", None, None, HOUR, 1).expect("renew"));
        log.extend(
            live.release("a", Some(&["port:1".into()]), None, 2)
                .expect("release"),
        );
        let mut replayed = ProjectLeases::default();
        for lease in log {
            replayed.upsert(lease);
        }
        assert_eq!(
            replayed.list(None, true, 10, 3),
            live.list(None, true, 10, 3)
        );
    }
}

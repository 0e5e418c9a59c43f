//! File reservations of the projects this shard owns: the dispatch of lease requests, the
//! periodic sweep, and moving projects between shards.

use super::images::{project_image, ProjectImage};
use super::record;
use super::ShardState;
use crate::envelope::Idempotency;
use crate::glob;
use crate::leases::{owner_of_project, Lease, LeaseError, ProjectLeases, ReserveKey};
use crate::protocol::{LeaseOp, LeaseRequest, Reply};
use uuid::Uuid;

impl ShardState {
    /// A file-reservation request on a project this shard owns; each change is logged as
    /// the lease's whole state.
    pub(super) fn leases(&mut self, request: LeaseRequest) -> Reply {
        let LeaseRequest {
            project_id,
            agent,
            now_ms,
            op,
        } = request;
        debug_assert_eq!(
            owner_of_project(&project_id, self.shard_count),
            self.shard_id
        );
        // Only a reservation creates a project's entry: reads of unknown projects (anyone
        // may list any project key) must not grow the state.
        if !matches!(op, LeaseOp::Reserve { .. }) && !self.projects.contains_key(&project_id) {
            return reply_without_project(op);
        }
        let (reply, changed, key) = run_lease_op(self.project(project_id), &agent, op, now_ms);
        for lease in &changed {
            self.log
                .append(|out| record::encode_lease(out, &project_id, lease));
        }
        if let Some(key) = &key {
            self.log
                .append(|out| record::encode_lease_key(out, &project_id, key));
        }
        reply
    }

    /// The leases of `project_id`, created empty on first use.
    pub(super) fn project(&mut self, project_id: Uuid) -> &mut ProjectLeases {
        if !self.projects.contains_key(&project_id) {
            self.project_order.push(project_id);
        }
        self.projects.entry(project_id).or_default()
    }

    /// Moves expired leases out of the active lists of at most `max_projects` projects,
    /// resuming where the last sweep stopped (bounded work per call).
    pub fn sweep_leases(&mut self, now_ms: i64, max_projects: usize) {
        for _ in 0..max_projects.min(self.project_order.len()) {
            self.sweep_cursor %= self.project_order.len();
            let id = self.project_order[self.sweep_cursor];
            if let Some(project) = self.projects.get_mut(&id) {
                project.reap(now_ms);
            }
            self.sweep_cursor += 1;
        }
    }

    /// Whether this shard holds any project's reservations.
    pub fn has_projects(&self) -> bool {
        !self.projects.is_empty()
    }

    /// Takes every project's leases out (for moving them to other owners after a reshard).
    pub fn take_projects(&mut self) -> Vec<ProjectImage> {
        self.project_order.clear();
        self.projects
            .drain()
            .map(|(id, leases)| project_image(id, &leases))
            .collect()
    }

    /// Places a project's leases moved from another shard (not logged: the caller snapshots).
    pub fn restore_project(&mut self, image: ProjectImage) {
        let project = self.project(image.project_id);
        project.set_next_id(image.next_id);
        for lease in image.leases {
            project.upsert(lease);
        }
        for key in image.keys {
            project.remember_key(key);
        }
    }
}

/// What a lease request on a project nobody has reserved in answers: nothing is held there.
fn reply_without_project(op: LeaseOp) -> Reply {
    match op {
        LeaseOp::Check { paths } => Reply::Checked(
            paths
                .into_iter()
                .map(|path| crate::leases::PathConflicts {
                    path,
                    holders: Vec::new(),
                    more_holders: 0,
                    own: Vec::new(),
                })
                .collect(),
        ),
        LeaseOp::Release { paths, ids } | LeaseOp::Renew { paths, ids, .. }
            if paths.is_some() || ids.is_some() =>
        {
            Reply::Leases(Err(LeaseError::NotFound {
                what: "no active reservation in this project".into(),
            }))
        }
        _ => Reply::Leases(Ok(Vec::new())),
    }
}

/// Runs `op` for `agent` on `project`: the reply, the leases it changed (each is logged as
/// its whole state), and a keyed reservation's answer to remember (logged too).
fn run_lease_op(
    project: &mut ProjectLeases,
    agent: &str,
    op: LeaseOp,
    now_ms: i64,
) -> (Reply, Vec<Lease>, Option<ReserveKey>) {
    let changed = |outcome: &Result<Vec<Lease>, LeaseError>| outcome.clone().unwrap_or_default();
    let (reply, leases) = match op {
        LeaseOp::Reserve {
            paths,
            ttl_ms,
            exclusive,
            reason,
            idempotency,
        } => {
            let request = ReserveRequest {
                paths,
                ttl_ms,
                exclusive,
                reason: &reason,
            };
            return reserve(project, agent, request, idempotency, now_ms);
        }
        LeaseOp::Release { paths, ids } => {
            let outcome = project.release(agent, paths.as_deref(), ids.as_deref(), now_ms);
            (Reply::Leases(outcome.clone()), changed(&outcome))
        }
        LeaseOp::Renew {
            paths,
            ids,
            extend_ms,
        } => {
            let outcome = project.renew(agent, paths.as_deref(), ids.as_deref(), extend_ms, now_ms);
            (Reply::Leases(outcome.clone()), changed(&outcome))
        }
        LeaseOp::Check { paths } => (check_paths(project, agent, &paths, now_ms), Vec::new()),
        LeaseOp::List {
            only_agent,
            include_inactive,
            limit,
        } => {
            let who = only_agent.then_some(agent);
            let listed = project.list(who, include_inactive, limit, now_ms);
            (Reply::Leases(Ok(listed)), Vec::new())
        }
        LeaseOp::Holder { id } => {
            let held = project.active_lease(id, now_ms).into_iter().collect();
            (Reply::Leases(Ok(held)), Vec::new())
        }
        LeaseOp::ForceRelease {
            id,
            holder,
            expires_ms,
        } => {
            let released: Vec<Lease> = project
                .force_release(id, &holder, expires_ms, now_ms)
                .into_iter()
                .collect();
            (Reply::Leases(Ok(released.clone())), released)
        }
    };
    (reply, leases, None)
}

/// A reservation request's arguments.
struct ReserveRequest<'a> {
    paths: Vec<Box<str>>,
    ttl_ms: i64,
    exclusive: bool,
    reason: &'a str,
}

/// A reservation, or with an idempotency key already used by `agent`, the first answer again
/// (changing nothing) or, for another request, a refusal.
fn reserve(
    project: &mut ProjectLeases,
    agent: &str,
    request: ReserveRequest<'_>,
    idempotency: Option<Idempotency>,
    now_ms: i64,
) -> (Reply, Vec<Lease>, Option<ReserveKey>) {
    if let Some(keyed) = &idempotency {
        if let Some(first) = project.keyed(agent, &keyed.key, now_ms) {
            if first.request_hash != keyed.request_hash {
                let refused = LeaseError::KeyReused {
                    key: keyed.key.clone(),
                };
                return (Reply::Reserved(Err(refused)), Vec::new(), None);
            }
            let again = project.answer_again(first, request.exclusive);
            return (Reply::Reserved(Ok(again)), Vec::new(), None);
        }
    }
    let parsed: Vec<(Box<str>, glob::Pattern)> = (request.paths.into_iter())
        .filter_map(|p| glob::parse(&p).ok().map(|pattern| (p, pattern)))
        .collect();
    let expires = now_ms.saturating_add(request.ttl_ms);
    let outcome = project.reserve(
        agent,
        &parsed,
        request.exclusive,
        request.reason,
        now_ms,
        expires,
    );
    let Ok((granted, conflicts)) = &outcome else {
        return (Reply::Reserved(outcome), Vec::new(), None);
    };
    let key = idempotency.map(|keyed| ReserveKey {
        agent: agent.into(),
        key: keyed.key,
        request_hash: keyed.request_hash,
        at_ms: now_ms,
        granted: granted.iter().map(|l| l.id).collect(),
        conflicts: conflicts.iter().map(|c| c.path.clone()).collect(),
    });
    if let Some(key) = &key {
        project.remember_key(key.clone());
    }
    let granted = granted.clone();
    (Reply::Reserved(outcome), granted, key)
}

/// Who holds what overlaps each of `paths` (expired leases reaped first).
fn check_paths(project: &mut ProjectLeases, agent: &str, paths: &[Box<str>], now_ms: i64) -> Reply {
    project.reap(now_ms);
    let checks = paths
        .iter()
        .filter_map(|p| glob::parse(p).ok().map(|pattern| (p, pattern)))
        .map(|(p, pattern)| project.conflicts(agent, p, &pattern, true))
        .collect();
    Reply::Checked(checks)
}

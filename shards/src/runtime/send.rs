//! A send's coordinator: all or nothing over the owners of the sender and every recipient.
//!
//! With one owner shard a send is one atomic (logged) step there. With several it takes two:
//! every owner *prepares* (checks, logs, holds the message invisibly) and, once all have
//! granted, every owner *commits* (makes it visible); a refusal aborts the others. The caller
//! is answered only after every owner has made the message visible, so a read that follows
//! always sees it, and only once every owner's record is durable, so a crash cannot lose it
//! for some recipients. The participant side is `state::send`; recovery resolves a send a
//! crash cut between the steps (`crate::recovery`). See docs/DECISIONS.md, "Multi-owner sends".

use super::{CallError, Shard, Ticket};
use crate::envelope::{Envelope, SharedEnvelope};
use crate::protocol::{Reply, Request, Undeliverable};
use std::rc::Rc;
use std::sync::Arc;

/// Why a send delivered nothing.
#[derive(Debug)]
pub enum SendError {
    /// A recipient is unknown or its inbox is full; names in the order the sender listed
    /// them (`to`, then `cc`).
    Refused(Undeliverable),
    /// An owner shard is gone (the server is stopping).
    Unavailable(CallError),
}

impl From<CallError> for SendError {
    fn from(error: CallError) -> Self {
        SendError::Unavailable(error)
    }
}

impl Shard {
    /// Delivers `envelope` to every recipient, all or nothing.
    ///
    /// Cancellation-safe: steps on other shards run to the end as a task of their own, even if
    /// the returned future is dropped (its connection gone, the server stopping), so a prepared
    /// message is never left pending and no inbox place stays reserved.
    pub async fn send(self: &Rc<Self>, envelope: SharedEnvelope) -> Result<(), SendError> {
        let owners = self.owners_of(&envelope);
        let only_here = owners == [self.id()];
        let delivery = deliver(Rc::clone(self), owners, envelope);
        if only_here {
            // One synchronous step on this shard: nothing can interrupt it halfway.
            return delivery.await;
        }
        match glommio::spawn_local(delivery).detach().await {
            Some(outcome) => outcome,
            None => Err(SendError::Unavailable(CallError::PeerClosed {
                owner: self.id(),
            })),
        }
    }

    /// The owner shards of the sender and every recipient, in first-seen order.
    fn owners_of(&self, envelope: &Envelope) -> Vec<usize> {
        let mut owners: Vec<usize> =
            Vec::with_capacity(self.count().min(1 + envelope.recipients().len()));
        let parties = std::iter::once(envelope.from()).chain(envelope.recipients());
        for name in parties {
            let owner = self.owner_of(name);
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        owners
    }
}

/// With one owner, its delivery checks and delivers in one step; with several, prepare
/// everywhere, then commit everywhere (or abort where granted). The owners index the message
/// once their records are durable, so search never shows mail that was refused or that a
/// crash lost. Owns everything it needs, so it can outlive the request that started it.
async fn deliver(
    shard: Rc<Shard>,
    owners: Vec<usize>,
    envelope: SharedEnvelope,
) -> Result<(), SendError> {
    if let [owner] = owners[..] {
        let request = Request::Deliver {
            envelope: Arc::clone(&envelope),
        };
        return match shard.call(owner, request).await? {
            Reply::Delivered(Ok(count)) => {
                debug_assert_eq!(count, envelope.recipients().len(), "one copy each");
                Ok(())
            }
            Reply::Delivered(Err(refused)) => Err(refused_in_order(&envelope, refused)),
            other => protocol_bug("Deliver", &other),
        };
    }
    prepare_all(&shard, &owners, &envelope).await?;
    let id = envelope.id;
    let mut commits: Vec<Ticket<'_>> = Vec::with_capacity(owners.len());
    for owner in &owners {
        commits.push(shard.submit(*owner, Request::Commit { id }).await?);
    }
    for ticket in commits {
        match ticket.await {
            Reply::Settled => {}
            other => protocol_bug("Commit", &other),
        }
    }
    Ok(())
}

/// Prepares the message on every owner, in parallel. If any owner refuses, the others abort
/// it and the error names every recipient at fault.
async fn prepare_all(
    shard: &Shard,
    owners: &[usize],
    envelope: &SharedEnvelope,
) -> Result<(), SendError> {
    // Bounded by the recipients a send may name (+ 1), far below u16::MAX.
    let owner_count = u16::try_from(owners.len()).unwrap_or(u16::MAX);
    let mut tickets: Vec<Ticket<'_>> = Vec::with_capacity(owners.len());
    for owner in owners {
        let request = Request::Prepare {
            envelope: Arc::clone(envelope),
            owners: owner_count,
        };
        tickets.push(shard.submit(*owner, request).await?);
    }
    let mut granted: Vec<usize> = Vec::with_capacity(owners.len());
    let (mut unknown, mut full): (Vec<Box<str>>, Vec<Box<str>>) = (Vec::new(), Vec::new());
    let mut key_used = None;
    for (ticket, owner) in tickets.into_iter().zip(owners) {
        match ticket.await {
            Reply::Prepared(Ok(_)) => granted.push(*owner),
            Reply::Prepared(Err(Undeliverable::UnknownRecipients(names))) => unknown.extend(names),
            Reply::Prepared(Err(Undeliverable::InboxFull(names))) => full.extend(names),
            Reply::Prepared(Err(Undeliverable::KeyUsed(used))) => key_used = Some(used),
            other => protocol_bug("Prepare", &other),
        }
    }
    // A used key is the answer whatever the recipients' state now: the first send's.
    let refusal = if let Some(used) = key_used {
        Undeliverable::KeyUsed(used)
    } else if !unknown.is_empty() {
        Undeliverable::UnknownRecipients(unknown)
    } else if !full.is_empty() {
        Undeliverable::InboxFull(full)
    } else {
        return Ok(());
    };
    let mut aborts: Vec<Ticket<'_>> = Vec::with_capacity(granted.len());
    for owner in granted {
        let request = Request::Abort { id: envelope.id };
        aborts.push(shard.submit(owner, request).await?);
    }
    for ticket in aborts {
        ticket.await;
    }
    Err(refused_in_order(envelope, refusal))
}

/// The refusal with its names in the order the sender listed them (`to`, then `cc`), so
/// error messages do not depend on which owner answered first.
fn refused_in_order(envelope: &Envelope, refused: Undeliverable) -> SendError {
    let in_order = |named: Vec<Box<str>>| -> Vec<Box<str>> {
        envelope
            .recipients()
            .filter(|name| named.iter().any(|n| **n == **name))
            .map(Box::from)
            .collect()
    };
    SendError::Refused(match refused {
        Undeliverable::UnknownRecipients(names) => {
            Undeliverable::UnknownRecipients(in_order(names))
        }
        Undeliverable::InboxFull(names) => Undeliverable::InboxFull(in_order(names)),
        used @ Undeliverable::KeyUsed(_) => used,
    })
}

/// An owner answered a request with a reply of another request: a bug in this crate, never
/// something a client can cause.
fn protocol_bug(request: &str, reply: &Reply) -> ! {
    panic!("shard answered {request} with {reply:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Message;
    use uuid::Uuid;

    #[test]
    fn refused_names_keep_request_order() {
        let envelope = Envelope::compose(Message {
            to: vec!["x".into(), "y".into()],
            cc: vec!["z".into()],
            ..Message::plain(Uuid::nil(), "a")
        });
        let refused = Undeliverable::UnknownRecipients(vec!["z".into(), "x".into()]);
        let SendError::Refused(Undeliverable::UnknownRecipients(got)) =
            refused_in_order(&envelope, refused)
        else {
            panic!("a refusal stays a refusal of the same kind");
        };
        assert_eq!(got, vec![Box::<str>::from("x"), "z".into()]);
    }
}

//! Concurrent load from many connections: every message is received exactly once.

mod common;

use common::{Client, Server};
use std::collections::HashMap;

#[test]
fn fifty_agents_two_hundred_messages_each_over_sixteen_connections() {
    const AGENTS: usize = 50;
    const MESSAGES_PER_AGENT: usize = 200;
    const CONNECTIONS: usize = 16;
    let server = Server::start();
    let names: Vec<String> = (0..AGENTS).map(|i| format!("Load{i}")).collect();
    let mut setup = server.client();
    for name in &names {
        setup.create_agent("load", name);
    }

    // Each sender sends MESSAGES_PER_AGENT messages to pseudo-random recipients; the subject
    // names the message uniquely so the drain can account for every one.
    let addr = server.addr;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let names = names.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut sent: Vec<(String, String)> = Vec::new();
                for sender in (worker..AGENTS).step_by(CONNECTIONS) {
                    for n in 0..MESSAGES_PER_AGENT {
                        let recipient = &names[(sender * 31 + n * 7) % AGENTS];
                        let subject = format!("{sender}:{n}");
                        client.send(&names[sender], &[recipient], &subject, "load");
                        sent.push((recipient.clone(), subject));
                    }
                }
                sent
            })
        })
        .collect();
    let sent: Vec<(String, String)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert_eq!(sent.len(), AGENTS * MESSAGES_PER_AGENT);

    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for (recipient, subject) in sent {
        expected.entry(recipient).or_default().push(subject);
    }
    let mut received_total = 0;
    for name in &names {
        let mut got: Vec<String> = setup
            .inbox(name)
            .iter()
            .map(|m| m["subject"].as_str().expect("subject").to_string())
            .collect();
        received_total += got.len();
        let mut want = expected.remove(name).unwrap_or_default();
        got.sort();
        want.sort();
        assert_eq!(got, want, "inbox of {name}: lost or duplicated messages");
    }
    assert_eq!(received_total, AGENTS * MESSAGES_PER_AGENT);
}

//! The built-in scenarios and their scripted (seeded) policies.

use super::{Action, Received, Scenario};
use crate::Rng;

pub const KEYS: [&str; 3] = ["cyber_sim", "black_friday", "escrow_sim"];

pub fn by_key(key: &str) -> Option<Scenario> {
    match key {
        "cyber_sim" => Some(cyber()),
        "black_friday" => Some(black_friday()),
        "escrow_sim" => Some(escrow()),
        _ => None,
    }
}

fn has(inbox: &[Received], from: &str, word: &str) -> bool {
    inbox
        .iter()
        .any(|m| m.from_role == from && (m.subject.contains(word) || m.body.contains(word)))
}

// ---- cyber_sim: incident response -------------------------------------------------------

fn cyber() -> Scenario {
    Scenario {
        key: "cyber_sim",
        title: "incident response to a ransomware alert",
        roles: &[
            ("Detector", "watch telemetry and raise alerts with evidence"),
            (
                "Responder",
                "isolate affected hosts and report containment steps",
            ),
            (
                "Forensics",
                "analyse evidence and report indicators of compromise",
            ),
            (
                "Comms",
                "keep stakeholders informed with short status updates",
            ),
            (
                "Lead",
                "coordinate; declare CONTAINED once isolation and IOCs are confirmed",
            ),
        ],
        rounds: 6,
        search_term: "incident",
        script: cyber_script,
        outcome: |transcript| match transcript
            .iter()
            .find(|(_, role, action)| role == "Lead" && action.subject.contains("CONTAINED"))
        {
            Some((round, _, _)) => format!("incident contained in round {}", round + 1),
            None => "incident not contained".to_string(),
        },
    }
}

fn cyber_script(role: &str, round: usize, inbox: &[Received], rng: &mut Rng) -> Vec<Action> {
    let hosts = ["web-01", "db-02", "build-07", "vpn-03"];
    match role {
        "Detector" if round == 0 => {
            let host = hosts[rng.below(hosts.len())];
            vec![Action::new(
                &["Responder", "Forensics", "Lead"],
                "ALERT encryption burst",
                format!("Mass file renames on {host}; beacon to 203.0.113.9"),
            )]
        }
        "Detector" if rng.below(3) == 0 => vec![Action::new(
            &["Forensics"],
            "telemetry",
            "new process tree captured",
        )],
        "Responder" if has(inbox, "Detector", "ALERT") => {
            vec![Action::new(
                &["Lead", "Comms"],
                "ISOLATED",
                "Host quarantined at the switch; credentials rotated",
            )]
        }
        "Forensics" if has(inbox, "Detector", "ALERT") || has(inbox, "Detector", "telemetry") => {
            vec![Action::new(
                &["Lead", "Responder"],
                "IOC found",
                "Hash 9f2c… and C2 203.0.113.9 confirmed",
            )]
        }
        "Comms" if !inbox.is_empty() => vec![Action::new(
            &["Lead"],
            "status drafted",
            format!("Update {} sent to stakeholders", round + 1),
        )],
        "Lead" if has(inbox, "Responder", "ISOLATED") && has(inbox, "Forensics", "IOC") => {
            vec![Action::new(
                &["Detector", "Responder", "Forensics", "Comms"],
                "CONTAINED",
                "Incident contained; move to recovery",
            )]
        }
        "Lead" if has(inbox, "Detector", "ALERT") => vec![Action::new(
            &["Responder", "Forensics"],
            "ack",
            "Working the alert; report back",
        )],
        _ => Vec::new(),
    }
}

// ---- black_friday: retail chaos ---------------------------------------------------------

fn black_friday() -> Scenario {
    Scenario {
        key: "black_friday",
        title: "a store on Black Friday: orders, stock, payments, shipping, complaints",
        roles: &[
            ("Storefront", "take customer orders and pass them on"),
            ("Inventory", "reserve stock or report it sold out"),
            ("Payments", "charge reserved orders; some cards fail"),
            ("Shipping", "ship paid orders and confirm"),
            ("Support", "answer complaints about failed or late orders"),
        ],
        rounds: 8,
        search_term: "order",
        script: black_friday_script,
        outcome: |transcript| {
            let placed = transcript
                .iter()
                .filter(|(_, role, a)| role == "Storefront" && a.subject.starts_with("order"))
                .count();
            let shipped = transcript
                .iter()
                .filter(|(_, role, a)| role == "Shipping" && a.subject.starts_with("shipped"))
                .count();
            format!("{shipped} of {placed} orders shipped")
        },
    }
}

fn black_friday_script(role: &str, round: usize, inbox: &[Received], rng: &mut Rng) -> Vec<Action> {
    let order_of = |m: &Received| {
        m.subject
            .split_whitespace()
            .last()
            .unwrap_or("?")
            .to_string()
    };
    match role {
        "Storefront" if round < 6 => (0..3)
            .map(|n| {
                Action::new(
                    &["Inventory"],
                    format!("order {}", round * 3 + n),
                    "2x TV, express",
                )
            })
            .collect(),
        "Inventory" => inbox
            .iter()
            .filter(|m| m.subject.starts_with("order"))
            .map(|m| {
                if rng.below(5) == 0 {
                    Action::new(
                        &["Support", "Storefront"],
                        format!("sold out {}", order_of(m)),
                        "no stock left",
                    )
                } else {
                    Action::new(
                        &["Payments"],
                        format!("reserved {}", order_of(m)),
                        "stock held 15 min",
                    )
                }
            })
            .collect(),
        "Payments" => inbox
            .iter()
            .filter(|m| m.subject.starts_with("reserved"))
            .map(|m| {
                if rng.below(6) == 0 {
                    Action::new(
                        &["Support"],
                        format!("declined {}", order_of(m)),
                        "card declined",
                    )
                } else {
                    Action::new(&["Shipping"], format!("paid {}", order_of(m)), "charged")
                }
            })
            .collect(),
        "Shipping" => inbox
            .iter()
            .filter(|m| m.subject.starts_with("paid"))
            .map(|m| {
                Action::new(
                    &["Storefront"],
                    format!("shipped {}", order_of(m)),
                    "tracking sent",
                )
            })
            .collect(),
        "Support" => inbox
            .iter()
            .map(|m| {
                Action::new(
                    &["Storefront"],
                    format!("handled {}", order_of(m)),
                    "customer refunded and apologised to",
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

// ---- escrow_sim: escrow negotiation -----------------------------------------------------

fn escrow() -> Scenario {
    Scenario {
        key: "escrow_sim",
        title: "a buyer and a seller negotiate a price; escrow releases funds on agreement",
        roles: &[
            (
                "Buyer",
                "buy the item as cheaply as possible, up to 1000; say ACCEPT <price> to agree",
            ),
            (
                "Seller",
                "sell for as much as possible, at least 700; say ACCEPT <price> to agree",
            ),
            (
                "Escrow",
                "hold funds; RELEASE once both sides ACCEPT the same price",
            ),
            (
                "Arbiter",
                "step in with a RULING if no deal is near by the last rounds",
            ),
        ],
        rounds: 10,
        search_term: "escrow",
        script: escrow_script,
        outcome: |transcript| match transcript
            .iter()
            .find(|(_, role, a)| role == "Escrow" && a.subject.starts_with("RELEASE"))
        {
            Some((round, _, action)) => {
                format!("deal closed: {} in round {}", action.body, round + 1)
            }
            None => "no deal".to_string(),
        },
    }
}

fn price_in(text: &str) -> Option<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .rev()
        .find_map(|t| t.parse().ok())
}

fn escrow_script(role: &str, round: usize, inbox: &[Received], rng: &mut Rng) -> Vec<Action> {
    let last_from = |from: &str| {
        inbox
            .iter()
            .rev()
            .find(|m| m.from_role == from)
            .map(|m| format!("{} {}", m.subject, m.body))
    };
    match role {
        "Buyer" => match last_from("Seller") {
            Some(text) if text.contains("ACCEPT") => Vec::new(),
            Some(text) => {
                let ask = price_in(&text).unwrap_or(1200);
                let offer = 600 + 60 * round as u32 + rng.below(20) as u32;
                if ask <= offer + 40 {
                    vec![Action::new(
                        &["Seller", "Escrow"],
                        format!("ACCEPT {ask}"),
                        format!("agreed at {ask}"),
                    )]
                } else {
                    vec![Action::new(
                        &["Seller"],
                        format!("offer {offer}"),
                        format!("I can pay {offer}"),
                    )]
                }
            }
            None if round == 0 => vec![Action::new(&["Seller"], "offer 600", "Opening offer: 600")],
            None => Vec::new(),
        },
        "Seller" => match last_from("Buyer") {
            Some(text) if text.contains("ACCEPT") => {
                let price = price_in(&text).unwrap_or(0);
                vec![Action::new(
                    &["Buyer", "Escrow"],
                    format!("ACCEPT {price}"),
                    format!("agreed at {price}"),
                )]
            }
            Some(text) => {
                let offer = price_in(&text).unwrap_or(600);
                let ask = (1200u32.saturating_sub(50 * round as u32))
                    .max(offer + 30)
                    .max(700);
                vec![Action::new(
                    &["Buyer"],
                    format!("ask {ask}"),
                    format!("I need {ask}"),
                )]
            }
            None => Vec::new(),
        },
        "Escrow" => {
            let accepts: Vec<u32> = inbox
                .iter()
                .filter(|m| m.subject.starts_with("ACCEPT"))
                .filter_map(|m| price_in(&m.subject))
                .collect();
            let from_both = ["Buyer", "Seller"].iter().all(|r| {
                inbox
                    .iter()
                    .any(|m| m.from_role == *r && m.subject.starts_with("ACCEPT"))
            });
            match accepts.first() {
                Some(price) if from_both && accepts.iter().all(|p| p == price) => {
                    vec![Action::new(
                        &["Buyer", "Seller", "Arbiter"],
                        "RELEASE funds",
                        format!("{price} released to Seller"),
                    )]
                }
                Some(_) => vec![Action::new(
                    &["Buyer", "Seller"],
                    "holding",
                    "waiting for both ACCEPTs",
                )],
                None => Vec::new(),
            }
        }
        "Arbiter" if round >= 8 && inbox.is_empty() => {
            vec![Action::new(
                &["Buyer", "Seller"],
                "RULING 850",
                "Settle at 850 to close the escrow",
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_scenario_with_roles() {
        for key in KEYS {
            let scenario = by_key(key).expect(key);
            assert_eq!(scenario.key, key);
            assert!(scenario.roles.len() >= 4);
            for (role, _) in scenario.roles {
                assert!(
                    role.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{role} must be a valid agent name part"
                );
            }
        }
        assert!(by_key("nope").is_none());
    }

    #[test]
    fn the_scripted_escrow_negotiation_converges_to_a_release() {
        // Plays the script without a server: deliver each action to its recipients' inboxes.
        let scenario = by_key("escrow_sim").expect("escrow");
        let mut rng = Rng(7);
        let mut inboxes: std::collections::HashMap<&str, Vec<Received>> = Default::default();
        let mut transcript = Vec::new();
        for round in 0..scenario.rounds {
            for (role, _) in scenario.roles {
                let inbox = inboxes.remove(role).unwrap_or_default();
                for action in (scenario.script)(role, round, &inbox, &mut rng) {
                    for to in &action.to {
                        let to = scenario
                            .roles
                            .iter()
                            .find(|(r, _)| r == to)
                            .map(|(r, _)| *r)
                            .expect("known role");
                        inboxes.entry(to).or_default().push(Received {
                            from_role: role.to_string(),
                            subject: action.subject.clone(),
                            body: action.body.clone(),
                        });
                    }
                    transcript.push((round, role.to_string(), action));
                }
            }
        }
        let outcome = (scenario.outcome)(&transcript);
        assert!(outcome.starts_with("deal closed"), "{outcome}");
    }
}

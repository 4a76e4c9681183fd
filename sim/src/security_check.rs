//! The security rule: a client whose user lacks a permission never gets
//! it. The intruder (user `intruder`, role `guest`) sends to the queue the
//! consumers read; every one of its sends must be refused: none receipted,
//! none delivered to anyone.

use halyard_core::security::{password, Pattern, Permission, Rule, Security, User};

use crate::client::Client;

/// The users every simulated client and the intruder log in as.
pub const USER: (&str, &str) = ("sim", "sim-secret");
pub const INTRUDER: (&str, &str) = ("intruder", "intruder-secret");
/// The intruder's name as a client (and as the producer of its messages).
pub const INTRUDER_CLIENT: &str = "intruder";

/// The nodes' security file: `sim` may do everything everywhere; the
/// intruder's role is granted nothing on the addresses it sends to.
/// Hashes with argon2's cheapest parameters, so a login costs microseconds.
pub fn security() -> Security {
    let user = |pass: &str, role: &str, salt: u8| User {
        password_hash: password::hash_cheap(pass.as_bytes(), &[salt; password::SALT_BYTES]),
        roles: vec![role.to_string()],
    };
    let rule = |pattern: &str, grants: &[(Permission, &str)]| Rule {
        pattern: Pattern::parse(pattern).expect("a valid pattern"),
        grants: grants
            .iter()
            .map(|(p, r)| (*p, vec![r.to_string()]))
            .collect(),
    };
    let everything: Vec<(Permission, &str)> = Permission::ALL.iter().map(|p| (*p, "app")).collect();
    Security {
        users: [
            (USER.0.to_string(), user(USER.1, "app", 1)),
            (INTRUDER.0.to_string(), user(INTRUDER.1, "guest", 2)),
        ]
        .into_iter()
        .collect(),
        rules: vec![
            rule("#", &everything),
            // The guest may only look at what is public.
            rule("public.#", &[(Permission::Consume, "guest")]),
        ],
        decoy_hash: password::hash_cheap(b"decoy", &[3; password::SALT_BYTES]),
    }
}

/// Violations of the rule, as one line (`None`: kept).
pub fn check(clients: &[Client]) -> Option<String> {
    let intruders: Vec<&Client> = clients.iter().filter(|c| c.expect_refusal).collect();
    let mut problems = Vec::new();
    for i in &intruders {
        if !i.receipted.is_empty() {
            problems.push(format!(
                "{}: {} sends receipted although its user may not send",
                i.name,
                i.receipted.len()
            ));
        }
        let delivered = clients
            .iter()
            .flat_map(|c| &c.deliveries)
            .filter(|d| d.producer == i.name)
            .count();
        if delivered > 0 {
            problems.push(format!(
                "{}: {delivered} of its messages delivered although its user may not send",
                i.name
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

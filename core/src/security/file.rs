//! The security file (TOML): `[users.NAME]` tables and `[[permissions]]`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::model::{Permission, Rule, Security, User};
use super::password;
use super::pattern::Pattern;

/// Why a security file was refused: the line (1-based) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SecurityFileError {
    pub line: usize,
    pub reason: String,
}

/// Users and rules, at most: a bound on what a login or a check scans.
pub const USERS_MAX: usize = 100_000;
pub const RULES_MAX: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    users: BTreeMap<String, Spanned<UserDoc>>,
    #[serde(default)]
    permissions: Vec<Spanned<RuleDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDoc {
    password: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    send: Option<Vec<String>>,
    consume: Option<Vec<String>>,
    browse: Option<Vec<String>>,
    create_durable_queue: Option<Vec<String>>,
    delete_durable_queue: Option<Vec<String>>,
    create_address: Option<Vec<String>>,
    delete_address: Option<Vec<String>>,
    manage: Option<Vec<String>>,
}

impl RuleDoc {
    fn grants(&mut self) -> BTreeMap<Permission, Vec<String>> {
        let mut g = BTreeMap::new();
        for p in Permission::ALL {
            let field = match p {
                Permission::Send => &mut self.send,
                Permission::Consume => &mut self.consume,
                Permission::Browse => &mut self.browse,
                Permission::CreateDurableQueue => &mut self.create_durable_queue,
                Permission::DeleteDurableQueue => &mut self.delete_durable_queue,
                Permission::CreateAddress => &mut self.create_address,
                Permission::DeleteAddress => &mut self.delete_address,
                Permission::Manage => &mut self.manage,
            };
            if let Some(roles) = field.take() {
                g.insert(p, roles);
            }
        }
        g
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses and checks a security file's text.
pub fn parse(text: &str) -> Result<Security, SecurityFileError> {
    let doc: Doc = toml::from_str(text).map_err(|e| SecurityFileError {
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        reason: e.message().trim_end().to_string(),
    })?;
    let err = |offset: usize, reason: String| SecurityFileError {
        line: line_of(text, offset),
        reason,
    };
    if doc.users.len() > USERS_MAX {
        return Err(err(0, format!("more than {USERS_MAX} users")));
    }
    if doc.permissions.len() > RULES_MAX {
        return Err(err(
            0,
            format!("more than {RULES_MAX} [[permissions]] tables"),
        ));
    }
    let mut users = BTreeMap::new();
    for (name, u) in doc.users {
        let at = u.span().start;
        let u = u.into_inner();
        if name.is_empty() {
            return Err(err(at, "a user with an empty name".into()));
        }
        let hash_at = u.password.span().start;
        let hash = u.password.into_inner();
        password::check_format(&hash)
            .map_err(|reason| err(hash_at, format!("user {name:?}: password: {reason}")))?;
        if let Some(r) = u.roles.iter().find(|r| r.is_empty()) {
            return Err(err(at, format!("user {name:?}: an empty role name {r:?}")));
        }
        users.insert(
            name,
            User {
                password_hash: hash,
                roles: u.roles,
            },
        );
    }
    let mut rules = Vec::new();
    for r in doc.permissions {
        let at = r.span().start;
        let mut r = r.into_inner();
        let match_at = r.pattern.span().start;
        let pattern = Pattern::parse(r.pattern.get_ref()).map_err(|reason| {
            err(
                match_at,
                format!("match {:?}: {reason}", r.pattern.get_ref()),
            )
        })?;
        if rules.iter().any(|x: &Rule| x.pattern == pattern) {
            return Err(err(
                at,
                format!("match {:?} appears twice", pattern.as_str()),
            ));
        }
        rules.push(Rule {
            pattern,
            grants: r.grants(),
        });
    }
    // Only a file with users is ever asked to log anyone in.
    let decoy_hash = if users.is_empty() {
        String::new()
    } else {
        password::decoy_hash()
    };
    Ok(Security {
        users,
        rules,
        decoy_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::model::Principal;

    const SALT: [u8; password::SALT_BYTES] = [3; password::SALT_BYTES];

    fn hash() -> String {
        password::hash(b"secret", &SALT)
    }

    fn file(rules: &str) -> String {
        format!(
            "[users.alice]\npassword = \"{}\"\nroles = [\"producer\"]\n\n[users.bob]\npassword = \"{}\"\nroles = [\"consumer\"]\n{rules}",
            hash(),
            hash()
        )
    }

    fn who(s: &Security, u: &str) -> Principal {
        s.principal(u).unwrap()
    }

    #[test]
    fn most_specific_match_decides() {
        let s = parse(&file(
            r#"
[[permissions]]
match = "orders.#"
send = ["producer"]
consume = ["consumer"]

[[permissions]]
match = "orders.*"
consume = ["consumer"]

[[permissions]]
match = "orders.secret"
send = []
"#,
        ))
        .unwrap();
        let (a, b) = (who(&s, "alice"), who(&s, "bob"));
        assert!(s.allows(&a, Permission::Send, "orders"));
        assert!(s.allows(&a, Permission::Send, "orders.eu.new"));
        // orders.* beats orders.# and grants no send.
        assert!(!s.allows(&a, Permission::Send, "orders.new"));
        assert!(s.allows(&b, Permission::Consume, "orders.new"));
        // The exact name beats both.
        assert!(!s.allows(&b, Permission::Consume, "orders.secret"));
        assert!(!s.allows(&a, Permission::Send, "orders.secret"));
        // However long the name: `orders.secret` still decides below it
        // (a 200-word address once fell through to the broader rule).
        let long = format!("orders.secret{}", ".w".repeat(200));
        let s2 = parse(&file(
            "[[permissions]]\nmatch = \"#\"\nsend = [\"producer\"]\n\n[[permissions]]\nmatch = \"orders.secret.#\"\nsend = []\n",
        ))
        .unwrap();
        assert!(!s2.allows(&who(&s2, "alice"), Permission::Send, &long));
        assert!(s2.allows(&who(&s2, "alice"), Permission::Send, "orders.w.w"));
        // No rule: nobody.
        assert!(!s.allows(&a, Permission::Send, "prices"));
        let d = s.check(&a, Permission::Send, "prices").unwrap_err();
        assert_eq!(
            d.to_string(),
            r#"user "alice" may not send to address "prices" (permission send)"#
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(&file("\n[[permissions]]\nmatch = \"x\"\nsendd = [\"a\"]\n")).unwrap_err();
        assert_eq!(e.line, 11, "{e}");
        assert!(e.reason.contains("unknown field `sendd`"), "{e}");
        let e = parse("[users.a]\nroles = []\npassword = \"plain\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("user \"a\": password"), "{e}");
        let e = parse("[[permissions]]\nmatch = \"a.b*\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[users.a\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e =
            parse("[[permissions]]\nmatch = \"a\"\n[[permissions]]\nmatch = \"a\"\n").unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
        assert!(parse("").unwrap().users.is_empty());
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let s = parse(&file("")).unwrap();
        assert!(!format!("{s:?}").contains(&hash()));
    }
}

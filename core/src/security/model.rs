//! Users, roles, rules and the checks on them.

use std::collections::BTreeMap;
use std::fmt;

use super::pattern::{Pattern, Specificity};

/// The permissions Artemis has, by their security-file names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Send,
    Consume,
    Browse,
    CreateDurableQueue,
    DeleteDurableQueue,
    CreateAddress,
    DeleteAddress,
    Manage,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::Send,
        Permission::Consume,
        Permission::Browse,
        Permission::CreateDurableQueue,
        Permission::DeleteDurableQueue,
        Permission::CreateAddress,
        Permission::DeleteAddress,
        Permission::Manage,
    ];

    /// The name in the security file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Send => "send",
            Permission::Consume => "consume",
            Permission::Browse => "browse",
            Permission::CreateDurableQueue => "create_durable_queue",
            Permission::DeleteDurableQueue => "delete_durable_queue",
            Permission::CreateAddress => "create_address",
            Permission::DeleteAddress => "delete_address",
            Permission::Manage => "manage",
        }
    }

    /// What a refusal says the user may not do, before the address.
    pub fn verb(self) -> &'static str {
        match self {
            Permission::Send => "send to",
            Permission::Consume => "consume from",
            Permission::Browse => "browse",
            Permission::CreateDurableQueue => "create a durable queue on",
            Permission::DeleteDurableQueue => "delete a durable queue on",
            Permission::CreateAddress => "create address",
            Permission::DeleteAddress => "delete address",
            Permission::Manage => "manage",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address management calls are checked against (Artemis's
/// `activemq.management`).
pub const MANAGEMENT_ADDRESS: &str = "halyard.management";

/// A user of the security file.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the password, but it is what an attacker would
        // brute-force: keep it out of logs.
        f.debug_struct("User").field("roles", &self.roles).finish()
    }
}

/// One `[[permissions]]` table: the roles given each permission on the
/// addresses `pattern` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub pattern: Pattern,
    pub grants: BTreeMap<Permission, Vec<String>>,
}

/// Who a connection logged in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<String>,
}

/// The parsed security file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Security {
    pub users: BTreeMap<String, User>,
    pub rules: Vec<Rule>,
    /// Verified when the user is unknown (same cost as a wrong password).
    pub decoy_hash: String,
}

/// An operation refused for want of a permission; its text is what the
/// client is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("user {user:?} may not {verb} address {address:?} (permission {permission})", verb = permission.verb())]
pub struct Denied {
    pub user: String,
    pub permission: Permission,
    pub address: String,
}

impl Security {
    /// The rule that decides for `address`: the most specific match (in
    /// file order on a tie).
    pub fn rule_for(&self, address: &str) -> Option<&Rule> {
        let mut best: Option<(&Rule, Specificity)> = None;
        for r in &self.rules {
            if r.pattern.matches(address) {
                let s = r.pattern.specificity();
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((r, s));
                }
            }
        }
        best.map(|(r, _)| r)
    }

    /// Whether `who` holds `permission` on `address`. No matching rule:
    /// nobody does.
    pub fn allows(&self, who: &Principal, permission: Permission, address: &str) -> bool {
        self.rule_for(address)
            .and_then(|r| r.grants.get(&permission))
            .is_some_and(|roles| roles.iter().any(|r| who.roles.contains(r)))
    }

    pub fn check(
        &self,
        who: &Principal,
        permission: Permission,
        address: &str,
    ) -> Result<(), Denied> {
        if self.allows(who, permission, address) {
            Ok(())
        } else {
            Err(Denied {
                user: who.user.clone(),
                permission,
                address: address.to_string(),
            })
        }
    }

    /// The principal for `user` (`None`: no such user).
    pub fn principal(&self, user: &str) -> Option<Principal> {
        self.users.get(user).map(|u| Principal {
            user: user.to_string(),
            roles: u.roles.clone(),
        })
    }
}

/// A password on its way to be checked: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

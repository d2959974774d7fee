//! Who may do what: one [`authorize`] decides every permission of the gRPC API, from the
//! caller, the action and the deployment it is about (by its owner).
//!
//! Owners are `user:NAME` or `group:NAME`; admins may do everything. A deployment another
//! owner holds is refused as "not found", so its existence is not confirmed; what nobody
//! owns (a directory an older agent left) is for admins only.

use crate::auth::Caller;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// Deploy the deployment for `owner`.
    Deploy { owner: &'a str },
    /// See it: status, logs, counted in node info.
    See,
    /// Remove it from the node.
    Remove,
    /// Stop, start or restart its app (the owner's, like removing it).
    Operate,
    /// Set, list or remove `owner`'s secrets (not about a deployment).
    ManageSecrets { owner: &'a str },
}

/// The deployment an action is about, as far as permissions go: its name and who owns it
/// (none when it does not exist, or nobody owns what is left of it).
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub name: &'a str,
    pub owner: Option<String>,
}

impl<'a> Target<'a> {
    /// Actions that are not about a deployment.
    pub(crate) fn none() -> Target<'static> {
        Target {
            name: "",
            owner: None,
        }
    }
}

/// Why an action was refused; each becomes one gRPC status with the same words as always.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Someone else's deployment: answered as if it did not exist.
    Hidden(String),
    MayNotDeployFor {
        caller: String,
        owner: String,
    },
    /// The name is held by another owner (neither named nor described).
    NameTaken {
        name: String,
        caller: String,
    },
    MayNotManageSecrets {
        caller: String,
        owner: String,
    },
}

/// The owner of a deployment whose spec names none: the caller; on an agent without users
/// (every caller is the agent's own user), the client's `default_owner` (its `user:$USER`)
/// when it sent one.
pub(crate) fn default_owner(caller: &Caller, client_default: &str) -> String {
    if caller.authenticated || client_default.is_empty() {
        caller.owner()
    } else {
        client_default.to_string()
    }
}

/// Whether `caller` may do `action` to `target`.
pub(crate) fn authorize(caller: &Caller, action: Action, target: &Target) -> Result<(), Refusal> {
    // Existing deployments: their owner's; what nobody owns: admins'.
    let sees = target
        .owner
        .as_deref()
        .map_or(caller.admin, |o| caller.may(o));
    match action {
        Action::Deploy { owner } => {
            if !caller.may(owner) {
                return Err(Refusal::MayNotDeployFor {
                    caller: caller.owner(),
                    owner: owner.to_string(),
                });
            }
            // The same words whoever holds it.
            if target.owner.is_some() && !sees {
                return Err(Refusal::NameTaken {
                    name: target.name.to_string(),
                    caller: caller.owner(),
                });
            }
            Ok(())
        }
        Action::See | Action::Remove | Action::Operate if sees => Ok(()),
        Action::See | Action::Remove | Action::Operate => {
            Err(Refusal::Hidden(target.name.to_string()))
        }
        Action::ManageSecrets { owner } if caller.may(owner) => Ok(()),
        Action::ManageSecrets { owner } => Err(Refusal::MayNotManageSecrets {
            caller: caller.owner(),
            owner: owner.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Caller {
        Caller {
            user: name.into(),
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            authenticated: true,
        }
    }

    fn admin() -> Caller {
        Caller {
            admin: true,
            ..user("root", &[])
        }
    }

    fn owned_by(owner: Option<&str>) -> Target<'static> {
        Target {
            name: "app",
            owner: owner.map(str::to_string),
        }
    }

    #[test]
    fn owners_and_group_members_see_and_remove_their_deployments() {
        let alice = user("alice", &["ml"]);
        for action in [Action::See, Action::Remove] {
            assert!(authorize(&alice, action, &owned_by(Some("user:alice"))).is_ok());
            assert!(authorize(&alice, action, &owned_by(Some("group:ml"))).is_ok());
        }
    }

    #[test]
    fn another_owners_deployment_and_an_unowned_one_are_not_found() {
        let bob = user("bob", &["web"]);
        for target in [
            owned_by(Some("user:alice")),
            owned_by(Some("group:ml")),
            owned_by(None),
        ] {
            for action in [Action::See, Action::Remove] {
                assert_eq!(
                    authorize(&bob, action, &target),
                    Err(Refusal::Hidden("app".into()))
                );
            }
        }
    }

    #[test]
    fn admins_may_do_everything() {
        let root = admin();
        for target in [owned_by(Some("user:alice")), owned_by(None)] {
            assert!(authorize(&root, Action::See, &target).is_ok());
            assert!(authorize(&root, Action::Remove, &target).is_ok());
            assert!(authorize(&root, Action::Deploy { owner: "user:x" }, &target).is_ok());
        }
        assert!(authorize(
            &root,
            Action::ManageSecrets { owner: "group:ml" },
            &Target::none()
        )
        .is_ok());
    }

    #[test]
    fn deploying_for_someone_else_is_refused() {
        let alice = user("alice", &["ml"]);
        let free = owned_by(None);
        assert!(authorize(&alice, Action::Deploy { owner: "group:ml" }, &free).is_ok());
        assert_eq!(
            authorize(&alice, Action::Deploy { owner: "user:bob" }, &free),
            Err(Refusal::MayNotDeployFor {
                caller: "user:alice".into(),
                owner: "user:bob".into()
            })
        );
    }

    #[test]
    fn a_name_another_owner_holds_is_not_available_with_the_same_words_for_everyone() {
        let bob = user("bob", &[]);
        let refusal = |owner| {
            authorize(
                &bob,
                Action::Deploy { owner: "user:bob" },
                &owned_by(Some(owner)),
            )
        };
        assert_eq!(refusal("user:alice"), refusal("group:ml"));
        assert_eq!(
            tonic::Status::from(refusal("user:alice").unwrap_err()).message(),
            "the name \"app\" is not available to user:bob; choose another name"
        );
        assert!(refusal("user:bob").is_ok(), "a redeploy of one's own");
    }

    #[test]
    fn secrets_are_managed_by_their_owner_its_groups_members_and_admins() {
        let alice = user("alice", &["ml"]);
        let none = Target::none();
        assert!(authorize(
            &alice,
            Action::ManageSecrets {
                owner: "user:alice"
            },
            &none
        )
        .is_ok());
        assert!(authorize(&alice, Action::ManageSecrets { owner: "group:ml" }, &none).is_ok());
        assert_eq!(
            tonic::Status::from(
                authorize(&alice, Action::ManageSecrets { owner: "user:bob" }, &none).unwrap_err()
            )
            .message(),
            "user:alice may not manage the secrets of user:bob"
        );
    }

    #[test]
    fn the_default_owner_is_the_caller_or_without_users_the_clients_user() {
        let alice = user("alice", &[]);
        assert_eq!(default_owner(&alice, "user:mallory"), "user:alice");
        let local = Caller::local();
        assert_eq!(default_owner(&local, "user:me"), "user:me");
        assert_eq!(default_owner(&local, ""), local.owner());
    }

    #[test]
    fn without_authentication_the_local_caller_may_do_everything() {
        let local = Caller::local();
        assert!(authorize(&local, Action::Remove, &owned_by(Some("user:alice"))).is_ok());
        assert!(authorize(
            &local,
            Action::Deploy { owner: "user:x" },
            &owned_by(Some("user:y"))
        )
        .is_ok());
    }
}

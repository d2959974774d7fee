//! Who the caller is to the agents of an env (its user and groups, from its token), and
//! whether that caller may touch a deployment another owner may hold: the agents answer
//! "not found" for what a caller may not see, so the CLI must never take that answer for
//! "not running" on a shared state entry that is not the caller's.

use deployctl_proto::v1 as pb;

use super::{Call, Limit, Reply, Target};

/// The caller as the env's first answering agent knows it; `None` when none answers.
pub(crate) async fn who_am_i(target: &Target) -> Option<pb::WhoAmIReply> {
    let mut replies = super::for_each_agent(target, Limit::Answer, |mut c: Call| async move {
        Ok(c.client.who_am_i(pb::WhoAmIRequest {}).await?.into_inner())
    });
    while let Some(Reply { result, .. }) = replies.next().await {
        if let Ok(me) = result {
            return Some(me);
        }
    }
    None
}

/// Whether `me` may see and change what `owner` owns: the owner user, a member of the owner
/// group, an admin, or anyone on agents without users (every caller is the agent's user).
pub(crate) fn may_touch(me: &pb::WhoAmIReply, owner: &str) -> bool {
    if !me.auth_enabled || me.admin || owner.is_empty() {
        return true;
    }
    match owner.split_once(':') {
        Some(("user", u)) => u == me.user,
        Some(("group", g)) => me.groups.iter().any(|m| m == g),
        _ => false,
    }
}

/// How the caller is named in a refusal: `user:NAME`.
pub(crate) fn named(me: &pb::WhoAmIReply) -> String {
    format!("user:{}", me.user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(user: &str, groups: &[&str], admin: bool) -> pb::WhoAmIReply {
        pb::WhoAmIReply {
            user: user.into(),
            admin,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            auth_enabled: true,
        }
    }

    #[test]
    fn owners_members_and_admins_may_touch_others_may_not() {
        assert!(may_touch(&me("alice", &["ml"], false), "group:ml"));
        assert!(may_touch(&me("alice", &[], false), "user:alice"));
        assert!(!may_touch(&me("carol", &["web"], false), "group:ml"));
        assert!(!may_touch(&me("carol", &[], false), "user:alice"));
        assert!(may_touch(&me("root", &[], true), "group:ml"));
        let mut open = me("x", &[], false);
        open.auth_enabled = false;
        assert!(may_touch(&open, "group:ml"));
    }
}

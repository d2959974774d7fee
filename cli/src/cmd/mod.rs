//! One module per command.

pub(crate) mod apply;
pub(crate) mod check;
pub(crate) mod clone;
pub(crate) mod config;
pub(crate) mod dashboard;
pub(crate) mod declare;
pub(crate) mod envvars;
pub(crate) mod exec;
pub(crate) mod flags;
pub(crate) mod fresh;
pub(crate) mod halt;
pub(crate) mod history;
pub(crate) mod lifecycle;
pub(crate) mod list;
pub(crate) mod local;
pub(crate) mod logs;
pub(crate) mod nodes;
pub(crate) mod plan;
pub(crate) mod remove;
pub(crate) mod rollback;
pub(crate) mod run;
pub(crate) mod secret;
pub(crate) mod statecopy;
pub(crate) mod status;
pub(crate) mod types;

//! One module per command.

pub mod apply;
pub mod clone;
pub mod config;
pub mod declare;
pub mod flags;
pub mod history;
pub mod list;
pub mod logs;
pub mod nodes;
pub mod remove;
pub mod rollback;
pub mod run;
pub mod secret;
pub mod status;
pub mod types;

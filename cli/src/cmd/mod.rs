//! One module per command.

pub mod declare;
pub mod flags;
pub mod list;
pub mod logs;
pub mod nodes;
pub mod remove;
pub mod run;
pub mod status;

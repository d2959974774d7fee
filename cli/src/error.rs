//! Exit codes: 0 worked, 1 an operation failed, 2 bad usage or bad input.
//! Bad input is an [`anyhow::Error`] carrying [`BadInput`]; everything else exits 1.

use std::fmt;

/// Input that is wrong before anything runs (exit code 2). The message names the field.
#[derive(Debug)]
pub(crate) struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// `bail!`-like constructor for bad input.
pub(crate) fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// A failure already reported to the user in full (exit 1, nothing more to print).
#[derive(Debug)]
pub(crate) struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Reported {}

/// A command that ran elsewhere ended with this code (`exec`): deployctl exits with it,
/// printing nothing more.
#[derive(Debug)]
pub(crate) struct ExitWith(pub u8);

impl fmt::Display for ExitWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exited with code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

pub(crate) fn exit_code(err: &anyhow::Error) -> i32 {
    if let Some(ExitWith(code)) = err.downcast_ref::<ExitWith>() {
        return i32::from(*code);
    }
    if err.chain().any(|e| e.is::<BadInput>()) {
        2
    } else {
        1
    }
}

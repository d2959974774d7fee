//! The agent's domain errors. The one mapping to gRPC codes lives in `service.rs`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is wrong; names the field and why.
    #[error("{field}: {reason}")]
    InvalidInput { field: String, reason: String },
    /// No deployment of that name on this agent.
    #[error("deployment {0:?} not found on this agent")]
    NotFound(String),
    /// The request is valid but conflicts with what runs (a port another deployment holds).
    #[error("{0}")]
    Conflict(String),
    /// A file the agent keeps could not be read or written.
    #[error("{context} ({}): {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

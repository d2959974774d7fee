//! Why a request of the agent to the node proxy did not take effect: the proxy is down (its
//! control socket refuses, it does not answer in time, it could not be started), it answered
//! something that is not an answer, or it answered and refused (a socket it cannot listen
//! on, a request older than what it has). The agent treats the first as the proxy's
//! trouble (the watch replaces it and sends every route again) and the last as the route's.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Its control socket cannot be reached, or the connection broke mid-answer.
    #[error("the node proxy ({}): {source}", socket.display())]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the node proxy closed the connection without answering")]
    Closed,
    #[error("the node proxy did not answer within {0:?}")]
    NoAnswer(Duration),
    /// It could not be started, or did not come up.
    #[error("{0}")]
    NotStarted(String),
    /// It answered with words that are not an answer.
    #[error("the node proxy answered {answer:?}: {source}")]
    Garbled {
        answer: String,
        #[source]
        source: serde_json::Error,
    },
    /// It answered and did not apply the request (`stale`: older than what it has).
    #[error("{error}")]
    Refused { error: String, stale: bool },
}

impl ProxyError {
    /// The proxy itself is in trouble (not running, not answering), rather than refusing
    /// this request: what it did not take, a proxy replaced by the watch gets.
    pub(crate) fn is_down(&self) -> bool {
        matches!(
            self,
            ProxyError::Unreachable { .. }
                | ProxyError::Closed
                | ProxyError::NoAnswer(_)
                | ProxyError::NotStarted(_)
        )
    }

    /// It answered that it does not know the request: a proxy of an older version.
    pub(crate) fn is_unknown_request(&self) -> bool {
        matches!(self, ProxyError::Refused { error, .. } if error.starts_with("not a request"))
    }

    /// Says why a deployment's route could not be removed: a proxy that is down is not an
    /// error (the watch removes the route from the proxy it starts again).
    pub(crate) fn log_removal(&self, deployment: &str) {
        if self.is_down() {
            tracing::info!(%deployment, error = %self, "the node proxy is down: the deployment's route is removed when it is back");
        } else {
            tracing::warn!(%deployment, error = %self, "cannot remove the deployment's route");
        }
    }

    pub(super) fn refused(error: impl Into<String>) -> ProxyError {
        ProxyError::Refused {
            error: error.into(),
            stale: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_is_told_from_refused() {
        let gone = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let down = ProxyError::Unreachable {
            socket: "/d/proxy/control.sock".into(),
            source: gone,
        };
        assert!(down.is_down());
        assert!(down
            .to_string()
            .starts_with("the node proxy (/d/proxy/control.sock): "));
        assert!(ProxyError::NoAnswer(Duration::from_secs(1)).is_down());
        let refused = ProxyError::refused("cannot listen on 10.0.0.5:8000: Address in use");
        assert!(!refused.is_down() && !refused.is_unknown_request());
        assert_eq!(
            refused.to_string(),
            "cannot listen on 10.0.0.5:8000: Address in use"
        );
        let old = ProxyError::refused("not a request: unknown variant `table`");
        assert!(old.is_unknown_request());
    }
}

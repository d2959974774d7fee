//! Calling every agent of an env at once: each agent gets its own deadline, so one hung
//! agent costs a command its timeout and no more; results come back as they complete; an
//! agent that failed is named with its address and why ("did not answer within 5s").

use std::fmt;
use std::future::Future;
use std::time::Duration;

use deployctl_proto::v1 as pb;
use tokio::task::JoinSet;

use super::{connect, status_text, Client, Target};

/// How long one agent's call may take, once connected (connecting has its own bound: the
/// target's timeout).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// The call within the target's timeout: a request an agent answers at once (status,
    /// nodes, secrets).
    Answer,
    /// The call within this (e.g. `remove` waits for the app to stop).
    Within(Duration),
    /// As long as the agent answers keepalive pings: a deploy or a log stream, which
    /// legitimately last. The call bounds the opening of its stream with [`answer`].
    Stream,
}

/// What a call gets: a client connected to one agent.
pub(crate) struct Call {
    pub client: Client,
    /// The agent's address.
    pub address: String,
    /// The target's timeout, for [`answer`].
    pub timeout: Duration,
    /// How to reach the agent again, for [`Call::broken`].
    target: Target,
}

impl Call {
    /// The name of the env this agent was called in, for messages.
    pub(crate) fn env(&self) -> &str {
        &self.target.env
    }

    /// Why a stream from this agent broke, for a person. A stream broken by unanswered
    /// keepalive pings and one broken by an agent that exited look the same from here (the
    /// connection closed), so the agent is asked again, within the timeout.
    pub(crate) async fn broken(&self, s: &tonic::Status) -> String {
        let address = &self.address;
        let ask = async {
            let mut c = connect(&self.target.no_autostart(), address).await?;
            // Any answer, even a refusal, shows the agent is there.
            let _ = c.who_am_i(pb::WhoAmIRequest {}).await;
            anyhow::Ok(())
        };
        match tokio::time::timeout(self.timeout, ask).await {
            Ok(Ok(())) => format!(
                "the connection to agent {address} broke ({})",
                status_text(address, s)
            ),
            Ok(Err(e)) => format!("agent {address} went away: {e:#}"),
            Err(_) => format!(
                "agent {address} stopped answering (no reply to keepalive pings, nor to a new request within {}): it may be hung, stopped or cut off",
                humantime::format_duration(self.timeout)
            ),
        }
    }
}

/// `request` (e.g. the opening of a stream) within `timeout`.
pub(crate) async fn answer<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(r) => r.map_err(CallError::Status),
        Err(_) => Err(CallError::TimedOut(timeout)),
    }
}

/// Why a call failed, before it is told with the agent's address.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The agent answered with an error, or the connection failed.
    Status(tonic::Status),
    /// No answer within this.
    TimedOut(Duration),
    /// A stream that broke after it opened, told by [`Call::broken`].
    Broken(String),
}

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        CallError::Status(s)
    }
}

/// Why an agent gave no result, for a person: its address and the reason.
#[derive(Debug, Clone)]
pub(crate) struct AgentError {
    /// The failed call's gRPC code (the agent's answer, or a failed transport's); `None`
    /// when there was no connection, no answer in time, or a broken stream.
    pub code: Option<tonic::Code>,
    pub message: String,
}

impl AgentError {
    /// Why the call to the agent at `address` failed.
    pub(crate) fn from_call(address: &str, e: CallError) -> Self {
        match e {
            CallError::Status(s) => AgentError {
                code: Some(s.code()),
                message: status_text(address, &s),
            },
            CallError::TimedOut(d) => AgentError::timed_out(address, d),
            CallError::Broken(message) => AgentError {
                code: None,
                message,
            },
        }
    }

    fn timed_out(address: &str, d: Duration) -> Self {
        AgentError {
            code: None,
            message: format!(
                "agent {address} did not answer within {}",
                humantime::format_duration(d)
            ),
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

/// One agent's result.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    /// The order in which the call was added (the env's order of addresses).
    pub index: usize,
    pub address: String,
    pub result: Result<T, AgentError>,
}

/// Calls one agent: connects (within the target's timeout, or while the built-in local
/// agent is started), then runs `call` within `limit`.
pub(super) async fn call_one<T, F, Fut>(
    target: &Target,
    address: &str,
    limit: Limit,
    call: F,
) -> Result<T, AgentError>
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let client = connect(target, address).await.map_err(|e| AgentError {
        code: None,
        message: format!("{e:#}"),
    })?;
    let c = Call {
        client,
        address: address.to_string(),
        timeout: target.timeout,
        target: target.clone(),
    };
    let within = match limit {
        Limit::Answer => target.timeout,
        Limit::Within(d) => d,
        Limit::Stream => return call(c).await.map_err(|e| AgentError::from_call(address, e)),
    };
    match tokio::time::timeout(within, call(c)).await {
        Ok(r) => r.map_err(|e| AgentError::from_call(address, e)),
        Err(_) => Err(AgentError::timed_out(address, within)),
    }
}

/// Calls to several agents, running concurrently.
pub(crate) struct Fanout<T> {
    calls: JoinSet<Reply<T>>,
    added: usize,
}

impl<T: Send + 'static> Default for Fanout<T> {
    fn default() -> Self {
        Fanout {
            calls: JoinSet::new(),
            added: 0,
        }
    }
}

impl<T: Send + 'static> Fanout<T> {
    /// Starts calling the agent at `address` of `target` (see [`call_one`]).
    pub(crate) fn add<F, Fut>(&mut self, target: &Target, address: &str, limit: Limit, call: F)
    where
        F: FnOnce(Call) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, CallError>> + Send + 'static,
    {
        let (target, address, index) = (target.clone(), address.to_string(), self.added);
        self.added += 1;
        self.calls.spawn(async move {
            let result = call_one(&target, &address, limit, call).await;
            Reply {
                index,
                address,
                result,
            }
        });
    }

    /// The next result to complete; `None` when every call has.
    pub(crate) async fn next(&mut self) -> Option<Reply<T>> {
        loop {
            match self.calls.join_next().await? {
                Ok(reply) => return Some(reply),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Calls are never aborted; a cancelled one has nothing to report.
                Err(_) => continue,
            }
        }
    }

    /// Every result, in the order the calls were added.
    pub(crate) async fn all(mut self) -> Vec<Reply<T>> {
        let mut replies = Vec::with_capacity(self.added);
        while let Some(r) = self.next().await {
            replies.push(r);
        }
        replies.sort_by_key(|r| r.index);
        replies
    }
}

/// Calls every agent of `target` at once with `call`, each within `limit`.
pub(crate) fn for_each_agent<T, F, Fut>(target: &Target, limit: Limit, call: F) -> Fanout<T>
where
    T: Send + 'static,
    F: Fn(Call) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, CallError>> + Send + 'static,
{
    let mut fanout = Fanout::default();
    for address in &target.addresses {
        fanout.add(target, address, limit, call.clone());
    }
    fanout
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts connections and never says a word: what a stopped agent
    /// looks like (its kernel still accepts).
    async fn silent_agent() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", l.local_addr().unwrap());
        (l, address)
    }

    #[tokio::test]
    async fn a_silent_agent_is_named_within_the_timeout_and_others_still_answer() {
        let (_silent, hung) = silent_agent().await;
        // Bound, then closed: nothing listens there.
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let target = Target {
            env: "test".into(),
            addresses: vec![hung.clone(), gone.clone()],
            builtin_local: false,
            ca_pem: None,
            token: None,
            timeout: Duration::from_millis(300),
            fleet: None,
        };
        let started = std::time::Instant::now();
        let mut replies = for_each_agent(&target, Limit::Answer, |mut c: Call| async move {
            Ok(c.client.who_am_i(pb::WhoAmIRequest {}).await?.into_inner())
        });
        // The refused one first: results come as they complete, not in order.
        let first = replies.next().await.expect("a reply");
        assert_eq!(first.address, gone);
        let second = replies.next().await.expect("a reply");
        assert!(replies.next().await.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let e = second.result.expect_err("the silent agent gives no result");
        assert!(e.message.contains(&hung), "{e}");
        assert!(e.message.contains("did not answer within 300ms"), "{e}");
        assert_eq!(e.code, None);
        let e = first.result.expect_err("nothing listens");
        assert!(
            e.message.contains(&gone) && e.message.contains("does not answer"),
            "{e}"
        );
    }
}

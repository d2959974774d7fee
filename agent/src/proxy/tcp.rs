//! Plain TCP through the proxy (`proxy: tcp`): each connection goes to the least busy
//! backend that accepts it, bytes copied both ways; a new release gets new connections. A
//! route takes at most its `max_connections`; one more is closed at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::table::Route;
use super::workers::Dispatch;

const HOLD_RETRY: Duration = Duration::from_millis(25);

/// Serves `route` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: Arc<TcpListener>, route: Arc<Route>, dispatch: Dispatch) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Beyond the route's limit: closed at once (nothing to say in a protocol unknown).
        let Ok(admitted) = route.admit() else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let route = route.clone();
        dispatch.spawn(client, move |mut client| async move {
            let _admitted = admitted;
            let deadline = tokio::time::Instant::now() + route.hold();
            let mut changes = route.changes();
            loop {
                let mut tried = Vec::new();
                while let Some(backend) = route.pick(&tried) {
                    tried.push(backend.spec.addr);
                    let connected = TcpStream::connect(backend.spec.addr).await;
                    if let Ok(mut upstream) = connected {
                        if !backend.spec.accepted_by_owner(&upstream) {
                            continue;
                        }
                        let _ = upstream.set_nodelay(true);
                        let _in_flight = backend.begin();
                        let (to_app, from_app) =
                            tokio::io::copy_bidirectional(&mut client, &mut upstream)
                                .await
                                .unwrap_or_default();
                        backend.connection_closed(to_app, from_app);
                        return;
                    }
                }
                let wait =
                    HOLD_RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                if wait.is_zero() || !route.wake_if_sleeping() {
                    route.count_unavailable(None);
                    return;
                }
                let _ = tokio::time::timeout(wait, changes.changed()).await;
            }
        });
    }
}

//! The proxy process's table against the control requests: generations, sockets handed
//! over, what is persisted.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::control::{ControlReply, ControlRequest};
use super::server::Proxy;
use super::workers::Workers;
use super::{BackendSpec, RouteSpec};
use crate::spec::ProxyMode;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn route(listen: SocketAddr, backend: u16, generation: u64) -> RouteSpec {
    RouteSpec {
        listen,
        mode: ProxyMode::Http,
        backends: vec![BackendSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], backend)),
            release: u32::from(backend),
            owner: None,
        }],
        hold_timeout_ms: 100,
        name: "web".into(),
        generation,
        connections: Default::default(),
        sleeping: None,
    }
}

async fn set(proxy: &Proxy, route: RouteSpec, socket: Option<OwnedFd>) -> ControlReply {
    proxy
        .handle(ControlRequest::SetRoute { route }, socket)
        .await
        .0
}

async fn table(proxy: &Proxy) -> ControlReply {
    proxy.handle(ControlRequest::Table, None).await.0
}

#[tokio::test]
async fn nothing_older_than_what_an_address_has_is_applied() {
    let dir = scratch("generations");
    let proxy = Proxy::new(dir.join("routes.json"), Vec::new(), Workers::here());
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = socket.local_addr().unwrap();

    let r = set(&proxy, route(listen, 9001, 5), Some(OwnedFd::from(socket))).await;
    assert!(r.ok, "{r:?}");
    let late = set(&proxy, route(listen, 9002, 4), None).await;
    assert!(!late.ok && late.stale, "{late:?}");
    assert!(late.error.contains("older than 5"), "{late:?}");
    let t = table(&proxy).await;
    assert_eq!(t.pid, std::process::id());
    assert_eq!((t.table.len(), t.table[0].generation), (1, 5));
    assert_eq!(
        t.table[0].backends[0].addr.port(),
        9001,
        "the late one changed nothing"
    );

    // A removal is remembered: a late set of before it is refused too.
    let removed = proxy
        .handle(
            ControlRequest::RemoveRoute {
                listen,
                generation: 6,
            },
            None,
        )
        .await
        .0;
    assert!(removed.ok, "{removed:?}");
    assert!(set(&proxy, route(listen, 9003, 5), None).await.stale);
    let t = table(&proxy).await;
    assert!(t.table.is_empty());
    assert_eq!(t.newest, 6);

    // Newer: applied (the socket went with the removal: bound again).
    assert!(set(&proxy, route(listen, 9004, 7), None).await.ok);
    let persisted = std::fs::read_to_string(dir.join("routes.json")).unwrap();
    assert!(persisted.contains("\"generation\": 7"), "{persisted}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_listening_socket_is_handed_out_and_an_inherited_one_served() {
    let dir = scratch("sockets");
    let inherited = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = inherited.local_addr().unwrap();
    std::fs::write(
        dir.join("routes.json"),
        serde_json::to_vec(&[route(listen, 9001, 3)]).unwrap(),
    )
    .unwrap();
    let proxy = Proxy::new(dir.join("routes.json"), vec![inherited], Workers::here());
    proxy.load().await;
    assert_eq!(
        table(&proxy).await.table.len(),
        1,
        "served on the inherited socket"
    );

    let (reply, socket) = proxy
        .handle(ControlRequest::Listener { listen }, None)
        .await;
    assert!(reply.ok, "{reply:?}");
    let dup = std::net::TcpListener::from(socket.unwrap());
    assert_eq!(dup.local_addr().unwrap(), listen);
    let missing: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (reply, socket) = proxy
        .handle(ControlRequest::Listener { listen: missing }, None)
        .await;
    assert!(!reply.ok && socket.is_none());
    let _ = std::fs::remove_dir_all(dir);
}

//! The S3 backend against a real S3-compatible server: moto's standalone server
//! (scripts/test.sh installs it), started on 127.0.0.1 at a free port for each test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::state::HistoryEntry;

/// moto_server, killed (by its pid) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = std::env::var_os("DEPLOYCTL_MOTO_SERVER")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
                Some(cache.join("deployctl-tests/moto_server"))
            })
            .filter(|p| p.exists())
            .expect("moto_server is not installed: scripts/test.sh installs it (scripts/lib/tools.sh ensure_moto)");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while request(&moto.endpoint, "GET", "/") != Some(200) {
            assert!(Instant::now() < deadline, "moto did not answer on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    fn create_bucket(&self, bucket: &str) {
        assert_eq!(
            request(&self.endpoint, "PUT", &format!("/{bucket}")),
            Some(200)
        );
    }

    fn state(&self, rest: &str) -> S3State {
        let builder = AmazonS3Builder::new()
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1");
        S3State::with(builder, true, rest, Some(&self.endpoint), "").expect("an S3 state")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unsigned request (moto accepts them): its status.
fn request(endpoint: &str, method: &str, path: &str) -> Option<u16> {
    let host = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn parses_uris() {
    let b = || {
        AmazonS3Builder::new()
            .with_access_key_id("k")
            .with_secret_access_key("s")
    };
    let s = S3State::with(b(), true, "team-bucket/ml/prod/", Some("http://h:9"), "").unwrap();
    assert_eq!(s.url, "s3://team-bucket/ml/prod/state.json");
    assert_eq!(
        s.describe(),
        "s3://team-bucket/ml/prod/state.json at http://h:9"
    );
    let s = S3State::with(b(), true, "team-bucket", None, "").unwrap();
    assert_eq!(s.url, "s3://team-bucket/state.json");
    assert!(s.endpoint.starts_with("AWS S3"), "{}", s.endpoint);
    for bad in ["", "ab", "Team", "-x-", "a_b/x"] {
        let e = S3State::with(b(), true, bad, None, "").err().unwrap();
        assert!(e.contains("BUCKET"), "{bad}: {e}");
    }
    let e = S3State::with(b(), true, "bkt", Some("ftp://h"), "")
        .err()
        .unwrap();
    assert!(e.contains("not an http"), "{e}");
    let e = S3State::with(AmazonS3Builder::new(), false, "bkt", Some("http://h:9"), "")
        .err()
        .unwrap();
    assert!(
        e.contains("AWS_ACCESS_KEY_ID") && e.contains("http://h:9"),
        "{e}"
    );
}

/// 16 writers each add 10 releases to one deployment at the same time: a store or a
/// backend that ignored the conditions would lose some (moto honours them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_incrementing_ten_times_end_at_160() {
    let moto = Moto::start();
    moto.create_bucket("counter-bucket");
    let store = Arc::new(moto.state("counter-bucket/team"));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    store
                        .update(&mut |st| {
                            let d = st.deployments.entry("counter".into()).or_default();
                            let number = d.next_number();
                            d.history.push(HistoryEntry {
                                number,
                                note: format!("writer {w}"),
                                ..Default::default()
                            });
                            Ok(())
                        })
                        .await
                        .expect("an update");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("a writer");
    }
    let st = store.load().await.expect("the state");
    let history = &st.deployments["counter"].history;
    assert_eq!(history.len(), 160);
    let numbers: Vec<u32> = history.iter().map(|h| h.number).collect();
    assert_eq!(numbers, (1..=160).collect::<Vec<u32>>());
}

#[tokio::test]
async fn a_missing_bucket_and_a_bad_object_are_said_and_nothing_is_overwritten() {
    let moto = Moto::start();
    let store = moto.state("no-such-bucket/x");
    let e = format!("{:#}", store.load().await.err().unwrap());
    assert!(
        e.contains("the bucket \"no-such-bucket\" does not exist at http://127.0.0.1:"),
        "{e}"
    );
    moto.create_bucket("bad-bucket");
    let store = moto.state("bad-bucket");
    assert_eq!(store.load().await.unwrap(), State::default());
    let put = store
        .store
        .put(&store.key, b"{not json".to_vec().into())
        .await;
    put.unwrap();
    let e = format!("{:#}", store.update(&mut |_| Ok(())).await.err().unwrap());
    assert!(e.contains("is not a valid state"), "{e}");
    let kept = store.store.get(&store.key).await.unwrap().bytes().await;
    assert_eq!(&kept.unwrap()[..], b"{not json");
}

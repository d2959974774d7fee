//! A TCP relay in the test process between `deployctl` and an agent, which can break every
//! connection through it at once: a network that drops a deploy's stream while the agent
//! carries on. (Threads, not processes: nothing to clean up by pid.)

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Relays connections on its own address to `target`.
pub struct Relay {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on `ip:0` and relays each connection to `target`.
    pub fn start(ip: &str, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind((ip, 0)).expect("binding the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(agent) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(c1), Ok(a1)) = (client.try_clone(), agent.try_clone()) else {
                    continue;
                };
                if let Ok(mut list) = c.lock() {
                    list.extend(client.try_clone());
                    list.extend(agent.try_clone());
                }
                std::thread::spawn(move || pump(c1, a1));
                std::thread::spawn(move || pump(agent, client));
            }
        });
        Relay { addr, conns, stop }
    }

    /// The address for `deployctl declare env agent NAME --address ...`.
    pub fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Breaks every connection through it now; later ones are relayed again.
    pub fn cut(&self) {
        if let Ok(mut list) = self.conns.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread, which sees the stop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` until either ends.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

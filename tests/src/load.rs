//! A client that calls a URL in a loop (a new connection each time) while a test redeploys,
//! removes or kills things: every answer that was not a 200 is kept, with the `marker`s of
//! the app's answers in the order they changed. Refused connections (nothing listened on
//! the port) are counted apart from other failures, and so is the longest time between two
//! answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{http_get_or_why, wait_until, NoAnswer};

/// Calls `url` in a loop (a new connection each time) until stopped: how many answers
/// were 200, which failed (and how), and the markers seen in order.
pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default, Debug)]
pub struct Seen {
    pub ok: usize,
    pub failed: Vec<String>,
    pub markers: Vec<String>,
    /// Connections refused (also in `failed`).
    pub refused: usize,
    /// The longest time from one successful answer to the next.
    pub longest_gap: Duration,
    last_ok: Option<Instant>,
}

impl Load {
    pub fn start(url: &str) -> Load {
        let (stop, seen) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Seen::default())),
        );
        let (s, n, url) = (stop.clone(), seen.clone(), url.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let answer = http_get_or_why(&url);
                let mut seen = n.lock().unwrap();
                match answer {
                    Ok((200, body)) => {
                        let marker = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["marker"].as_str().map(str::to_string));
                        match marker {
                            Some(marker) => {
                                seen.ok += 1;
                                let now = Instant::now();
                                if let Some(last) = seen.last_ok {
                                    seen.longest_gap = seen.longest_gap.max(now - last);
                                }
                                seen.last_ok = Some(now);
                                if seen.markers.last() != Some(&marker) {
                                    seen.markers.push(marker);
                                }
                            }
                            // Cut short (the app died while answering): not an answer.
                            None => seen.failed.push(format!(
                                "200 without the app's JSON: {:?}",
                                body.chars().take(80).collect::<String>()
                            )),
                        }
                    }
                    Ok((status, body)) => seen.failed.push(format!("{status} {body}")),
                    Err(NoAnswer::Refused) => {
                        seen.refused += 1;
                        seen.failed.push("refused".into());
                    }
                    Err(NoAnswer::Other(why)) => seen.failed.push(format!("no answer: {why}")),
                }
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    pub fn ok(&self) -> usize {
        self.seen.lock().unwrap().ok
    }

    /// The calls that failed so far.
    pub fn failures(&self) -> usize {
        self.seen.lock().unwrap().failed.len()
    }

    /// The last marker seen so far.
    pub fn last_marker(&self) -> Option<String> {
        self.seen.lock().unwrap().markers.last().cloned()
    }

    /// Waits for `n` more successful calls.
    pub fn wait_for(&self, n: usize) {
        let target = self.ok() + n;
        assert!(
            wait_until(Duration::from_secs(20), || self.ok() >= target),
            "the load made no progress: {:?}",
            self.seen.lock().unwrap()
        );
    }

    pub fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

//! The two halves of a client connection's task, the client's side (hyper's server) and the
//! app's side (its backend connection), each polled only when something woke it, and what
//! woke it during a poll waits for the next one. So a request the client's side hands the
//! app's side is written at the task's next turn, after the other connections woken
//! meanwhile had theirs, and the same for an answer on its way back: the writes of a round
//! of ready connections go out together, as from an event loop that reads everything ready
//! before it writes (HAProxy's), and the app (and the client) wake once for several. Each
//! half also skips the readiness checks of a poll it did not need.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A half's waker: marks it woken, then wakes the task.
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Flag {
    fn new() -> Arc<Flag> {
        Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        })
    }

    fn task_is(&self, waker: &Waker) {
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(waker.clone());
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = task.as_ref() {
            t.wake_by_ref();
        }
    }
}

/// Resolves when the client's side `served` does; `driven` (the app's side) never does.
pub(super) struct Halves<S, D> {
    served: S,
    driven: D,
    served_flag: Arc<Flag>,
    driven_flag: Arc<Flag>,
    served_waker: Waker,
    driven_waker: Waker,
    /// The task's waker the flags have (the same at every poll, under tokio).
    task: Option<Waker>,
}

impl<S, D> Halves<S, D>
where
    S: Future + Unpin,
    D: Future<Output = ()> + Unpin,
{
    pub(super) fn new(served: S, driven: D) -> Halves<S, D> {
        let (served_flag, driven_flag) = (Flag::new(), Flag::new());
        Halves {
            served,
            driven,
            served_waker: Waker::from(served_flag.clone()),
            driven_waker: Waker::from(driven_flag.clone()),
            served_flag,
            driven_flag,
            task: None,
        }
    }
}

impl<S, D> Future for Halves<S, D>
where
    S: Future + Unpin,
    D: Future<Output = ()> + Unpin,
{
    type Output = S::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Output> {
        let this = &mut *self;
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            this.served_flag.task_is(cx.waker());
            this.driven_flag.task_is(cx.waker());
            this.task = Some(cx.waker().clone());
        }
        // What was woken before this turn; what this turn wakes waits for the next.
        let served = this.served_flag.woken.swap(false, Ordering::Acquire);
        let driven = this.driven_flag.woken.swap(false, Ordering::Acquire);
        if driven {
            let mut cx = Context::from_waker(&this.driven_waker);
            let _ = Pin::new(&mut this.driven).poll(&mut cx);
        }
        if served {
            let mut cx = Context::from_waker(&this.served_waker);
            if let Poll::Ready(out) = Pin::new(&mut this.served).poll(&mut cx) {
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and is ready at the `n`th, waking itself until then.
    struct Counting {
        polls: Arc<AtomicUsize>,
        ready_at: usize,
    }

    impl Future for Counting {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.ready_at {
                return Poll::Ready(n);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn each_half_is_polled_when_woken_and_the_client_side_ends_it() {
        let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let served = Counting {
            polls: a.clone(),
            ready_at: 3,
        };
        let driven = std::future::poll_fn({
            let b = b.clone();
            move |_| {
                b.fetch_add(1, Ordering::SeqCst);
                Poll::<()>::Pending
            }
        });
        let out = Halves::new(served, Box::pin(driven)).await;
        assert_eq!(out, 3);
        // The app's side was polled once (at the start): nothing woke it after.
        assert_eq!(b.load(Ordering::SeqCst), 1);
    }
}

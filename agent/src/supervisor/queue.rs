//! Work for one of the agent's own tasks: whoever notices something sends it (an instance's
//! observer), the task that does it takes the receiver once when it starts.

use std::sync::Mutex;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub(crate) struct Queue<T> {
    tx: UnboundedSender<T>,
    rx: Mutex<Option<UnboundedReceiver<T>>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        let (tx, rx) = unbounded_channel();
        Queue {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl<T> Queue<T> {
    pub(crate) fn sender(&self) -> UnboundedSender<T> {
        self.tx.clone()
    }

    pub(crate) fn send(&self, item: T) {
        let _ = self.tx.send(item);
    }

    /// The receiver, for the one task that does the work (`None` after the first time).
    pub(crate) fn take(&self) -> Option<UnboundedReceiver<T>> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

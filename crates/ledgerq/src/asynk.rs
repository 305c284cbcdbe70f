//! Async consumption (feature `async`): a future per dequeue and a `Stream` of
//! messages, woken by producers' commits through wakers. No runtime is needed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::observe;
use crate::queue::Queue;

impl Queue {
    /// A future that resolves to the next message, waiting (without a thread) for one
    /// to be committed; `Err(Error::Closed)` if the queue is closed meanwhile.
    ///
    /// Works with any executor: the future registers its waker, and the next commit
    /// (or `close`) wakes it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = ledgerq::Queue::open(dir.path())?;
    /// q.enqueue(b"hi")?;
    /// let m = futures::executor::block_on(q.dequeue_async())?;
    /// assert_eq!(m.payload(), b"hi");
    /// # Ok(())
    /// # }
    /// ```
    pub fn dequeue_async(&self) -> Dequeue<'_> {
        Dequeue {
            queue: self,
            waiting: false,
            sampled: None,
        }
    }

    /// A `futures::Stream` of messages; it ends when the queue is closed.
    pub fn stream_async(&self) -> MessageStream<'_> {
        MessageStream {
            next: self.dequeue_async(),
        }
    }
}

/// The future of [`Queue::dequeue_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Dequeue<'a> {
    queue: &'a Queue,
    /// Whether this future counts as a parked consumer (producers then wake).
    waiting: bool,
    /// Whether the message being waited for is timed for the latency histogram: decided
    /// at its first attempt (one operation for the sampling, however many polls it
    /// takes), cleared when it is returned (a stream waits for the next one).
    sampled: Option<bool>,
}

impl Dequeue<'_> {
    fn set_waiting(&mut self, on: bool) {
        if self.waiting != on {
            self.waiting = on;
            self.queue.inner.async_waiting(on);
        }
    }
}

impl Future for Dequeue<'_> {
    type Output = Result<Message>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.queue.inner.clone();
        loop {
            if let Err(e) = inner.check_open() {
                self.set_waiting(false);
                self.sampled = None;
                return Poll::Ready(Err(e));
            }
            if self.waiting {
                // Registered before the attempt: a commit after the attempt's read
                // finds this waker and wakes us (see `Inner::async_waiting`).
                inner.register_waker(cx.waker());
            }
            // Times the attempt that returns, not the wait before it.
            let sampled = *self
                .sampled
                .get_or_insert_with(|| observe::sample(observe::Op::Dequeue).is_some());
            let t = sampled.then(std::time::Instant::now);
            match inner.dequeue_one() {
                Ok(Some(m)) => {
                    self.set_waiting(false);
                    self.sampled = None;
                    observe::record(&inner, observe::Op::Dequeue, t);
                    return Poll::Ready(Ok(m));
                }
                Err(e) => {
                    self.set_waiting(false);
                    self.sampled = None;
                    observe::record(&inner, observe::Op::Dequeue, t);
                    return Poll::Ready(Err(e));
                }
                Ok(None) if self.waiting => return Poll::Pending,
                // Count as parked, then register and try again.
                Ok(None) => self.set_waiting(true),
            }
        }
    }
}

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

/// The stream of [`Queue::stream_async`].
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct MessageStream<'a> {
    next: Dequeue<'a>,
}

impl Stream for MessageStream<'_> {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.next).poll(cx) {
            Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

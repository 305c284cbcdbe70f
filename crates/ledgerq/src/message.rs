//! A delivered message.

use std::time::SystemTime;

use crate::enqueue::Priority;

/// A message taken from a queue: its ID, payload, options and delivery facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(crate) id: u64,
    pub(crate) payload: Vec<u8>,
    pub(crate) timestamp: SystemTime,
    pub(crate) delivery_count: u32,
    pub(crate) priority: Priority,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Message {
    /// The message's ID: unique in its queue, increasing in enqueue order.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The payload bytes (decompressed if the message was stored compressed).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, without a copy.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// When the message was enqueued.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// How many times this message has been delivered, this delivery included
    /// (1 on first delivery; higher after `nack`, an expired lease or a restart in
    /// manual-ack mode).
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// The message's priority ([`Priority::Low`] unless enqueued with another).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// When the message expires, if it was enqueued with a TTL.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The headers, in the order they were given.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

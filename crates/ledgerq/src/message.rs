//! A delivered message.

use std::time::SystemTime;

/// A message taken from a queue: its ID, payload and delivery facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(crate) id: u64,
    pub(crate) payload: Vec<u8>,
    pub(crate) timestamp: SystemTime,
    pub(crate) delivery_count: u32,
}

impl Message {
    /// The message's ID: unique in its queue, increasing in enqueue order.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The payload bytes.
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
}

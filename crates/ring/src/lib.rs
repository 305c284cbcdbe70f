//! A bounded, lock-free multi-producer multi-consumer ring.

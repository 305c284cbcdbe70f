//! Headers: ordered key/value pairs carried with a message, and their limits.
//!
//! Run with `cargo run -p ledgerq --example headers`.

use ledgerq::{EnqueueOptions, Error, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    q.enqueue_with(
        br#"{"order": 42}"#,
        &EnqueueOptions::new()
            .header("content-type", "application/json")
            .header("trace-id", "4bf92f3577b34da6")
            .header("tenant", "acme"),
    )?;
    let m = q.dequeue()?.expect("a message");
    println!("payload: {}", String::from_utf8_lossy(m.payload()));
    for (k, v) in m.headers() {
        println!("  {k}: {v}");
    }
    println!("content-type = {:?}", m.header("content-type"));

    // Over the limits: a typed error, and nothing is written.
    let too_many = (0..65).fold(EnqueueOptions::new(), |o, i| o.header(format!("k{i}"), "v"));
    match q.enqueue_with("x", &too_many) {
        Err(Error::TooManyHeaders { count, max }) => {
            println!("rejected: {count} headers (at most {max})")
        }
        other => return Err(format!("expected TooManyHeaders, got {other:?}").into()),
    }
    println!("pending after the rejected enqueue: {}", q.stats().pending);
    q.close()?;
    Ok(())
}

//! The `ledgerq` command-line tool.

fn main() {
    println!("ledgerq {}", env!("CARGO_PKG_VERSION"));
}

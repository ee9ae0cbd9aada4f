fn main() {
    println!("kiln-agent {} (the agent arrives with its own issue)", env!("CARGO_PKG_VERSION"));
}

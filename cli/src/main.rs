fn main() {
    println!("kiln {} (the CLI arrives with its own issue)", env!("CARGO_PKG_VERSION"));
}

fn main() { println!("kiln-agent {}", env!("CARGO_PKG_VERSION")); }

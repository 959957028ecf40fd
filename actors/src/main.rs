fn main() {
    println!("pinion {}", env!("CARGO_PKG_VERSION"));
}

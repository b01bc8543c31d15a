fn main() {
    // The admin pages' messages are compiled in: a new or removed file under locales/ rebuilds.
    println!("cargo:rerun-if-changed=locales");
}

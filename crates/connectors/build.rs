//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds them at build
//! time, and Cargo does not watch them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

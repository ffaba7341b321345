// `sqlx::migrate!` embeds infra/migrations at compile time, but cargo does not know to
// rebuild when a migration file is added there: tell it.
fn main() {
    println!("cargo:rerun-if-changed=../infra/migrations");
}

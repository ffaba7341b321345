//! Test support for every crate that needs the schema: a fresh, migrated database per
//! test on the real Postgres, dropped when the guard goes out of scope (even when the
//! test panicked), so tests run in parallel and leave nothing behind.

use sqlx::PgPool;

/// The server tests create their databases on (`DATABASE_URL`'s server, or local).
fn server_url() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match url.rsplit_once('/') {
        Some((server, _db)) => server.to_owned(),
        None => url,
    }
}

pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub url: String,
    server: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server_url();
        // The name is ours (a uuid), not input: safe to splice.
        let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
        crate::db::create_database(&server, &name)
            .await
            .expect("create test database");
        let url = format!("{server}/{name}");
        let pool = crate::db::connect(&url, 20)
            .await
            .expect("connect to test database");
        crate::db::migrate(&pool)
            .await
            .expect("migrate test database");
        Self {
            pool,
            name,
            url,
            server,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await, and FORCE ends the pool's connections.
        crate::blocking::block_on_own_thread(async move {
            let _ = crate::db::drop_database(&server, &name).await;
        });
    }
}

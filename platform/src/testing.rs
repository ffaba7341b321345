//! Test support for every crate that needs the schema: a fresh, migrated database per
//! test on the real Postgres, dropped when the guard goes out of scope (even when the
//! test panicked), so tests run in parallel and leave nothing behind.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

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
        let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{server}/postgres"))
            .await
            .expect("connect to postgres");
        // The name is ours (a uuid), not input: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
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
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop cannot await; a short-lived runtime on its own thread does the clean-up,
        // and FORCE ends the pool's connections.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(admin) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&format!("{server}/postgres"))
                    .await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
            });
        })
        .join();
    }
}

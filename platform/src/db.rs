//! The Postgres pool and the migrations every process applies at start-up.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Migrations are shared by every service (one schema, one folder).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../infra/migrations");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Creates the database `name` on `server` (`postgres://user@host:port`, no database).
/// The name is spliced into the statement: it must be ours (a uuid, say), never input.
pub async fn create_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    on_the_server(server, &format!("CREATE DATABASE {name}")).await
}

/// Drops the database `name` on `server` if it is there, ending whatever connections it
/// still has. The name is spliced, as in [`create_database`].
pub async fn drop_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    on_the_server(
        server,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
}

/// Runs `statement` on the server's `postgres` database, over a connection of its own.
async fn on_the_server(server: &str, statement: &str) -> Result<(), sqlx::Error> {
    let admin = connect(&format!("{server}/postgres"), 1).await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&admin)
        .await;
    admin.close().await;
    done.map(|_| ())
}

/// Text Postgres cannot store (a NUL in `text`, `\u0000` in `jsonb`): input that got
/// past the parsers because any string was allowed, so the client's fault, not ours.
/// The last line of defence for every free-text field, the way the CHECKs are for counts.
pub fn is_unstorable_text(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if matches!(d.code().as_deref(), Some("22021" | "22P05")))
}

/// Why a service could not get its database at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("connecting to Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// A pool of `max_connections` on a database migrated to the current schema: what every
/// service does first.
pub async fn connect_migrated(url: &str, max_connections: u32) -> Result<PgPool, SetupError> {
    let pool = connect(url, max_connections)
        .await
        .map_err(SetupError::Connect)?;
    migrate(&pool).await.map_err(SetupError::Migrate)?;
    Ok(pool)
}

/// How far a read replica is behind its primary: `None` on a primary, zero when it
/// has replayed all it received, else the age of the last transaction it replayed.
/// (The age alone would read as lag on a quiet but current replica.)
pub async fn replica_lag(pool: &PgPool) -> Result<Option<Duration>, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL
                     WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                END",
    )
    .fetch_one(pool)
    .await?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// The readiness probe's database check.
pub async fn reachable(pool: &PgPool) -> Result<(), &'static str> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|_| "database unreachable")
}

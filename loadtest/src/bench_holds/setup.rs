//! What every case stands on: the guard that keeps the bench on this machine, scratch
//! databases that drop themselves, the benchmarked event and its buyers.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use sqlx::PgPool;
use uuid::Uuid;

pub(super) const NAME: &str = "Ada Lovelace";

/// Each benchmarked hold is a different buyer, as in an on-sale: one e-mail would meet
/// the per-buyer cap after a few holds.
pub(super) fn buyer_email(seq: impl std::fmt::Display) -> String {
    format!("buyer-{seq}@example.org")
}

/// Capacity set on the benchmarked tier (the event API caps new tiers at a million).
const HUGE_CAPACITY: i32 = 2_000_000_000;

/// The bench only ever talks to this machine.
pub(super) fn only_loopback(what: &str, url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{what} {url:?}"))?;
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        other => bail!("{what} must point at 127.0.0.1, not {other:?}"),
    }
}

/// `postgres://user@host:port/db` → `postgres://user@host:port`.
pub(super) fn server_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.rsplit_once('/') {
        Some((server, _db)) if server.contains("//") && !server.ends_with('/') => server.to_owned(),
        _ => url.trim_end_matches('/').to_owned(),
    }
}

pub(super) async fn server_settings(server: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let admin = admin_pool(server).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
           ('server_version', 'synchronous_commit', 'fsync', 'wal_sync_method',
            'commit_delay', 'shared_buffers', 'max_connections', 'full_page_writes')",
    )
    .fetch_all(&admin)
    .await
    .context("reading server settings")?;
    admin.close().await;
    Ok(rows.into_iter().collect())
}

async fn admin_pool(server: &str) -> anyhow::Result<PgPool> {
    platform::db::connect(&format!("{server}/postgres"), 1)
        .await
        .with_context(|| format!("connecting to {server}/postgres"))
}

/// A scratch database, dropped (with its connections) when this value is dropped —
/// on success, on error and on unwinding alike.
pub(super) struct ScratchDb {
    pool: Option<PgPool>,
    name: String,
    pub(super) url: String,
    server: String,
}

impl ScratchDb {
    pub(super) async fn create(
        server: &str,
        migrate: bool,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        // The name is ours (a uuid), not input: safe to splice.
        let name = format!("fg_bench_{}", Uuid::new_v4().simple());
        platform::db::create_database(server, &name)
            .await
            .with_context(|| format!("creating a scratch database on {server}"))?;
        // From here on the guard exists, so a failure below still drops the database.
        let mut db = Self {
            pool: None,
            url: format!("{server}/{name}"),
            name,
            server: server.to_owned(),
        };
        let pool = platform::db::connect(&db.url, max_connections)
            .await
            .context("connecting to the scratch database")?;
        if migrate {
            platform::db::migrate(&pool)
                .await
                .context("migrating the scratch database")?;
        }
        db.pool = Some(pool);
        Ok(db)
    }

    pub(super) fn pool(&self) -> &PgPool {
        self.pool.as_ref().expect("pool is set once created")
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (server, name, pool) = (self.server.clone(), self.name.clone(), self.pool.take());
        // Drop cannot await; FORCE ends whatever connections are left.
        platform::blocking::block_on_own_thread(async move {
            drop(pool);
            if let Err(e) = platform::db::drop_database(&server, &name).await {
                eprintln!("warning: could not drop scratch database {name}: {e}");
            }
        });
    }
}

/// CHECKPOINT before each case so none of them pays for another's dirty pages.
pub(super) async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        eprintln!("warning: CHECKPOINT failed ({e}); continuing");
    }
}

/// One event (queue on) with one tier `ga` whose capacity is then made huge.
pub(super) async fn create_event(pool: &PgPool, slug: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let req: orders::events::NewEventRequest = serde_json::from_value(serde_json::json!({
        "slug": slug, "title": format!("Bench {slug}"),
        "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "tiers": [{"code": "ga", "name": "General admission", "price_cents": 2500,
                   "currency": "EUR", "capacity": 1_000_000, "max_per_order": 10}],
        "queue": {"mode": "on", "rate_per_minute": 600, "max_active": 5000}
    }))?;
    let new = req.parse()?;
    let mut tx = pool.begin().await?;
    let event = orders::events::create(&mut tx, &new).await?;
    tx.commit().await?;
    let tier: Uuid = sqlx::query_scalar(
        "UPDATE tiers SET capacity = $2 WHERE event_id = $1 AND code = 'ga' RETURNING id",
    )
    .bind(event.id)
    .bind(HUGE_CAPACITY)
    .fetch_one(pool)
    .await?;
    Ok((event.id, tier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_drops_the_database() {
        assert_eq!(
            server_url("postgres://postgres@127.0.0.1:5432/floodgate"),
            "postgres://postgres@127.0.0.1:5432"
        );
        assert_eq!(
            server_url("postgres://postgres@127.0.0.1:5432"),
            "postgres://postgres@127.0.0.1:5432"
        );
    }

    #[test]
    fn only_this_machine() {
        assert!(only_loopback("db", "postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(only_loopback("redis", "redis://localhost:6379").is_ok());
        assert!(only_loopback("db", "postgres://postgres@db.example.org/x").is_err());
    }
}

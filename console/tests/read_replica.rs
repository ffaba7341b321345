//! The console's second pool: search and the live figures read `DATABASE_READ_URL`
//! when it is set. Here it points at the test's own database (a primary), which the
//! console must treat as a replica that is never behind; on `infra/cluster` it is the
//! async replica (5443).

mod support;

use reqwest::StatusCode;

#[tokio::test]
async fn search_reads_the_configured_read_database() {
    let c = support::spawn_with(|config| {
        // The same database by another connection string: a separate pool.
        let url = format!("{}?application_name=console-reads", config.database_url);
        config.database_read_url = Some(url);
    })
    .await;
    assert!(c.state.reads_replica);
    support::seed_event(&c.db, "gig", 3, 1).await;
    let r = c
        .get("/console/api/search?q=buyer2%40example.org", &c.operator)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let hits: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    // The search went through the read pool.
    let reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'console-reads'",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap();
    assert!(reads >= 1, "no connection of the read pool");
    // A primary is not behind anything.
    assert_eq!(
        platform::db::replica_lag(&c.state.reads).await.unwrap(),
        None
    );
}

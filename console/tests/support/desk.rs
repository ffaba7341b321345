//! The support desk's console: what the desk and event-page tests start from.

use std::ops::Deref;

use uuid::Uuid;

use super::TestConsole;

/// A console with the three sign-in accounts ([`super::create_operators`]), the event
/// "big" with `buyers` paid orders (`buyer1@example.org` on) and "other" with three
/// (`buyer1001@` to `buyer1003@`). The host — its token and its account — sees "other"
/// only.
pub struct Desk {
    pub console: TestConsole,
    pub other_event: Uuid,
}

impl Desk {
    pub async fn spawn(buyers: i32) -> Desk {
        let console = super::spawn().await;
        let db = &console.db;
        super::create_operators(db).await;
        super::seed_event(db, "big", buyers, 1).await;
        let other_event = super::seed_event(db, "other", 3, 1001).await;
        // The host may see the other event only: with its token and with its session.
        sqlx::query(
            "WITH token AS (UPDATE operator_tokens SET event_ids = ARRAY[$1]::uuid[] WHERE id = $2)
             UPDATE operators SET event_ids = ARRAY[$1]::uuid[] WHERE role = 'host'",
        )
        .bind(other_event)
        .bind(console.host_id)
        .execute(&db.pool)
        .await
        .unwrap();
        Desk {
            console,
            other_event,
        }
    }
}

/// The desk is its console with two events in it: `d.url(..)`, `d.admin`, `d.db`.
impl Deref for Desk {
    type Target = TestConsole;

    fn deref(&self) -> &TestConsole {
        &self.console
    }
}

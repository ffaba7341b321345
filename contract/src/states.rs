//! The states holds, orders, tickets, events, refunds and e-mails are in, as types. The
//! database names each state in a CHECK (`infra/migrations`); each enum here carries
//! the same words, written once (its variants' database, JSON and display spelling), so
//! code compares states, never strings, and a typo is a compile error instead of a
//! branch that never runs.

use serde::{Deserialize, Serialize};

/// An enum of states stored as text, its words given once per variant.
macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[sqlx(type_name = "text")]
        pub enum $name {
            $(
                #[sqlx(rename = $word)]
                #[serde(rename = $word)]
                $variant,
            )+
        }

        impl $name {
            /// Every state, in the order of its life.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The state's word (as stored, as in the API).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states! {
    /// A hold: `active → converted | expired | released`.
    HoldStatus {
        Active = "active",
        Converted = "converted",
        Expired = "expired",
        Released = "released",
    }
}

states! {
    /// An order: `pending_payment → paid → (partially_)refunded | cancelled`; an order
    /// cancelled before it was paid keeps `paid_at` empty.
    OrderStatus {
        PendingPayment = "pending_payment",
        Paid = "paid",
        PartiallyRefunded = "partially_refunded",
        Refunded = "refunded",
        Cancelled = "cancelled",
    }
}

impl OrderStatus {
    /// Paid and not wholly refunded: its tickets may be used, moved or refunded.
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Paid | Self::PartiallyRefunded)
    }
}

states! {
    /// A ticket: `valid → transferred | revoked | refunded`.
    TicketStatus {
        Valid = "valid",
        Transferred = "transferred",
        Revoked = "revoked",
        Refunded = "refunded",
    }
}

states! {
    /// An event: `scheduled → cancelled`.
    EventStatus {
        Scheduled = "scheduled",
        Cancelled = "cancelled",
    }
}

states! {
    /// A refund: `pending → succeeded | failed`.
    RefundStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

states! {
    /// An e-mail: `queued → sent | failed | bounced`.
    DeliveryStatus {
        Queued = "queued",
        Sent = "sent",
        Failed = "failed",
        Bounced = "bounced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state's word is what the database stores and gives back, and what its
    /// table's CHECK allows.
    #[tokio::test]
    async fn states_are_the_databases_words() {
        let db = platform::testing::TestDb::new().await;
        async fn check<S>(db: &sqlx::PgPool, table: &str, column: &str, all: &[S])
        where
            S: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + Send + Sync + Unpin,
            S: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Encode<'static, sqlx::Postgres>,
            S: sqlx::Type<sqlx::Postgres> + 'static,
        {
            let check: String = sqlx::query_scalar(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 WHERE t.relname = $1 AND c.contype = 'c'
                   AND pg_get_constraintdef(c.oid) LIKE '%' || $2 || '%'
                 LIMIT 1",
            )
            .bind(table)
            .bind(format!("({column}"))
            .fetch_one(db)
            .await
            .unwrap_or_else(|e| panic!("{table}.{column}: {e}"));
            for &state in all {
                let word = state.to_string();
                assert!(
                    check.contains(&format!("'{word}'")),
                    "{table}: {word} not in {check}"
                );
                let back: S = sqlx::query_scalar("SELECT $1::text")
                    .bind(word.clone())
                    .fetch_one(db)
                    .await
                    .unwrap();
                assert_eq!(back, state);
                let written: String = sqlx::query_scalar("SELECT $1::text")
                    .bind(state)
                    .fetch_one(db)
                    .await
                    .unwrap();
                assert_eq!(written, word);
            }
        }
        check(&db.pool, "holds", "status", HoldStatus::ALL).await;
        check(&db.pool, "orders", "status", OrderStatus::ALL).await;
        check(&db.pool, "tickets", "status", TicketStatus::ALL).await;
        check(&db.pool, "events", "status", EventStatus::ALL).await;
        check(&db.pool, "refunds", "status", RefundStatus::ALL).await;
        check(&db.pool, "deliveries", "status", DeliveryStatus::ALL).await;
    }

    #[test]
    fn the_api_spells_states_as_the_database() {
        assert_eq!(
            serde_json::to_value(OrderStatus::PartiallyRefunded).unwrap(),
            "partially_refunded"
        );
        assert_eq!(OrderStatus::PendingPayment.to_string(), "pending_payment");
    }
}

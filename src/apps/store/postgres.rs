//! The PostgreSQL store. One connection (TLS as `sslmode` says, see `postgres_tls`), opened
//! again after it breaks; every call has a deadline, so a database that stops answering is an
//! error, not a hang.

use std::{sync::Arc, time::Duration};

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::{
    schema::{Row, MIGRATIONS},
    StoreError,
};

pub struct Postgres {
    config: tokio_postgres::Config,
    tls: super::postgres_tls::Rustls,
    client: Mutex<Option<Arc<Client>>>,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Any number that is poxide's own: migrations of two nodes starting together take turns.
const MIGRATION_LOCK: i64 = 0x706f_7869_6465;

impl Postgres {
    pub async fn open(config: tokio_postgres::Config) -> Result<Postgres, StoreError> {
        let store = Postgres {
            config,
            tls: super::postgres_tls::Rustls::with_system_roots(),
            client: Mutex::new(None),
        };
        let found = store
            .with_client(|c| async move {
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS poxide_schema_migrations (
                        version BIGINT PRIMARY KEY,
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                    )",
                )
                .await?;
                c.batch_execute("BEGIN").await?;
                let migrated = async {
                    c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                        .await?;
                    let current: Option<i64> = c
                        .query_one("SELECT MAX(version) FROM poxide_schema_migrations", &[])
                        .await?
                        .get(0);
                    let current = current.unwrap_or(0);
                    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
                        c.batch_execute(m.postgres).await?;
                        c.execute(
                            "INSERT INTO poxide_schema_migrations (version) VALUES ($1)",
                            &[&m.version],
                        )
                        .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(current)
                }
                .await;
                match migrated {
                    Ok(current) => {
                        c.batch_execute("COMMIT").await?;
                        Ok(current)
                    }
                    Err(e) => {
                        let _ = c.batch_execute("ROLLBACK").await;
                        Err(e)
                    }
                }
            })
            .await?;
        super::check_version(found)?;
        Ok(store)
    }

    /// Runs `work` on the connection, connecting first if there is none (or it broke).
    async fn with_client<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let call = async {
            let mut slot = self.client.lock().await;
            let client = match slot.as_ref() {
                Some(c) if !c.is_closed() => c.clone(),
                _ => {
                    let (client, connection) = self.config.connect(self.tls.clone()).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("apps database connection ended: {e}");
                        }
                    });
                    let client = Arc::new(client);
                    *slot = Some(client.clone());
                    client
                }
            };
            drop(slot);
            work(client).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::Conflict(e.to_string()))
            }
            Ok(Err(e)) => {
                *self.client.lock().await = None;
                Err(StoreError::Unavailable(with_causes(&e)))
            }
            Err(_) => {
                *self.client.lock().await = None;
                Err(StoreError::Unavailable(format!(
                    "no answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    pub async fn revision(&self) -> Result<i64, StoreError> {
        self.with_client(|c| async move {
            Ok(
                c.query_one("SELECT revision FROM poxide_apps_revision", &[])
                    .await?
                    .get(0),
            )
        })
        .await
    }

    /// Every row, or the one with `id`.
    pub async fn rows(&self, id: Option<String>) -> Result<Vec<Row>, StoreError> {
        self.with_client(|c| async move {
            let rows = c
                .query(
                    "SELECT id, key, secret, enabled, settings::text FROM poxide_apps \
                     WHERE $1::text IS NULL OR id = $1 ORDER BY id",
                    &[&id],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| Row {
                    id: r.get(0),
                    key: r.get(1),
                    secret: r.get(2),
                    enabled: r.get(3),
                    settings: r.get(4),
                })
                .collect())
        })
        .await
    }

    pub async fn insert(&self, row: Row) -> Result<(), StoreError> {
        self.with_client(|c| async move {
            c.execute(
                "INSERT INTO poxide_apps (id, key, secret, enabled, settings) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                &[&row.id, &row.key, &row.secret, &row.enabled, &row.settings],
            )
            .await
            .map(drop)
        })
        .await
    }

    pub async fn update(&self, row: Row) -> Result<bool, StoreError> {
        self.with_client(|c| async move {
            c.execute(
                "UPDATE poxide_apps SET key = $2, secret = $3, enabled = $4, \
                 settings = $5::text::jsonb WHERE id = $1",
                &[&row.id, &row.key, &row.secret, &row.enabled, &row.settings],
            )
            .await
            .map(|n| n > 0)
        })
        .await
    }

    pub async fn remove(&self, id: String) -> Result<bool, StoreError> {
        self.with_client(|c| async move {
            c.execute("DELETE FROM poxide_apps WHERE id = $1", &[&id])
                .await
                .map(|n| n > 0)
        })
        .await
    }
}

/// The driver's message and its causes ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the first alone rarely says what to fix.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

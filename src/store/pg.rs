//! The state tables in PostgreSQL: a few connections used from any thread, the schema brought up to date
//! by numbered migrations (`migrations/*.sql`, applied once each under an advisory lock, so servers
//! starting together migrate once), and the key-value operations [`super::Table`] needs.
//!
//! A connection that breaks is dropped and made again on the next call: while the database is down every
//! call fails with `store_unavailable` (HTTP 503 with the reason) and the server recovers by itself when
//! it comes back.
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::error::{Error, ErrorKind, Result};

/// The schema's migrations, in order: (version, name, SQL). Never edit one that has shipped; add another.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "tables",
        include_str!("../../migrations/0001_tables.sql"),
    ),
    (2, "queue", include_str!("../../migrations/0002_queue.sql")),
];

/// An arbitrary constant naming faculty's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x6661_6375_6c74;

/// Connections kept open per process (each call takes one; a busy one is skipped).
const CONNECTIONS: usize = 4;

/// A PostgreSQL database holding faculty's tables.
pub struct Pg {
    config: postgres::Config,
    /// `host:port/dbname` for messages (never the password).
    target: String,
    /// Connections, each with the generation it was made in.
    slots: Vec<Mutex<Option<(Client, u64)>>>,
    next: AtomicUsize,
    /// Bumped when a connection breaks: the others were made before the break and are likely dead too,
    /// so each is made again on its next use instead of failing one more request.
    generation: AtomicU64,
}

impl Pg {
    /// Connects, makes the schema named by `?schema=` if given, and migrates. A server that cannot be
    /// reached is a `store_unavailable` error.
    pub fn connect(url: &str) -> Result<Self> {
        let (url, schema) = split_schema(url)?;
        let mut config: postgres::Config = url.parse().map_err(|e| {
            Error::invalid_input(format!("database URL is not a PostgreSQL URL: {e}"))
        })?;
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(30))
            .application_name("faculty");
        if let Some(s) = &schema {
            config.options(&format!("-c search_path={s}"));
        }
        let target = format!(
            "{}:{}/{}",
            config
                .get_hosts()
                .first()
                .map(|h| match h {
                    postgres::config::Host::Tcp(s) => s.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default(),
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("")
        );
        let pg = Self {
            config,
            target,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        };
        pg.run(move |c| migrate(c, schema.as_deref()))?;
        Ok(pg)
    }

    /// Runs `f` on a connection, off any async runtime (the client blocks on a runtime of its own), making
    /// the connection first when there is none or the last one broke.
    fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error> + Send,
    ) -> Result<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let mut slot = (0..n)
            .find_map(|i| self.slots[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.slots[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        let slot: &mut Option<(Client, u64)> = &mut slot;
        let work = move || {
            let generation = self.generation.load(Ordering::SeqCst);
            if slot
                .as_ref()
                .is_none_or(|(c, g)| c.is_closed() || *g < generation)
            {
                *slot = None; // the old one is dropped here, off the async threads
                let client = self.config.connect(NoTls).map_err(|e| self.error(e))?;
                *slot = Some((client, generation));
            }
            let (client, _) = slot.as_mut().expect("connected above");
            let out = f(client);
            if let Err(e) = &out
                && (client.is_closed() || e.as_db_error().is_none())
            {
                *slot = None;
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
            out.map_err(|e| self.error(e))
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(work)
                    .join()
                    .unwrap_or_else(|_| Err(Error::internal("database call panicked")))
            })
        } else {
            work()
        }
    }

    fn error(&self, e: postgres::Error) -> Error {
        match e.as_db_error() {
            Some(db) => {
                Error::internal(format!("state database {}: {}", self.target, db.message()))
            }
            None => Error::new(
                ErrorKind::StoreUnavailable,
                format!("the state database {} is unavailable: {e}", self.target),
            ),
        }
    }

    pub fn ping(&self) -> Result<()> {
        self.run(|c| c.simple_query("SELECT 1").map(drop))
    }

    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.run(|c| {
            Ok(c.query_opt(
                "SELECT value FROM kv WHERE tree = $1 AND key = $2",
                &[&tree, &key],
            )?
            .map(|r| r.get(0)))
        })
    }

    pub fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.run(|c| {
            c.execute(
                "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                &[&tree, &key, &value],
            )
            .map(drop)
        })
    }

    pub fn compare_and_swap(
        &self,
        tree: &str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        self.run(|c| {
            let n = match (old, new) {
                (None, Some(n)) => c.execute(
                    "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&tree, &key, &n],
                )?,
                (Some(o), Some(n)) => c.execute(
                    "UPDATE kv SET value = $4 WHERE tree = $1 AND key = $2 AND value = $3",
                    &[&tree, &key, &o, &n],
                )?,
                (Some(o), None) => c.execute(
                    "DELETE FROM kv WHERE tree = $1 AND key = $2 AND value = $3",
                    &[&tree, &key, &o],
                )?,
                (None, None) => c
                    .query_opt(
                        "SELECT 1 FROM kv WHERE tree = $1 AND key = $2",
                        &[&tree, &key],
                    )?
                    .map_or(1, |_| 0),
            };
            Ok(n == 1)
        })
    }

    /// Inserts `key` and the pairs of `also` in one transaction if `key` is absent; returns whether it did.
    pub fn insert_new_with(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
        also: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<bool> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&tree, &key, &value],
            )?;
            if n != 1 {
                return Ok(false); // dropped: rolled back
            }
            for (k, v) in also {
                tx.execute(
                    "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&tree, k, v],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// Takes (or renews) the lease on item `id` of `queue` for `owner` unless another owner's lease is
    /// live; makes the item if there is none. Returns whether `owner` holds it now.
    pub fn lease_claim(&self, queue: &str, id: &str, owner: &str, ttl_ms: i64) -> Result<bool> {
        self.run(|c| {
            c.execute(
                "INSERT INTO queue (queue, id, owner, until)
                 VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond')
                 ON CONFLICT (queue, id) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
                 WHERE queue.owner IS NULL OR queue.owner = EXCLUDED.owner OR queue.until < clock_timestamp()",
                &[&queue, &id, &owner, &ttl_ms],
            )
            .map(|n| n == 1)
        })
    }

    /// Takes the lease on item `id` whoever holds it.
    pub fn lease_take(&self, queue: &str, id: &str, owner: &str, ttl_ms: i64) -> Result<()> {
        self.run(|c| {
            c.execute(
                "INSERT INTO queue (queue, id, owner, until)
                 VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond')
                 ON CONFLICT (queue, id) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until",
                &[&queue, &id, &owner, &ttl_ms],
            )
            .map(drop)
        })
    }

    /// Extends `owner`'s lease on item `id`; false when it does not hold it.
    pub fn lease_renew(&self, queue: &str, id: &str, owner: &str, ttl_ms: i64) -> Result<bool> {
        self.run(|c| {
            c.execute(
                "UPDATE queue SET until = clock_timestamp() + $4::bigint * interval '1 millisecond'
                 WHERE queue = $1 AND id = $2 AND owner = $3",
                &[&queue, &id, &owner, &ttl_ms],
            )
            .map(|n| n == 1)
        })
    }

    /// Removes item `id` if `owner` holds it (any owner: `None`).
    pub fn lease_release(&self, queue: &str, id: &str, owner: Option<&str>) -> Result<()> {
        self.run(|c| {
            c.execute(
                "DELETE FROM queue WHERE queue = $1 AND id = $2 AND ($3::text IS NULL OR owner = $3)",
                &[&queue, &id, &owner],
            )
            .map(drop)
        })
    }

    /// Whether another owner than `owner` holds a live lease on item `id`.
    pub fn lease_held_elsewhere(&self, queue: &str, id: &str, owner: &str) -> Result<bool> {
        self.run(|c| {
            c.query_opt(
                "SELECT 1 FROM queue WHERE queue = $1 AND id = $2 AND owner IS NOT NULL
                 AND owner <> $3 AND until > clock_timestamp()",
                &[&queue, &id, &owner],
            )
            .map(|r| r.is_some())
        })
    }

    /// Adds item `id` to `queue`, held by nobody, unless it is there.
    pub fn enqueue(&self, queue: &str, id: &str) -> Result<()> {
        self.run(|c| {
            c.execute(
                "INSERT INTO queue (queue, id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&queue, &id],
            )
            .map(drop)
        })
    }

    /// Takes the oldest item of `queue` that no live lease holds (skipping rows other processes are
    /// claiming at this moment) for `owner`; its id.
    pub fn claim_next(&self, queue: &str, owner: &str, ttl_ms: i64) -> Result<Option<String>> {
        self.run(|c| {
            c.query_opt(
                "UPDATE queue SET owner = $2, until = clock_timestamp() + $3::bigint * interval '1 millisecond'
                 WHERE (queue, id) = (
                     SELECT queue, id FROM queue
                     WHERE queue = $1 AND (owner IS NULL OR until < clock_timestamp())
                     ORDER BY created, id LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[&queue, &owner, &ttl_ms],
            )
            .map(|r| r.map(|r| r.get(0)))
        })
    }

    pub fn remove(&self, tree: &str, key: &[u8]) -> Result<()> {
        self.run(|c| {
            c.execute(
                "DELETE FROM kv WHERE tree = $1 AND key = $2",
                &[&tree, &key],
            )
            .map(drop)
        })
    }

    /// The pairs of `tree` (those with keys in `range` when given), in key order.
    pub fn range(&self, tree: &str, range: Option<Range<&[u8]>>) -> Result<Vec<super::Pair>> {
        self.run(|c| {
            let rows = match range {
                None => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 ORDER BY key",
                    &[&tree],
                )?,
                Some(r) => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 AND key >= $2 AND key < $3 \
                     ORDER BY key",
                    &[&tree, &r.start, &r.end],
                )?,
            };
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// At most `limit` keys of `tree` in `range`, last first.
    pub fn keys_rev(&self, tree: &str, r: Range<&[u8]>, limit: i64) -> Result<Vec<Vec<u8>>> {
        self.run(|c| {
            let rows = c.query(
                "SELECT key FROM kv WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4",
                &[&tree, &r.start, &r.end, &limit],
            )?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// How many keys of `tree` are in `range`.
    pub fn count(&self, tree: &str, r: Range<&[u8]>) -> Result<usize> {
        self.run(|c| {
            let row = c.query_one(
                "SELECT count(*) FROM kv WHERE tree = $1 AND key >= $2 AND key < $3",
                &[&tree, &r.start, &r.end],
            )?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }

    /// At most `limit` pairs of `tree` with keys in `range` (all keys when `None`) and after `after`
    /// (from the range's start when `None`), in key order.
    pub fn page_after(
        &self,
        tree: &str,
        range: Option<Range<&[u8]>>,
        after: Option<&[u8]>,
        limit: i64,
    ) -> Result<Vec<super::Pair>> {
        let start: &[u8] = range.as_ref().map_or(&[], |r| r.start);
        let end = range.as_ref().map(|r| r.end);
        self.run(|c| {
            let rows = match (after, end) {
                (None, None) => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT $3",
                    &[&tree, &start, &limit],
                )?,
                (Some(a), None) => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 AND key > $2 ORDER BY key LIMIT $3",
                    &[&tree, &a, &limit],
                )?,
                (None, Some(e)) => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 AND key >= $2 AND key < $3 \
                     ORDER BY key LIMIT $4",
                    &[&tree, &start, &e, &limit],
                )?,
                (Some(a), Some(e)) => c.query(
                    "SELECT key, value FROM kv WHERE tree = $1 AND key > $2 AND key < $3 \
                     ORDER BY key LIMIT $4",
                    &[&tree, &a, &e, &limit],
                )?,
            };
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Inserts (`Some`) and removes (`None`) in one transaction.
    pub fn apply(&self, tree: &str, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.run(|c| {
            let mut tx = c.transaction()?;
            for (k, v) in &ops {
                match v {
                    Some(v) => tx.execute(
                        "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                        &[&tree, k, v],
                    )?,
                    None => {
                        tx.execute("DELETE FROM kv WHERE tree = $1 AND key = $2", &[&tree, k])?
                    }
                };
            }
            tx.commit()
        })
    }
}

/// A client closes its connection by blocking on a runtime of its own, which must not happen on a thread
/// that drives async tasks: the last holder may well be one.
impl Drop for Pg {
    fn drop(&mut self) {
        let clients: Vec<(Client, u64)> = self
            .slots
            .iter_mut()
            .filter_map(|m| m.get_mut().unwrap_or_else(|p| p.into_inner()).take())
            .collect();
        if !clients.is_empty() {
            let _ = std::thread::spawn(move || drop(clients)).join();
        }
    }
}

/// Takes faculty's own `schema=NAME` parameter out of the URL (PostgreSQL does not know it).
fn split_schema(url: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    if let Some(s) = &schema {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::invalid_input(format!(
                "database URL: schema '{s}' must be 1-63 lowercase letters, digits or '_', not \
                 starting with a digit"
            )));
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

fn migrate(c: &mut Client, schema: Option<&str>) -> std::result::Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    if let Some(s) = schema {
        // validated by split_schema: lowercase letters, digits and '_'
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS faculty_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM faculty_migrations", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if !done.contains(version) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO faculty_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )?;
            tracing::info!(version, name, "state database migrated");
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::split_schema;

    #[test]
    fn schema_parameter_is_taken_out_of_the_url() {
        let (u, s) = split_schema("postgres://a:b@h:1/db?schema=t_1&sslmode=disable").unwrap();
        assert_eq!(u, "postgres://a:b@h:1/db?sslmode=disable");
        assert_eq!(s.as_deref(), Some("t_1"));
        let (u, s) = split_schema("postgres://h/db").unwrap();
        assert_eq!((u.as_str(), s), ("postgres://h/db", None));
        for bad in ["x;drop", "1abc", "", "A"] {
            let e = split_schema(&format!("postgres://h/db?schema={bad}")).unwrap_err();
            assert!(e.message.contains("schema"), "{bad}: {}", e.message);
        }
    }
}

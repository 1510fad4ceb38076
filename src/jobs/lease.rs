//! Leases on work (jobs, ranking shards), so that processes sharing one state database run each item
//! once. A process holds an item's lease while it waits in its queue or runs, renews it every
//! [`HEARTBEAT`], and gives it up when the item ends. A lease not renewed for [`TTL`] (its holder was
//! killed, or cut off from the database) is expired: another process may take the item over and resume
//! it. On PostgreSQL the leases are rows of the `queue` table (migrations/0002_queue.sql), timed by the
//! database's clock, and an idle process takes the oldest unheld item with `FOR UPDATE SKIP LOCKED`
//! ([`Leases::claim_next`]); on sled (one process) they are a compare-and-swap on a table, and callers
//! look through their items themselves.
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::{Store, Table, pg::Pg};

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(15);
/// How often a holder renews its leases (and looks for jobs whose holder is gone, or that no one took).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Lease {
    owner: String,
    /// Milliseconds since the Unix epoch.
    until_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One process's view of the leases.
pub struct Leases {
    backend: Backend,
    /// This process: host, pid and a random part.
    pub owner: String,
}

enum Backend {
    /// A table of [`Lease`] records, changed by compare-and-swap (wall clocks).
    Kv(Table),
    /// The `queue` table's rows of one queue (the database's clock).
    Queue { pg: Arc<Pg>, queue: String },
}

fn ttl_ms() -> i64 {
    TTL.as_millis() as i64
}

impl Leases {
    /// Leases over a table of their own (tests; see [`Leases::open`]).
    pub fn new(table: Table, owner: String) -> Self {
        Self {
            backend: Backend::Kv(table),
            owner,
        }
    }

    /// The leases named `name`: the queue of that name on PostgreSQL, a table of that name on sled.
    pub fn open(store: &Store, name: &str, owner: String) -> Result<Self> {
        Ok(Self {
            backend: match store.pg() {
                Some(pg) => Backend::Queue {
                    pg,
                    queue: name.to_string(),
                },
                None => Backend::Kv(store.tree(name)?),
            },
            owner,
        })
    }

    /// Whether [`Leases::claim_next`] finds waiting items (else callers look through theirs).
    pub fn is_queue(&self) -> bool {
        matches!(self.backend, Backend::Queue { .. })
    }

    /// Adds item `id`, held by nobody, so that [`Leases::claim_next`] finds it (nothing on sled).
    pub fn enqueue(&self, id: &str) -> Result<()> {
        match &self.backend {
            Backend::Queue { pg, queue } => pg.enqueue(queue, id),
            Backend::Kv(_) => Ok(()),
        }
    }

    /// Takes the oldest waiting item no live lease holds; `None` when there is none (always on sled).
    pub fn claim_next(&self) -> Result<Option<String>> {
        match &self.backend {
            Backend::Queue { pg, queue } => pg.claim_next(queue, &self.owner, ttl_ms()),
            Backend::Kv(_) => Ok(None),
        }
    }

    /// Removes item `id` whoever holds it (its work is done or gone).
    pub fn forget(&self, id: &str) -> Result<()> {
        match &self.backend {
            Backend::Queue { pg, queue } => pg.lease_release(queue, id, None),
            Backend::Kv(t) => t.remove(id),
        }
    }

    fn fresh(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&Lease {
            owner: self.owner.clone(),
            until_ms: now_ms() + TTL.as_millis() as u64,
        })?)
    }

    /// Takes (or renews) the lease on `id` unless another process holds a live one; returns whether
    /// this process holds it now.
    pub fn claim(&self, id: &str) -> Result<bool> {
        let table = match &self.backend {
            Backend::Queue { pg, queue } => {
                return pg.lease_claim(queue, id, &self.owner, ttl_ms());
            }
            Backend::Kv(t) => t,
        };
        for _ in 0..3 {
            let old = table.get(id)?;
            if let Some(raw) = &old
                && let Ok(l) = serde_json::from_slice::<Lease>(raw)
                && l.owner != self.owner
                && l.until_ms > now_ms()
            {
                return Ok(false);
            }
            if table.compare_and_swap(id, old.as_deref(), Some(&self.fresh()?))? {
                return Ok(true);
            }
            // changed between the read and the swap: look again
        }
        Ok(false)
    }

    /// Takes the lease on `id` whoever held it (for a process that knows it is the only one: sled allows
    /// one process per database, so leases left by a killed predecessor are void).
    pub fn take(&self, id: &str) -> Result<()> {
        match &self.backend {
            Backend::Queue { pg, queue } => pg.lease_take(queue, id, &self.owner, ttl_ms()),
            Backend::Kv(t) => t.insert(id, self.fresh()?),
        }
    }

    /// Extends this process's lease on `id`; false when it no longer holds it (it expired and another
    /// process took it, or it was released).
    pub fn renew(&self, id: &str) -> Result<bool> {
        let table = match &self.backend {
            Backend::Queue { pg, queue } => {
                return pg.lease_renew(queue, id, &self.owner, ttl_ms());
            }
            Backend::Kv(t) => t,
        };
        let Some(raw) = table.get(id)? else {
            return Ok(false);
        };
        match serde_json::from_slice::<Lease>(&raw) {
            Ok(l) if l.owner == self.owner => {
                table.compare_and_swap(id, Some(&raw[..]), Some(&self.fresh()?))
            }
            _ => Ok(false),
        }
    }

    /// Gives up this process's lease on `id` (another process's is left alone).
    pub fn release(&self, id: &str) -> Result<()> {
        let table = match &self.backend {
            Backend::Queue { pg, queue } => {
                return pg.lease_release(queue, id, Some(&self.owner));
            }
            Backend::Kv(t) => t,
        };
        if let Some(raw) = table.get(id)?
            && serde_json::from_slice::<Lease>(&raw).is_ok_and(|l| l.owner == self.owner)
        {
            table.compare_and_swap(id, Some(&raw[..]), None)?;
        }
        Ok(())
    }

    /// Whether another process holds a live lease on `id`.
    pub fn held_elsewhere(&self, id: &str) -> Result<bool> {
        let table = match &self.backend {
            Backend::Queue { pg, queue } => {
                return pg.lease_held_elsewhere(queue, id, &self.owner);
            }
            Backend::Kv(t) => t,
        };
        Ok(table.get(id)?.is_some_and(|raw| {
            serde_json::from_slice::<Lease>(&raw)
                .is_ok_and(|l| l.owner != self.owner && l.until_ms > now_ms())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_holds_a_lease_until_it_expires_or_is_released() {
        let store = crate::store::Store::temporary().unwrap();
        let t = store.tree("leases").unwrap();
        let a = Leases::new(t.clone(), "a".into());
        let b = Leases::new(t.clone(), "b".into());
        assert!(a.claim("job_1").unwrap());
        assert!(a.claim("job_1").unwrap(), "a holder may claim again");
        assert!(!b.claim("job_1").unwrap());
        assert!(b.held_elsewhere("job_1").unwrap());
        assert!(a.renew("job_1").unwrap());
        assert!(!b.renew("job_1").unwrap());
        // a's lease runs out (its holder stopped renewing): b takes the job over, a has lost it
        t.insert(
            "job_1",
            serde_json::to_vec(&Lease {
                owner: "a".into(),
                until_ms: now_ms() - 1,
            })
            .unwrap(),
        )
        .unwrap();
        assert!(!b.held_elsewhere("job_1").unwrap());
        assert!(b.claim("job_1").unwrap());
        assert!(!a.renew("job_1").unwrap());
        a.release("job_1").unwrap(); // not a's: left alone
        assert!(a.held_elsewhere("job_1").unwrap());
        b.release("job_1").unwrap();
        assert!(a.claim("job_1").unwrap());
    }
}

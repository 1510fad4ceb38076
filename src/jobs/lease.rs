//! Leases on jobs, so that processes sharing one state database run each job once. A process holds a
//! job's lease while the job waits in its queue or runs, renews it every [`HEARTBEAT`], and gives it up
//! when the job ends. A lease not renewed for [`TTL`] (its holder was killed, or cut off from the
//! database) is expired: another process may take the job over and resume it from its checkpoint. Taking
//! a lease is a compare-and-swap on the `leases` table, so of several processes exactly one wins.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::Table;

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
    table: Table,
    /// This process: host, pid and a random part.
    pub owner: String,
}

impl Leases {
    pub fn new(table: Table, owner: String) -> Self {
        Self { table, owner }
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
        for _ in 0..3 {
            let old = self.table.get(id)?;
            if let Some(raw) = &old
                && let Ok(l) = serde_json::from_slice::<Lease>(raw)
                && l.owner != self.owner
                && l.until_ms > now_ms()
            {
                return Ok(false);
            }
            if self
                .table
                .compare_and_swap(id, old.as_deref(), Some(&self.fresh()?))?
            {
                return Ok(true);
            }
            // changed between the read and the swap: look again
        }
        Ok(false)
    }

    /// Takes the lease on `id` whoever held it (for a process that knows it is the only one: sled allows
    /// one process per database, so leases left by a killed predecessor are void).
    pub fn take(&self, id: &str) -> Result<()> {
        self.table.insert(id, self.fresh()?)
    }

    /// Extends this process's lease on `id`; false when it no longer holds it (it expired and another
    /// process took it, or it was released).
    pub fn renew(&self, id: &str) -> Result<bool> {
        let Some(raw) = self.table.get(id)? else {
            return Ok(false);
        };
        match serde_json::from_slice::<Lease>(&raw) {
            Ok(l) if l.owner == self.owner => {
                self.table
                    .compare_and_swap(id, Some(&raw[..]), Some(&self.fresh()?))
            }
            _ => Ok(false),
        }
    }

    /// Gives up this process's lease on `id` (another process's is left alone).
    pub fn release(&self, id: &str) -> Result<()> {
        if let Some(raw) = self.table.get(id)?
            && serde_json::from_slice::<Lease>(&raw).is_ok_and(|l| l.owner == self.owner)
        {
            self.table.compare_and_swap(id, Some(&raw[..]), None)?;
        }
        Ok(())
    }

    /// Whether another process holds a live lease on `id`.
    pub fn held_elsewhere(&self, id: &str) -> Result<bool> {
        Ok(self.table.get(id)?.is_some_and(|raw| {
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

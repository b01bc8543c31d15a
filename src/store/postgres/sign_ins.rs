//! Sign-ins on PostgreSQL: the admin pages' sessions and failed sign-ins by address, shared by the
//! nodes (see `store/sign_ins.rs` for what is kept and why). A failure's count is read and written
//! under the address's row lock, so that two nodes counting at once both count.

use super::connection::Queries;
use super::{Postgres, Result};
use crate::store::{SignInAllowance, SignIns, StoredSession};

impl SignIns for Postgres {
    fn create_session(
        &self,
        id_hash: &str,
        csrf: &str,
        now: i64,
        idle_cutoff: i64,
        max: usize,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM herald_sessions WHERE last_used_at < $1",
                &[&idle_cutoff],
            )?;
            tx.execute(
                "DELETE FROM herald_sessions WHERE id_hash IN (
                     SELECT id_hash FROM herald_sessions ORDER BY last_used_at DESC
                     OFFSET $1)",
                &[&(max.saturating_sub(1) as i64)],
            )?;
            tx.execute(
                "INSERT INTO herald_sessions (id_hash, csrf, created_at, last_used_at)
                 VALUES ($1, $2, $3, $3)",
                &[&id_hash, &csrf, &now],
            )?;
            Ok(())
        })
    }

    fn session(
        &self,
        id_hash: &str,
        now: i64,
        idle_cutoff: i64,
        touch_before: i64,
    ) -> Result<Option<StoredSession>> {
        let found = self.client()?.query_opt(
            "SELECT csrf, last_used_at FROM herald_sessions WHERE id_hash = $1",
            &[&id_hash],
        )?;
        let Some(row) = found else {
            return Ok(None);
        };
        let last_used_at: i64 = row.get(1);
        if last_used_at < idle_cutoff {
            self.end_session(id_hash)?;
            return Ok(None);
        }
        if last_used_at < touch_before {
            self.write(|tx| {
                tx.execute(
                    "UPDATE herald_sessions SET last_used_at = $2 WHERE id_hash = $1",
                    &[&id_hash, &now],
                )?;
                Ok(())
            })?;
        }
        Ok(Some(StoredSession { csrf: row.get(0) }))
    }

    fn end_session(&self, id_hash: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM herald_sessions WHERE id_hash = $1",
                &[&id_hash],
            )?;
            Ok(())
        })
    }

    fn set_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let sealed = self.secrets().seal(flash);
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_sessions SET flash = $2 WHERE id_hash = $1",
                &[&id_hash, &sealed],
            )?;
            Ok(())
        })
    }

    fn take_flash(&self, id_hash: &str) -> Result<Option<String>> {
        // The old value, read in the statement that clears it: shown once however many nodes ask.
        let sealed: Option<String> = self.write(|tx| {
            Ok(tx
                .query_opt(
                    "UPDATE herald_sessions s SET flash = NULL
                     FROM (SELECT id_hash, flash FROM herald_sessions WHERE id_hash = $1
                           FOR UPDATE) old
                     WHERE s.id_hash = old.id_hash AND old.flash IS NOT NULL
                     RETURNING old.flash",
                    &[&id_hash],
                )?
                .map(|r| r.get(0)))
        })?;
        Ok(sealed.map(|s| self.secrets().open(&s)).transpose()?)
    }

    fn sign_in_blocked_until(&self, address: &str, now: i64) -> Result<Option<i64>> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT blocked_until FROM herald_sign_in_failures
                 WHERE address = $1 AND blocked_until > $2",
                &[&address, &now],
            )?
            .map(|r| r.get(0)))
    }

    fn failed_sign_in(
        &self,
        address: &str,
        now: i64,
        allowance: &SignInAllowance,
    ) -> Result<Option<i64>> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM herald_sign_in_failures WHERE restored_at <= $1 AND blocked_until <= $1",
                &[&now],
            )?;
            // The row first, so that the next statement can lock it whichever node made it.
            tx.execute(
                "INSERT INTO herald_sign_in_failures (address, restored_at, blocked_until)
                 VALUES ($1, $2, 0) ON CONFLICT (address) DO NOTHING",
                &[&address, &now],
            )?;
            let restored_at: i64 = tx
                .query_one(
                    "SELECT restored_at FROM herald_sign_in_failures WHERE address = $1
                     FOR UPDATE",
                    &[&address],
                )?
                .get(0);
            match allowance.charge(Some(restored_at), now) {
                Ok(restored_at) => {
                    tx.execute(
                        "UPDATE herald_sign_in_failures SET restored_at = $2 WHERE address = $1",
                        &[&address, &restored_at],
                    )?;
                    Ok(None)
                }
                Err(until) => {
                    tx.execute(
                        "UPDATE herald_sign_in_failures SET blocked_until = $2 WHERE address = $1",
                        &[&address, &until],
                    )?;
                    Ok(Some(until))
                }
            }
        })
    }
}

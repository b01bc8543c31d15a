//! Sign-ins kept in the database, so that every node of a cluster knows them: the admin pages'
//! sessions (a session begun on one node is used on another and ended on any) and the failed
//! sign-ins of each client address (a guesser's wrong tokens count on all nodes together). The
//! policy (how long a session lives, how many wrong tokens an address may send) is the HTTP
//! layer's; this module and its PostgreSQL twin store what it decides, and the one rule both
//! backends share, `SignInAllowance::charge`.
//!
//! A session is stored by the SHA-256 of its cookie's value, so that reading the database does
//! not sign anyone in; its one-shot banner is sealed with the secret key, since it may carry a
//! signing secret shown once.

use rusqlite::OptionalExtension;

use super::{Result, SignIns, Sqlite};

/// A stored session: what a request signed in by it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub csrf: String,
}

/// How many failed sign-ins an address may make: `burst` at once, then one more every `every_ms`
/// (a GCRA, kept as the time at which the address's allowance is whole again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInAllowance {
    pub every_ms: i64,
    pub burst: u32,
}

impl SignInAllowance {
    /// Charges one failure to an address whose allowance is whole at `restored_at` (none: it is
    /// whole now): `Ok` with when it will be whole again, or `Err` with until when it is blocked
    /// (a refused failure is not charged, so a blocked guesser earns its next try on time).
    pub fn charge(&self, restored_at: Option<i64>, now: i64) -> Result<i64, i64> {
        let restored_at = restored_at.unwrap_or(now).max(now);
        let tolerance = self.every_ms * (i64::from(self.burst.max(1)) - 1);
        if restored_at - now <= tolerance {
            Ok(restored_at + self.every_ms)
        } else {
            Err(restored_at - tolerance)
        }
    }
}

impl SignIns for Sqlite {
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
                "DELETE FROM herald_sessions WHERE last_used_at < ?1",
                [idle_cutoff],
            )?;
            tx.execute(
                "DELETE FROM herald_sessions WHERE id_hash IN (
                     SELECT id_hash FROM herald_sessions ORDER BY last_used_at DESC
                     LIMIT -1 OFFSET ?1)",
                [max.saturating_sub(1) as i64],
            )?;
            tx.execute(
                "INSERT INTO herald_sessions (id_hash, csrf, created_at, last_used_at)
                 VALUES (?1, ?2, ?3, ?3)",
                (id_hash, csrf, now),
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
        let found: Option<(String, i64)> = self
            .reader()
            .prepare_cached("SELECT csrf, last_used_at FROM herald_sessions WHERE id_hash = ?1")?
            .query_row([id_hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((csrf, last_used_at)) = found else {
            return Ok(None);
        };
        if last_used_at < idle_cutoff {
            self.end_session(id_hash)?;
            return Ok(None);
        }
        if last_used_at < touch_before {
            self.write(|tx| {
                tx.execute(
                    "UPDATE herald_sessions SET last_used_at = ?2 WHERE id_hash = ?1",
                    (id_hash, now),
                )?;
                Ok(())
            })?;
        }
        Ok(Some(StoredSession { csrf }))
    }

    fn end_session(&self, id_hash: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM herald_sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
    }

    fn set_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let sealed = self.secrets().seal(flash);
        self.write(|tx| {
            tx.execute(
                "UPDATE herald_sessions SET flash = ?2 WHERE id_hash = ?1",
                (id_hash, &sealed),
            )?;
            Ok(())
        })
    }

    fn take_flash(&self, id_hash: &str) -> Result<Option<String>> {
        let sealed: Option<String> = self.write(|tx| {
            let sealed = tx
                .query_row(
                    "SELECT flash FROM herald_sessions WHERE id_hash = ?1",
                    [id_hash],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            if sealed.is_some() {
                tx.execute(
                    "UPDATE herald_sessions SET flash = NULL WHERE id_hash = ?1",
                    [id_hash],
                )?;
            }
            Ok(sealed)
        })?;
        Ok(sealed.map(|s| self.secrets().open(&s)).transpose()?)
    }

    fn sign_in_blocked_until(&self, address: &str, now: i64) -> Result<Option<i64>> {
        Ok(self
            .reader()
            .prepare_cached(
                "SELECT blocked_until FROM herald_sign_in_failures
                 WHERE address = ?1 AND blocked_until > ?2",
            )?
            .query_row((address, now), |r| r.get(0))
            .optional()?)
    }

    fn failed_sign_in(
        &self,
        address: &str,
        now: i64,
        allowance: &SignInAllowance,
    ) -> Result<Option<i64>> {
        self.write(|tx| {
            // Addresses whose allowance is whole again are as good as unknown.
            tx.execute(
                "DELETE FROM herald_sign_in_failures WHERE restored_at <= ?1 AND blocked_until <= ?1",
                [now],
            )?;
            let restored_at: Option<i64> = tx
                .query_row(
                    "SELECT restored_at FROM herald_sign_in_failures WHERE address = ?1",
                    [address],
                    |r| r.get(0),
                )
                .optional()?;
            match allowance.charge(restored_at, now) {
                Ok(restored_at) => {
                    tx.execute(
                        "INSERT INTO herald_sign_in_failures (address, restored_at, blocked_until)
                         VALUES (?1, ?2, 0)
                         ON CONFLICT (address) DO UPDATE SET restored_at = excluded.restored_at",
                        (address, restored_at),
                    )?;
                    Ok(None)
                }
                Err(until) => {
                    tx.execute(
                        "UPDATE herald_sign_in_failures SET blocked_until = ?2 WHERE address = ?1",
                        (address, until),
                    )?;
                    Ok(Some(until))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SignInAllowance;

    #[test]
    fn an_allowance_lets_a_burst_through_then_one_every_interval() {
        let allowance = SignInAllowance {
            every_ms: 6_000,
            burst: 10,
        };
        let now = 1_000_000;
        let mut restored_at = None;
        for _ in 0..10 {
            restored_at = Some(
                allowance
                    .charge(restored_at, now)
                    .expect("within the burst"),
            );
        }
        assert_eq!(allowance.charge(restored_at, now), Err(now + 6_000));
        // Refused tries are not charged: the next is allowed once the interval has passed.
        assert_eq!(allowance.charge(restored_at, now + 5_999), Err(now + 6_000));
        assert!(allowance.charge(restored_at, now + 6_000).is_ok());
        // Long after, the whole burst again.
        let later = now + 10 * 6_000;
        let mut again = restored_at;
        for _ in 0..10 {
            again = Some(allowance.charge(again, later).expect("restored"));
        }
        assert!(allowance.charge(again, later).is_err());
    }
}

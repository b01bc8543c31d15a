//! Sign-in sessions of the admin pages: a random id in an `HttpOnly`, `SameSite=Strict` cookie, a
//! CSRF token per session that every form and every script request must echo, and a one-shot
//! "flash" that carries a banner (and a secret shown once) across the redirect after a form.
//!
//! Sessions live in the database (`SignIns`), so that behind a load balancer a session begun on
//! one node is used on any other and signing out ends it on all, and a restart signs nobody out.
//! The database keeps the SHA-256 of the cookie's id, never the id, and the banner sealed.

use std::time::Duration;

use axum::http::{header, HeaderMap};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::http::{blocking, ApiError};
use crate::store::Store;

pub const COOKIE: &str = "herald_session";
/// A session ends this long after its last use.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// A session's last use is written at most this often: a page's many requests write once.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Past this many sessions the least recently used are dropped, so that sign-ins cannot grow the
/// table unbounded.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FlashKind {
    Success,
    Warning,
}

/// A banner for the next page this session shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
    /// A signing secret, shown once in the banner.
    pub secret: Option<String>,
    /// Where on the page the banner goes: beside what was clicked (`events`, `recover`), or at
    /// the top when `None`.
    #[serde(default)]
    pub place: Option<String>,
}

impl Flash {
    pub fn success(message: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Success,
            message: message.into(),
            secret: None,
            place: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Warning,
            message: message.into(),
            secret: None,
            place: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.kind == FlashKind::Success
    }

    /// The banner shown in the section `place` of the page instead of at its top.
    pub fn at(mut self, place: &str) -> Flash {
        self.place = Some(place.to_owned());
        self
    }

    pub fn is_at(&self, place: &str) -> bool {
        self.place.as_deref() == Some(place)
    }
}

/// What a request knows of its session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub csrf: String,
}

/// The sessions, kept in the database.
pub struct Sessions {
    store: Store,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the database knows a session by.
fn id_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ms(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

impl Sessions {
    pub fn new(store: Store) -> Sessions {
        Sessions { store }
    }

    /// A new signed-in session; its id goes into the cookie.
    pub async fn create(&self) -> Result<SessionInfo, ApiError> {
        let info = SessionInfo {
            id: random_token(),
            csrf: random_token(),
        };
        let store = self.store.clone();
        let (hash, csrf) = (id_hash(&info.id), info.csrf.clone());
        blocking(move || {
            let now = crate::clock::now_ms();
            Ok(store.create_session(&hash, &csrf, now, now - ms(IDLE_TIMEOUT), MAX_SESSIONS)?)
        })
        .await?;
        Ok(info)
    }

    /// The live session named by the request's cookie, if any; using it keeps it alive.
    pub async fn from_headers(&self, headers: &HeaderMap) -> Result<Option<SessionInfo>, ApiError> {
        let Some(id) = cookie(headers, COOKIE).map(str::to_owned) else {
            return Ok(None);
        };
        // A cookie that cannot be one of ours costs no query.
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let store = self.store.clone();
        let hash = id_hash(&id);
        let stored = blocking(move || {
            let now = crate::clock::now_ms();
            Ok(store.session(&hash, now, now - ms(IDLE_TIMEOUT), now - ms(TOUCH_EVERY))?)
        })
        .await?;
        Ok(stored.map(|s| SessionInfo { id, csrf: s.csrf }))
    }

    /// Ends the session on every node.
    pub async fn end(&self, id: &str) -> Result<(), ApiError> {
        let store = self.store.clone();
        let hash = id_hash(id);
        blocking(move || Ok(store.end_session(&hash)?)).await
    }

    pub async fn set_flash(&self, id: &str, flash: Flash) -> Result<(), ApiError> {
        let store = self.store.clone();
        let hash = id_hash(id);
        let flash = serde_json::to_string(&flash).map_err(ApiError::internal)?;
        blocking(move || Ok(store.set_flash(&hash, &flash)?)).await
    }

    /// The banner left for this page, taken: it shows once. One that cannot be read is logged and
    /// not shown: the page itself is what was asked for.
    pub async fn take_flash(&self, id: &str) -> Option<Flash> {
        let store = self.store.clone();
        let hash = id_hash(id);
        match blocking(move || Ok(store.take_flash(&hash)?)).await {
            Ok(flash) => flash.and_then(|f| serde_json::from_str(&f).ok()),
            Err(e) => {
                tracing::warn!("the session's banner could not be read: {}", e.message);
                None
            }
        }
    }
}

impl SessionInfo {
    /// Whether `presented` is this session's CSRF token, compared in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// The value of cookie `name` in the request.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that signs this browser in. `Secure` when the request came over https
/// (directly or through a proxy that says so), so that the cookie never travels in clear text.
/// Whether the browser reached herald over HTTPS (through a proxy that says so): cookies are
/// `Secure` then.
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub fn set_cookie(id: &str, headers: &HeaderMap) -> String {
    let secure = over_https(headers);
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        IDLE_TIMEOUT.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    fn sessions() -> (Sessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herald.db")).unwrap();
        (Sessions::new(store), dir)
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_cookie_among_others() {
        let (sessions, _dir) = sessions();
        let info = sessions.create().await.unwrap();
        let headers = with_cookie(&format!("theme=dark; {COOKIE}={}; other=1", info.id));
        let found = sessions.from_headers(&headers).await.unwrap().unwrap();
        assert_eq!(found.csrf, info.csrf);
        assert!(found.csrf_matches(&info.csrf));
        assert!(!found.csrf_matches("forged"));
        for unknown in ["unknown".to_owned(), "0".repeat(64)] {
            let headers = with_cookie(&format!("{COOKIE}={unknown}"));
            assert!(sessions.from_headers(&headers).await.unwrap().is_none());
        }
        sessions.end(&info.id).await.unwrap();
        assert!(sessions.from_headers(&headers).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_flash_shows_once_and_keeps_its_secret() {
        let (sessions, _dir) = sessions();
        let info = sessions.create().await.unwrap();
        let mut flash = Flash::success("saved");
        flash.secret = Some("whsec_shown_once".into());
        sessions.set_flash(&info.id, flash).await.unwrap();
        let shown = sessions.take_flash(&info.id).await.unwrap();
        assert_eq!(shown.message, "saved");
        assert!(shown.is_success());
        assert_eq!(shown.secret.as_deref(), Some("whsec_shown_once"));
        assert!(sessions.take_flash(&info.id).await.is_none());
    }
}

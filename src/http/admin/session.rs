//! Sign-in sessions of the admin pages: a random id in an `HttpOnly`, `SameSite=Strict` cookie, a
//! CSRF token per session that every form and every script request must echo, and a one-shot
//! "flash" that carries a banner (and a secret shown once) across the redirect after a form.
//!
//! Sessions live in memory: a restart signs everyone out, which costs a sign-in and keeps no
//! credential on disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use rand::RngCore;

pub const COOKIE: &str = "herald_session";
/// A session ends this long after its last use.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Past this many sessions the oldest are dropped, so that sign-ins cannot grow memory unbounded.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Warning,
}

/// A banner for the next page this session shows.
#[derive(Debug, Clone)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
    /// A signing secret, shown once in the banner.
    pub secret: Option<String>,
}

impl Flash {
    pub fn success(message: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Success,
            message: message.into(),
            secret: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Warning,
            message: message.into(),
            secret: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.kind == FlashKind::Success
    }
}

struct Session {
    csrf: String,
    last_used: Instant,
    flash: Option<Flash>,
}

/// What a request knows of its session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// A new signed-in session; its id goes into the cookie.
    pub fn create(&self) -> SessionInfo {
        let info = SessionInfo {
            id: random_token(),
            csrf: random_token(),
        };
        let mut sessions = self.sessions.lock().unwrap();
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_used) < IDLE_TIMEOUT);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            info.id.clone(),
            Session {
                csrf: info.csrf.clone(),
                last_used: now,
                flash: None,
            },
        );
        info
    }

    /// The live session named by the request's cookie, if any; using it keeps it alive.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap();
        let session = sessions.get_mut(id)?;
        let now = Instant::now();
        if now.duration_since(session.last_used) >= IDLE_TIMEOUT {
            sessions.remove(id);
            return None;
        }
        session.last_used = now;
        Some(SessionInfo {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
        })
    }

    pub fn end(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.sessions.lock().unwrap().get_mut(id) {
            session.flash = Some(flash);
        }
    }

    /// The banner left for this page, taken: it shows once.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.sessions.lock().unwrap().get_mut(id)?.flash.take()
    }
}

impl SessionInfo {
    /// Whether `presented` is this session's CSRF token, compared in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
pub fn set_cookie(id: &str, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
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

    #[test]
    fn a_session_is_found_by_its_cookie_among_others() {
        let sessions = Sessions::default();
        let info = sessions.create();
        let headers = with_cookie(&format!("theme=dark; {COOKIE}={}; other=1", info.id));
        let found = sessions.from_headers(&headers).unwrap();
        assert_eq!(found.csrf, info.csrf);
        assert!(found.csrf_matches(&info.csrf));
        assert!(!found.csrf_matches("forged"));
        assert!(sessions
            .from_headers(&with_cookie(&format!("{COOKIE}=unknown")))
            .is_none());
        sessions.end(&info.id);
        assert!(sessions.from_headers(&headers).is_none());
    }

    #[test]
    fn a_flash_shows_once() {
        let sessions = Sessions::default();
        let info = sessions.create();
        sessions.set_flash(&info.id, Flash::success("saved"));
        assert_eq!(sessions.take_flash(&info.id).unwrap().message, "saved");
        assert!(sessions.take_flash(&info.id).is_none());
    }
}

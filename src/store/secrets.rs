//! Encryption at rest of what would let someone impersonate herald or its users: hooks' signing
//! secrets and authorization headers. XChaCha20-Poly1305 (RustCrypto) with a random 24-byte nonce per
//! value; stored as `enc:v1:` + base64(nonce || ciphertext). A database copied without its key holds
//! nothing usable.
//!
//! Values written before encryption was on are plain text; they are read as they are and sealed at
//! the next start (`Store::seal_plain_secrets`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("a stored secret is encrypted and herald has no key to read it (HERALD_SECRET_KEY or the key file)")]
    NoKey,
    #[error("a stored secret does not decrypt with this key: wrong key, or the value was altered")]
    WrongKey,
    #[error(
        "this herald's secret key is not the database's: every herald process of one database \
         needs the key the database was first sealed with (HERALD_SECRET_KEY or the key file)"
    )]
    NotTheDatabasesKey,
}

/// The key, when herald has one. Without one, values are stored and read as plain text.
#[derive(Clone, Default)]
pub struct Secrets {
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.cipher.is_some() {
            "Secrets(key)"
        } else {
            "Secrets(none)"
        })
    }
}

impl Secrets {
    /// No encryption: what tools that only read non-secret columns use.
    pub fn none() -> Secrets {
        Secrets { cipher: None }
    }

    /// From a base64-encoded 32-byte key.
    pub fn from_base64(key: &str) -> Result<Secrets, SecretError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| SecretError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Secrets {
            cipher: Some(cipher),
        })
    }

    /// A new random key, base64-encoded.
    pub fn generate_key() -> String {
        STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn is_on(&self) -> bool {
        self.cipher.is_some()
    }

    /// The value to store.
    pub fn seal(&self, plain: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return plain.to_owned();
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("encrypting a short string in memory does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// The plain value of a stored one.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let cipher = self.cipher.as_ref().ok_or(SecretError::NoKey)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::WrongKey)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::WrongKey);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::WrongKey)
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// What the database keeps to know its key again (`KEY_CHECK` sealed: no use without the key),
    /// so that a herald started with another key refuses to start, whether or not a hook exists yet.
    pub fn key_check(&self) -> Option<String> {
        self.is_on().then(|| self.seal(KEY_CHECK))
    }

    /// Whether `stored` (a `key_check`) was sealed with this key; always true without a key.
    pub fn matches_key_check(&self, stored: &str) -> Result<(), SecretError> {
        if !self.is_on() {
            return Ok(());
        }
        match self.open(stored) {
            Ok(text) if text == KEY_CHECK => Ok(()),
            _ => Err(SecretError::NotTheDatabasesKey),
        }
    }
}

/// The text sealed as the database's key check.
const KEY_CHECK: &str = "herald key check";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let key = Secrets::generate_key();
        let secrets = Secrets::from_base64(&key).unwrap();
        let sealed = secrets.seal("whsec_c2VjcmV0");
        assert!(Secrets::is_sealed(&sealed));
        assert!(!sealed.contains("c2VjcmV0"));
        assert_ne!(
            sealed,
            secrets.seal("whsec_c2VjcmV0"),
            "a fresh nonce each time"
        );
        assert_eq!(secrets.open(&sealed).unwrap(), "whsec_c2VjcmV0");
        let other = Secrets::from_base64(&Secrets::generate_key()).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::WrongKey));
        assert_eq!(Secrets::none().open(&sealed), Err(SecretError::NoKey));
        assert_eq!(
            secrets.open("plain before encryption").unwrap(),
            "plain before encryption"
        );
        assert_eq!(
            Secrets::from_base64("short").err(),
            Some(SecretError::BadKey)
        );
    }
}

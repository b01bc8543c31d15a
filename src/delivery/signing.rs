//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), the key
//! being the base64-decoded part of the secret after `whsec_`.
//!
//! HMAC and SHA-256 come from the RustCrypto crates; the envelope is a few lines, tested against the
//! specification's published vector, so receivers' existing libraries accept what herald sends.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the secret is not whsec_ followed by base64")]
    BadSecret,
    #[error("no signature header")]
    Missing,
    #[error("the timestamp is not a whole number of seconds")]
    BadTimestamp,
    #[error("the timestamp is too far from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn key_of(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .map_err(|_| SignatureError::BadSecret)
}

fn mac(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one secret.
pub fn sign(
    secret: &str,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = key_of(secret)?;
    let tag = mac(&key, message_id, timestamp, body)
        .finalize()
        .into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Checks a `webhook-signature` header (space-separated signatures, any of which may match) and that
/// the timestamp is within `tolerance_secs` of `now_secs`. What a receiver does; used by the example
/// receiver and the tests.
pub fn verify(
    secret: &str,
    message_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let key = key_of(secret)?;
    let mut any = false;
    for candidate in signature_header.split_whitespace() {
        any = true;
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        // verify_slice compares in constant time.
        if mac(&key, message_id, timestamp, body)
            .verify_slice(&tag)
            .is_ok()
        {
            return Ok(());
        }
    }
    if any {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY).unwrap(), EXPECTED);
    }

    #[test]
    fn verifies_any_of_several_signatures_and_refuses_tampering() {
        let header = format!("v1,bm9wZQ== {EXPECTED}");
        assert_eq!(
            verify(SECRET, ID, "1614265330", &header, BODY, TIMESTAMP, 300),
            Ok(())
        );
        assert_eq!(
            verify(
                SECRET,
                ID,
                "1614265330",
                EXPECTED,
                b"{\"test\": 1}",
                TIMESTAMP,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                ID,
                "1614265330",
                EXPECTED,
                BODY,
                TIMESTAMP + 301,
                300
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, ID, "1614265330", "", BODY, TIMESTAMP, 300),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn generated_secrets_sign() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        let signature = sign(&secret, ID, TIMESTAMP, BODY).unwrap();
        assert_eq!(
            verify(&secret, ID, "1614265330", &signature, BODY, TIMESTAMP, 5),
            Ok(())
        );
        assert_ne!(generate_secret(), secret);
    }
}

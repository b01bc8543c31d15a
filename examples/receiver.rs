//! A small webhook receiver: verifies each delivery's Standard Webhooks signature with the secrets
//! that `EPT_WebhookSubscribe` returned (one per subscription: a delivery is valid when one of them
//! verifies it), and prints it.
//!
//! ```sh
//! cargo run --example receiver -- 127.0.0.1:9000 whsec_... [whsec_... ...]
//! # or: HERALD_SECRET=whsec_...,whsec_... cargo run --example receiver
//! ```
//! Without a secret it prints deliveries unverified. It answers 200 to a valid delivery and 401 to a
//! delivery whose signature does not verify.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let mut secrets: Vec<String> = args.collect();
    if secrets.is_empty() {
        secrets = std::env::var("HERALD_SECRET")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    let handler = move |headers: HeaderMap, body: Bytes| {
        let secrets = secrets.clone();
        async move {
            let id = header(&headers, "webhook-id");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let verify = |secret: &String| {
                herald::delivery::signing::verify(
                    secret,
                    id,
                    header(&headers, "webhook-timestamp"),
                    header(&headers, "webhook-signature"),
                    &body,
                    now,
                    300,
                )
            };
            let verdict = if secrets.is_empty() {
                "unverified (no secret given)".to_owned()
            } else {
                match secrets.iter().map(verify).find(Result::is_ok) {
                    Some(_) => "signature verified".to_owned(),
                    None => match verify(&secrets[0]) {
                        Err(e) => format!("SIGNATURE REFUSED by every secret given: {e}"),
                        Ok(()) => "signature verified".to_owned(),
                    },
                }
            };
            println!(
                "{} {id} ({verdict})\n{}\n",
                header(&headers, "herald-event"),
                String::from_utf8_lossy(&body)
            );
            if verdict.starts_with("SIGNATURE REFUSED") {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            }
        }
    };
    let app = Router::new().fallback(post(handler));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("receiver listening on http://{listen}/");
    axum::serve(listener, app).await
}

//! The admin pages in English, French, German and Brazilian Portuguese: chosen from the browser's
//! `Accept-Language`, switched on every page, the choice remembered. What a page should say is
//! read from the language's own message files, so that a reworded message does not break a test
//! but a page that stays English does.

use std::time::Duration;

use crate::admin_pages::{csrf_of, no_redirects, session_cookie};
use crate::support::*;

const STEP: Duration = Duration::from_secs(10);

/// A one-line message of `locales/<lang>/`, as a page shows it (HTML-escaped).
pub(crate) fn message(lang: &str, id: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("locales")
        .join(lang);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix(&format!("{id} = ")) {
                return value.trim().to_owned();
            }
        }
    }
    panic!("no one-line message {id} in {}", dir.display());
}

/// Text as the templates escape it (askama writes decimal references).
pub(crate) fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// A page's text, signed in with `cookie`.
async fn page_text(herald: &TestHerald, path: &str, cookie: &str) -> String {
    get(herald, path, &[("cookie", cookie)])
        .await
        .text()
        .await
        .unwrap()
}

async fn get(herald: &TestHerald, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = no_redirects().get(herald.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_speaks_the_browsers_language_until_another_is_chosen() {
    let herald = TestHerald::demo(|_| {}).await;
    for (accept, lang) in [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("de-DE", "de"),
        ("pt-BR,pt;q=0.9", "pt-BR"),
        ("en-GB", "en-US"),
        ("ja", "en-US"),
    ] {
        let page = get(&herald, "/admin/login", &[("accept-language", accept)])
            .await
            .text()
            .await
            .unwrap();
        let code = if lang == "en-US" { "en" } else { lang };
        assert!(
            page.contains(&format!("<html lang=\"{code}\">")),
            "{accept}: {page}"
        );
        let title = escaped(&message(lang, "sign-in-title"));
        assert!(page.contains(&format!("<h1>{title}</h1>")), "{accept}");
        let label = escaped(&message(lang, "sign-in-token"));
        assert!(page.contains(&label), "{accept}: {label}");
    }

    // The switch remembers the choice and comes back to the page it was clicked on.
    let response = get(
        &herald,
        "/admin/language?set=pt-BR&back=%2Fadmin%2Flogin%3Fnext%3D%252Fadmin",
        &[],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/login?next=%2Fadmin");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("herald_lang=pt-BR;"), "{cookie}");
    assert!(cookie.contains("Max-Age="), "remembered: {cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let page = get(
        &herald,
        "/admin/login",
        &[("accept-language", "de"), ("cookie", "herald_lang=pt-BR")],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        page.contains("<html lang=\"pt-BR\">"),
        "the choice wins over the browser"
    );

    // It never sends the browser to another site, and an unknown language changes nothing.
    for back in [
        "https://evil.example/",
        "//evil.example/admin",
        "/elsewhere",
    ] {
        let path = format!(
            "/admin/language?{}",
            serde_urlencoded::to_string([("set", "fr"), ("back", back)]).unwrap()
        );
        let response = get(&herald, &path, &[]).await;
        assert_eq!(response.headers()["location"], "/admin", "{back}");
    }
    let response = get(&herald, "/admin/language?set=xx&back=/admin", &[]).await;
    assert_eq!(response.status(), 303);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_whole_in_every_language() {
    let herald = TestHerald::demo(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let hook = herald
        .create_hook(serde_json::json!({
            "target_url": receiver.url("/hook"),
            "company_id": 1,
            "events": ["NewOpportunity", "Deal.create"],
        }))
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    herald.insert_deal(Deal {
        is_project: true,
        company_id: Some(1),
        ..Deal::titled("Bonjour")
    });
    receiver.wait_for(1, STEP).await;
    // The attempt is recorded a moment after the receiver has it.
    let deadline = tokio::time::Instant::now() + STEP;
    let delivery = loop {
        let (_, deliveries) = herald
            .get(&format!("/api/v1/hooks/{hook_id}/deliveries"))
            .await;
        if let Some(id) = deliveries["deliveries"][0]["id"].as_i64() {
            break id;
        }
        assert!(tokio::time::Instant::now() < deadline, "{deliveries}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let session = session_cookie(&herald).await;
    // Each page, with messages its own body shows (not the frame's, which every page shares).
    let pages: [(String, &[&str]); 9] = [
        (
            "/admin".to_owned(),
            &[
                "index-new-hook",
                "index-save-endpoint",
                "index-company-hooks",
            ],
        ),
        (
            "/admin?q=127.0.0.1".to_owned(),
            &["index-show-all", "index-find-hooks"],
        ),
        (
            format!("/admin/hooks/{hook_id}"),
            &[
                "hook-overview-title",
                "hook-grid-title",
                "hook-deliveries-title",
                "hook-only-failures",
                "outcome-success",
            ],
        ),
        (
            format!("/admin/hooks/{hook_id}?only_failures=true"),
            &["deliveries-no-failure"],
        ),
        (
            format!("/admin/hooks/{hook_id}/deliveries"),
            &["deliveries-title"],
        ),
        (
            format!("/admin/hooks/{hook_id}/deliveries/{delivery}"),
            &["delivery-request", "delivery-response"],
        ),
        (
            "/admin/scripts".to_owned(),
            &["scripts-title", "scripts-triggers"],
        ),
        ("/admin/api".to_owned(), &["api-title", "api-areas"]),
        ("/admin/no-such-page".to_owned(), &["error-no-such-page"]),
    ];
    for (lang, code) in [
        ("en-US", "en"),
        ("fr", "fr"),
        ("de", "de"),
        ("pt-BR", "pt-BR"),
    ] {
        let cookie = format!("{session}; herald_lang={code}");
        for (path, ids) in &pages {
            let response = get(&herald, path, &[("cookie", &cookie)]).await;
            let status = response.status();
            let page = response.text().await.unwrap();
            assert!(
                status == 200 || path.contains("no-such-page"),
                "{path}: {status}"
            );
            assert!(
                page.contains(&format!("<html lang=\"{code}\">")),
                "{code} {path}"
            );
            assert!(
                !page.contains("Unknown localization"),
                "{code} {path}: a message is missing"
            );
            for id in ids.iter() {
                let text = escaped(&message(lang, id));
                assert!(page.contains(&text), "{code} {path} lacks {id}: {text}");
            }
            // The switch offers the other languages, back to this page.
            assert!(page.contains("/admin/language?set="), "{code} {path}");
        }
        let hook_page = page_text(&herald, &format!("/admin/hooks/{hook_id}"), &cookie).await;
        // A form's answer comes back in the language too.
        let csrf = csrf_of(&hook_page);
        let response = no_redirects()
            .post(herald.url(&format!("/admin/hooks/{hook_id}")))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("target_url", &receiver.url("/hook")),
                ("description", ""),
                ("authorization", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let after = page_text(&herald, &format!("/admin/hooks/{hook_id}"), &cookie).await;
        let saved = escaped(&message(lang, "banner-endpoint-saved"));
        assert!(after.contains(&saved), "{code}: {saved}");
    }
}

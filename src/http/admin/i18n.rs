//! The admin pages' languages: English, French, German and Brazilian Portuguese, in Fluent files
//! (`locales/<language>/*.ftl`, compiled into the binary by `fluent-templates`).
//!
//! A request's language is the one its `herald_lang` cookie names (set by the switch on every
//! page), else the best of its `Accept-Language`, else English. The guard middleware puts it in
//! a task-local for the request, so that the templates (`self::t("key")`), the banners and the
//! error pages all speak it without every handler passing it along. API answers stay English:
//! their codes are the contract.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;

use axum::http::{header, HeaderMap, HeaderValue};
use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{static_loader, LanguageIdentifier, Loader};

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en-US",
        // The pages are left-to-right only; isolation marks would sit inside every sentence.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// The cookie that remembers the language chosen with the switch.
pub const COOKIE: &str = "herald_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
    De,
    PtBr,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Fr, Lang::De, Lang::PtBr];

    /// The code the cookie, the switch's links and the page's `lang` attribute use.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::PtBr => "pt-BR",
        }
    }

    /// What the switch calls it: each language in its own words.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
            Lang::De => "Deutsch",
            Lang::PtBr => "Português (Brasil)",
        }
    }

    /// The directory of its messages under `locales/`.
    pub fn locale(self) -> LanguageIdentifier {
        match self {
            Lang::En => "en-US",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::PtBr => "pt-BR",
        }
        .parse()
        .expect("a valid language identifier")
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(code.trim()))
    }

    /// The language an `Accept-Language` header prefers among ours: by its weights, then its
    /// order; any Portuguese is Brazilian here, any English, French or German is ours.
    pub fn negotiate(accept_language: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (place, item) in accept_language.split(',').enumerate() {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if weight <= 0.0 {
                continue;
            }
            let primary = tag.split('-').next().unwrap_or_default();
            let lang = match primary {
                "en" => Lang::En,
                "fr" => Lang::Fr,
                "de" => Lang::De,
                "pt" => Lang::PtBr,
                _ => continue,
            };
            if best.is_none_or(|(w, _, _)| weight > w) {
                best = Some((weight, place, lang));
            }
        }
        best.map(|(_, _, lang)| lang)
    }

    /// The language of a request: the remembered choice, else the browser's, else English.
    pub fn of_request(headers: &HeaderMap) -> Lang {
        let chosen = super::session::cookie(headers, COOKIE).and_then(Lang::from_code);
        chosen
            .or_else(|| {
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::negotiate)
            })
            .unwrap_or(Lang::En)
    }

    /// The `Set-Cookie` that remembers this choice for a year (`Secure` behind HTTPS, as the
    /// session's).
    pub fn cookie(self, secure: bool) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/admin; Max-Age=31536000; HttpOnly; SameSite=Lax{}",
            self.code(),
            if secure { "; Secure" } else { "" }
        ))
        .expect("a valid cookie")
    }
}

/// What the pages need to know of the request they answer.
#[derive(Clone)]
struct Current {
    lang: Lang,
    /// The page to come back to after switching language.
    here: String,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `answer` (one request's handling) speaking `lang`.
pub async fn speaking<F: Future>(lang: Lang, here: String, answer: F) -> F::Output {
    CURRENT.scope(Current { lang, here }, answer).await
}

/// The language of the request being answered (English outside one).
pub fn lang() -> Lang {
    CURRENT.try_with(|c| c.lang).unwrap_or(Lang::En)
}

/// The page being answered, to come back to after switching language.
pub fn here() -> String {
    CURRENT
        .try_with(|c| c.here.clone())
        .unwrap_or_else(|_| "/admin".to_owned())
}

/// The message `key` in the request's language.
pub fn t(key: &str) -> String {
    LOCALES.lookup(&lang().locale(), key)
}

/// The message `key` with `$count` (which also picks its plural form).
pub fn tn(key: &str, count: impl Display) -> String {
    message(key, &[("count", count.to_string())])
}

/// The message `key` with one variable.
pub fn ta(key: &str, name: &str, value: impl Display) -> String {
    message(key, &[(name, value.to_string())])
}

/// The message `key` with two variables.
pub fn ta2(
    key: &str,
    name: &str,
    value: impl Display,
    name2: &str,
    value2: impl Display,
) -> String {
    message(
        key,
        &[(name, value.to_string()), (name2, value2.to_string())],
    )
}

/// The message `key`, which holds markup, with one variable escaped into it: render it `|safe`.
pub fn tm(key: &str, name: &str, value: impl Display) -> String {
    message(key, &[(name, escape_html(&value.to_string()))])
}

/// Text as HTML, escaped as the templates escape it.
pub(super) fn escape_html(text: &str) -> String {
    match askama::filters::escape(text, askama::filters::Html) {
        Ok(escaped) => escaped.to_string(),
        Err(never) => match never {},
    }
}

/// The variables that are numbers: they choose a message's plural form. Every other variable
/// is text, shown as it is (an endpoint's answer `007` stays `007`).
const NUMBERS: [&str; 6] = ["count", "seconds", "done", "attempt", "line", "column"];

/// The message `key` with its variables.
pub fn message(key: &str, args: &[(&str, String)]) -> String {
    let args: HashMap<std::borrow::Cow<'static, str>, FluentValue> = args
        .iter()
        .map(|(name, value)| {
            (
                std::borrow::Cow::Owned(name.to_string()),
                value_of(name, value),
            )
        })
        .collect();
    LOCALES.lookup_with_args(&lang().locale(), key, &args)
}

fn value_of<'a>(name: &str, value: &'a str) -> FluentValue<'a> {
    if !NUMBERS.contains(&name) {
        return FluentValue::from(value);
    }
    // Fluent picks the plural form from a number but writes it with a point whatever the
    // language: a fraction is written with the language's own mark instead.
    match lang() {
        Lang::En => FluentValue::try_number(value),
        _ if value.contains('.') && value.parse::<f64>().is_ok() => {
            FluentValue::from(value.replace('.', ","))
        }
        _ => FluentValue::try_number(value),
    }
}

/// The message `key` in `lang`, without falling back to English: for the test that every
/// language has every message.
#[cfg(test)]
pub fn lookup_in(lang: Lang, key: &str, args: &[(&str, &str)]) -> Option<String> {
    let args: HashMap<String, FluentValue> = args
        .iter()
        .map(|(name, value)| (name.to_string(), value_of(name, value)))
        .collect();
    LOCALES
        .lookup_single_language(&lang.locale(), key, Some(&args))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The messages of one language directory, with the variables each uses.
    fn messages_of(lang: Lang) -> BTreeMap<String, BTreeSet<String>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("locales")
            .join(lang.locale().to_string());
        let mut messages = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let resource = fluent_syntax::parser::parse(text.as_str())
                .unwrap_or_else(|(_, errors)| panic!("{}: {errors:?}", path.display()));
            for entry in &resource.body {
                if let fluent_syntax::ast::Entry::Junk { content } = entry {
                    panic!("{}: cannot parse {content:?}", path.display());
                }
            }
            // A message runs from its `id =` line to the next one; its variables are its `$names`.
            let mut current: Option<String> = None;
            for line in text.lines() {
                let starts_message = line
                    .split_once(" =")
                    .filter(|(id, _)| {
                        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
                    .map(|(id, _)| id.to_owned());
                if let Some(id) = starts_message {
                    assert!(
                        messages.insert(id.clone(), BTreeSet::new()).is_none(),
                        "{id} is defined twice in {}",
                        lang.code()
                    );
                    current = Some(id);
                } else if line.starts_with('#') || line.trim().is_empty() {
                    current = None;
                    continue;
                }
                let Some(id) = &current else { continue };
                for piece in line.split('$').skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                        .collect();
                    messages.get_mut(id).unwrap().insert(name);
                }
            }
        }
        messages
    }

    /// The message ids the templates, the admin's code and its script ask for: the first argument
    /// of every call of a message function (`say` in the script), and every string literal of the
    /// code shaped like an id whose first word starts some message (`"outcome-success"` in a match).
    fn ids_used(english: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
        let prefixes: BTreeSet<&str> = english
            .keys()
            .filter_map(|id| id.split_once('-').map(|(first, _)| first))
            .collect();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // Templates, code and script; Rust alone for literals (the others are full of element ids
        // and classes; the script's messages are its `say` calls).
        let mut files = Vec::new();
        let mut code = Vec::new();
        for dir in ["templates/admin", "src/http/admin", "src/http/admin/static"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if path.extension().is_some_and(|e| e == "rs") {
                        code.push(text.clone());
                    }
                    files.push(text);
                }
            }
        }
        let mut ids = BTreeSet::new();
        let id_shaped = |literal: &str| {
            literal
                .split_once('-')
                .is_some_and(|(first, _)| prefixes.contains(first))
                && !literal.ends_with('-')
                && literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        for text in &code {
            for (i, literal) in text.split('"').enumerate() {
                if i % 2 == 1 && id_shaped(literal) {
                    ids.insert(literal.to_owned());
                }
            }
        }
        for text in files {
            let text: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for function in ["t(", "tn(", "ta(", "ta2(", "tm(", "message(", "say("] {
                for (at, _) in text.match_indices(function) {
                    let before = text[..at].chars().next_back().unwrap_or(' ');
                    if before.is_ascii_alphanumeric() || before == '_' {
                        continue;
                    }
                    let rest = text[at + function.len()..].trim_start();
                    if let Some(quoted) = rest.strip_prefix('"') {
                        let id = quoted.split('"').next().unwrap_or_default();
                        // A prefix completed at run time (`"backfill-status-" + status`) is not one.
                        if !id.is_empty() && !id.contains(' ') && !id.ends_with('-') {
                            ids.insert(id.to_owned());
                        }
                    }
                }
            }
        }
        ids
    }

    #[test]
    fn every_language_has_every_message_with_the_same_variables() {
        let english = messages_of(Lang::En);
        assert!(english.len() > 100, "only {} messages", english.len());
        for lang in Lang::ALL {
            let messages = messages_of(lang);
            let missing: Vec<_> = english
                .keys()
                .filter(|id| !messages.contains_key(*id))
                .collect();
            let extra: Vec<_> = messages
                .keys()
                .filter(|id| !english.contains_key(*id))
                .collect();
            assert!(missing.is_empty(), "{} lacks {missing:?}", lang.code());
            assert!(
                extra.is_empty(),
                "{} has messages English lacks: {extra:?}",
                lang.code()
            );
            for (id, variables) in &english {
                let unknown: Vec<_> = messages[id].difference(variables).collect();
                assert!(
                    unknown.is_empty(),
                    "{} {id} uses {unknown:?}, which the pages do not give it",
                    lang.code()
                );
                // Every plural form: zero, one, two, many.
                for number in ["0", "1", "2", "5"] {
                    let args: Vec<(&str, &str)> =
                        variables.iter().map(|v| (v.as_str(), number)).collect();
                    let text = lookup_in(lang, id, &args)
                        .unwrap_or_else(|| panic!("{} cannot format {id}", lang.code()));
                    assert!(!text.trim().is_empty(), "{} {id} is empty", lang.code());
                }
            }
        }
    }

    #[test]
    fn every_message_the_pages_ask_for_exists() {
        let english = messages_of(Lang::En);
        let used = ids_used(&english);
        assert!(used.len() > 100, "found only {} ids in use", used.len());
        let missing: Vec<_> = used
            .iter()
            .filter(|id| !english.contains_key(*id))
            .collect();
        assert!(missing.is_empty(), "no message for {missing:?}");
    }

    #[test]
    fn the_browser_language_is_negotiated_by_weight_then_order() {
        assert_eq!(Lang::negotiate("fr-FR,fr;q=0.9,en;q=0.8"), Some(Lang::Fr));
        assert_eq!(Lang::negotiate("en;q=0.5, de-AT"), Some(Lang::De));
        assert_eq!(Lang::negotiate("pt-PT"), Some(Lang::PtBr));
        assert_eq!(Lang::negotiate("ja, es;q=0.9"), None);
        assert_eq!(Lang::negotiate("fr;q=0, de;q=0.1"), Some(Lang::De));
        assert_eq!(Lang::negotiate("de, fr"), Some(Lang::De));
        assert_eq!(Lang::negotiate(""), None);
    }

    fn in_language<T>(lang: Lang, f: impl FnOnce() -> T) -> T {
        CURRENT.sync_scope(
            Current {
                lang,
                here: "/admin".into(),
            },
            f,
        )
    }

    #[test]
    fn text_stays_as_it_is_and_numbers_read_as_the_language_writes_them() {
        // An endpoint's answer that looks like a number is shown as it came.
        for body in ["007", "1e3", "12345678901234567890", "Infinity"] {
            let text = message("banner-test-answered", &[("body", body.to_owned())]);
            assert!(text.ends_with(body), "{text}");
        }
        assert_eq!(
            in_language(Lang::En, || tn("hook-rate-limit-value", "2.5")),
            "2.5 deliveries per second"
        );
        assert_eq!(
            in_language(Lang::En, || tn("hook-rate-limit-value", 1)),
            "1 delivery per second"
        );
        let french = in_language(Lang::Fr, || tn("hook-rate-limit-value", "2.5"));
        assert!(french.starts_with("2,5 "), "{french}");
        let german = in_language(Lang::De, || tn("index-hooks-in-all", 1));
        assert!(german.contains(" 1 Hook"), "the singular: {german}");
    }

    #[test]
    fn the_remembered_choice_wins_over_the_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "de".parse().unwrap());
        assert_eq!(Lang::of_request(&headers), Lang::De);
        headers.insert(
            header::COOKIE,
            "herald_session=abc; herald_lang=pt-BR".parse().unwrap(),
        );
        assert_eq!(Lang::of_request(&headers), Lang::PtBr);
        headers.insert(header::COOKIE, "herald_lang=xx".parse().unwrap());
        assert_eq!(
            Lang::of_request(&headers),
            Lang::De,
            "an unknown code is ignored"
        );
        assert_eq!(Lang::of_request(&HeaderMap::new()), Lang::En);
    }
}

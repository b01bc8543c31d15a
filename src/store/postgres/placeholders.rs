//! Scripts write their queries' parameters SQLite's way, `?` (or `?1`, `?2`...); PostgreSQL
//! numbers them `$1`, `$2`. The translation skips what is not SQL code: string literals (`'...'`,
//! `E'...'` with backslash escapes, dollar-quoted `$tag$...$tag$`), quoted identifiers
//! (`"..."`) and comments (`--`, and `/* */`, which nest in PostgreSQL). A query that already
//! numbers its parameters `$1` is left as it is, so that PostgreSQL's JSON operators `?`, `?|` and
//! `?&` stay usable there.

use std::borrow::Cow;

/// `sql` with each `?` parameter numbered as PostgreSQL wants it; unchanged when there is none, or
/// when it numbers its parameters itself.
pub fn numbered_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') || has_dollar_parameters(sql) {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0usize;
    scan(sql, |piece| match piece {
        Piece::Code(text) => {
            let mut chars = text.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c != '?' {
                    out.push(c);
                    continue;
                }
                let digits: String = text[i + 1..]
                    .chars()
                    .take_while(|d| d.is_ascii_digit())
                    .collect();
                let number = if digits.is_empty() {
                    highest + 1
                } else {
                    for _ in 0..digits.len() {
                        chars.next();
                    }
                    digits.parse().unwrap_or(highest + 1)
                };
                highest = highest.max(number);
                out.push('$');
                out.push_str(&number.to_string());
            }
        }
        Piece::Other(text) => out.push_str(text),
    });
    Cow::Owned(out)
}

/// Whether the SQL code (literals and comments aside) has a `$1`-style parameter.
fn has_dollar_parameters(sql: &str) -> bool {
    let mut found = false;
    scan(sql, |piece| {
        if let Piece::Code(text) = piece {
            let bytes = text.as_bytes();
            found |= bytes.windows(2).enumerate().any(|(i, w)| {
                w[0] == b'$'
                    && w[1].is_ascii_digit()
                    && (i == 0 || !is_identifier_byte(bytes[i - 1]))
            });
        }
    });
    found
}

/// `sql` (its parameters numbered) with each use of its one parameter, `$1`, replaced by
/// `expression`; `None` when it has none or another one.
pub fn with_parameter_as(sql: &str, expression: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut replaced = false;
    let mut other = false;
    scan(sql, |piece| match piece {
        Piece::Code(text) => {
            let bytes = text.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let parameter = bytes[i] == b'$'
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                    && (i == 0 || !is_identifier_byte(bytes[i - 1]));
                if !parameter {
                    let c = text[i..].chars().next().expect("inside the text");
                    out.push(c);
                    i += c.len_utf8();
                    continue;
                }
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if &text[i + 1..i + 1 + digits] == "1" {
                    out.push_str(expression);
                    replaced = true;
                } else {
                    other = true;
                }
                i += 1 + digits;
            }
        }
        Piece::Other(text) => out.push_str(text),
    });
    (replaced && !other).then_some(out)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

enum Piece<'a> {
    /// SQL code, where parameters may be.
    Code(&'a str),
    /// A literal, quoted identifier or comment, copied as it is.
    Other(&'a str),
}

/// Cuts `sql` into code and what is not code, in order. An unterminated literal or comment runs
/// to the end (the server reports it).
fn scan<'a>(sql: &'a str, mut piece: impl FnMut(Piece<'a>)) {
    let bytes = sql.as_bytes();
    let mut code_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && (bytes[i - 1] == b'E' || bytes[i - 1] == b'e')
                    && (i < 2 || !is_identifier_byte(bytes[i - 2]));
                Some(quoted_end(bytes, i, b'\'', escapes))
            }
            b'"' => Some(quoted_end(bytes, i, b'"', false)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => Some(
                bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1),
            ),
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(block_comment_end(bytes, i)),
            b'$' if i == 0 || !is_identifier_byte(bytes[i - 1]) => dollar_quote_end(sql, i),
            _ => None,
        };
        match end {
            Some(end) => {
                if code_start < i {
                    piece(Piece::Code(&sql[code_start..i]));
                }
                piece(Piece::Other(&sql[i..end]));
                i = end;
                code_start = end;
            }
            None => i += 1,
        }
    }
    if code_start < bytes.len() {
        piece(Piece::Code(&sql[code_start..]));
    }
}

/// The end (exclusive) of a literal or identifier opened by `quote` at `start`; a doubled quote
/// stands for one, and with `escapes` a backslash escapes the next byte.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$` (the tag may be empty) starting at `start`: its end, or `None` when what
/// starts there is not a dollar quote (a `$1` parameter, say).
fn dollar_quote_end(sql: &str, start: usize) -> Option<usize> {
    let rest = &sql[start + 1..];
    let tag_len = rest.bytes().position(|b| b == b'$').filter(|&n| {
        rest.as_bytes()[..n]
            .iter()
            .enumerate()
            .all(|(k, &b)| (b.is_ascii_alphabetic() || b == b'_') || (k > 0 && b.is_ascii_digit()))
    })?;
    let delimiter = &sql[start..start + tag_len + 2];
    let body = start + delimiter.len();
    Some(
        sql[body..]
            .find(delimiter)
            .map_or(sql.len(), |p| body + p + delimiter.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders as n;
    use super::with_parameter_as;

    #[test]
    fn question_marks_become_numbered_parameters() {
        assert_eq!(
            n("SELECT * FROM Deal WHERE id = ? AND stage = ?"),
            "SELECT * FROM Deal WHERE id = $1 AND stage = $2"
        );
        assert_eq!(n("SELECT ?2, ?1, ?"), "SELECT $2, $1, $3");
    }

    #[test]
    fn literals_identifiers_and_comments_are_left_alone() {
        assert_eq!(
            n("SELECT '?', \"a?\", E'it\\'s ?', $$ ? $$, $q$ ? $q$ -- ?\n, ? /* ? /* ? */ ? */ FROM t"),
            "SELECT '?', \"a?\", E'it\\'s ?', $$ ? $$, $q$ ? $q$ -- ?\n, $1 /* ? /* ? */ ? */ FROM t"
        );
        assert_eq!(n("SELECT 'it''s ?', ?"), "SELECT 'it''s ?', $1");
    }

    #[test]
    fn a_query_numbered_already_keeps_its_question_marks() {
        assert_eq!(
            n("SELECT data ? 'key' FROM t WHERE id = $1"),
            "SELECT data ? 'key' FROM t WHERE id = $1"
        );
        assert_eq!(
            n("SELECT a$1 FROM t WHERE x = ?"),
            "SELECT a$1 FROM t WHERE x = $1"
        );
    }

    #[test]
    fn the_one_parameter_is_replaced_where_it_is_code() {
        assert_eq!(
            with_parameter_as("SELECT '$1', a$1, $1 FROM t WHERE id = $1 -- $1\n", "x.id"),
            Some("SELECT '$1', a$1, x.id FROM t WHERE id = x.id -- $1\n".to_owned())
        );
        assert_eq!(with_parameter_as("SELECT $1, $2", "x.id"), None);
        assert_eq!(with_parameter_as("SELECT $12", "x.id"), None);
        assert_eq!(with_parameter_as("SELECT 1", "x.id"), None);
        assert_eq!(
            with_parameter_as("SELECT 'é', $1", "x.id"),
            Some("SELECT 'é', x.id".to_owned())
        );
    }
}

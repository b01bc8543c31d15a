//! A located script error: `file:line:col: message`, the form editors and `herald check` use, with
//! the offending line and a caret under the column when the source is known.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line and column, when rhai knows where.
    pub position: Option<(u32, u32)>,
    pub message: String,
    /// The offending source line, when the position and the source are known.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &str, position: Option<(u32, u32)>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            position,
            message: message.into(),
            source_line: None,
        }
    }

    pub fn line(&self) -> Option<u32> {
        self.position.map(|(line, _)| line)
    }

    pub fn column(&self) -> Option<u32> {
        self.position.map(|(_, col)| col)
    }

    /// Attaches the offending line of `source`.
    pub fn with_source(mut self, source: &str) -> Diagnostic {
        if let Some((line, _)) = self.position {
            self.source_line = source
                .lines()
                .nth(line.saturating_sub(1) as usize)
                .map(str::to_owned);
        }
        self
    }

    /// The one-line form, then the offending line with a caret under the column:
    ///
    /// ```text
    /// GetWebhookResponseBody_Broken.rhai:3:9: Unexpected ';'
    ///     let x = ;
    ///             ^
    /// ```
    pub fn render(&self) -> String {
        let mut text = self.to_string();
        if let (Some(line), Some((_, col))) = (&self.source_line, self.position) {
            // Keep the line's own tabs before the caret so that it lines up in any terminal.
            let pad: String = line
                .chars()
                .take(col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            text.push_str(&format!("\n    {line}\n    {pad}^"));
        }
        text
    }

    pub(crate) fn from_parse_error(file: &str, error: &rhai::ParseError) -> Diagnostic {
        Diagnostic::new(file, position(error.1), error.0.to_string())
    }

    /// Reports the innermost located error: inside a script-defined function, that is where the
    /// fault is, not the call site.
    pub(crate) fn from_eval_error(
        file: &str,
        error: &rhai::EvalAltResult,
        budget_message: impl FnOnce() -> String,
    ) -> Diagnostic {
        let mut located = position(error.position());
        let mut inner = error;
        while let rhai::EvalAltResult::ErrorInFunctionCall(_, _, next, _) = inner {
            inner = next;
            if let Some(p) = position(inner.position()) {
                located = Some(p);
            }
        }
        let message = match inner {
            rhai::EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
            rhai::EvalAltResult::ErrorTerminated(..) => budget_message(),
            rhai::EvalAltResult::ErrorTooManyOperations(..) => {
                "too many operations: the script broke its operation limit (an endless loop?)"
                    .into()
            }
            rhai::EvalAltResult::ErrorStackOverflow(..) => {
                "call stack too deep: the script broke its call-depth limit (endless recursion?)"
                    .into()
            }
            other => {
                let text = other.to_string();
                let suffix = format!(" ({})", other.position());
                text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
            }
        };
        Diagnostic::new(file, located, message)
    }
}

fn position(p: rhai::Position) -> Option<(u32, u32)> {
    match (p.line(), p.position()) {
        (Some(line), Some(col)) => Some((line as u32, col as u32)),
        (Some(line), None) => Some((line as u32, 1)),
        _ => None,
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_offending_line_with_a_caret() {
        let d = Diagnostic::new("x.rhai", Some((2, 9)), "Expecting an expression")
            .with_source("let a = 1;\nlet x = ;\n");
        assert_eq!(
            d.render(),
            "x.rhai:2:9: Expecting an expression\n    let x = ;\n            ^"
        );
        let unlocated = Diagnostic::new("x.rhai", None, "cannot read");
        assert_eq!(unlocated.render(), "x.rhai: cannot read");
    }
}

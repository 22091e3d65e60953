//! What a live-tail viewer asks for, matched against each new line in memory.
//!
//! The filters are the search's, minus the time range: minimum level, exact cluster, node,
//! service, instance and trace id, and text `q`. The text match follows PostgreSQL's
//! `websearch_to_tsquery('simple', q)` that search uses, on the same kind of tokens: a token is
//! a run of letters and digits, compared lowercased (`'simple'` doesn't stem). Words must all
//! appear, `"a phrase"` must appear as consecutive tokens, `-word` must not appear, and `or`
//! between terms accepts either side. Where PostgreSQL's parser sees special tokens (e-mail
//! addresses, URLs, version numbers such as `1.2.3`) it may split differently, so a tail and a
//! search can disagree on such text. A query without any word (`';--`) matches no line, as in search.

use app::model::logs::{LogLevel, LogLine};

/// One viewer's filter; viewers with equal filters share one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TailFilter {
    pub level: LogLevel,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub trace_id: Option<String>,
    pub q: Option<TextQuery>,
}

impl TailFilter {
    /// Everything: every level, no context, no text.
    pub fn everything() -> Self {
        Self {
            level: LogLevel::Debug,
            cluster: None,
            node: None,
            service: None,
            instance: None,
            trace_id: None,
            q: None,
        }
    }

    pub fn matches(&self, line: &LogLine) -> bool {
        fn same(wanted: &Option<String>, actual: &Option<String>) -> bool {
            wanted.as_ref().is_none_or(|wanted| actual.as_ref() == Some(wanted))
        }
        line.level >= self.level
            && same(&self.cluster, &line.cluster)
            && same(&self.node, &line.node)
            && same(&self.service, &line.service)
            && same(&self.instance, &line.instance)
            && same(&self.trace_id, &line.trace_id)
            && self.q.as_ref().is_none_or(|q| q.matches(&line.message))
    }
}

/// A parsed text query: alternatives (`or`), each a list of terms that must all hold.
#[derive(Debug, Clone)]
pub struct TextQuery {
    /// The query as given (trimmed): equal sources are equal queries.
    source: String,
    alternatives: Vec<Vec<Term>>,
}

#[derive(Debug, Clone)]
struct Term {
    /// Consecutive tokens (one for a word).
    tokens: Vec<String>,
    negated: bool,
}

impl PartialEq for TextQuery {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TextQuery {}

impl std::hash::Hash for TextQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

/// Lowercased runs of letters and digits.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

impl TextQuery {
    /// Parses a web-search-style query; nothing in it is an error. `None` when it is blank.
    pub fn parse(source: &str) -> Option<Self> {
        let source = source.trim();
        if source.is_empty() {
            return None;
        }
        let mut alternatives = vec![Vec::new()];
        let mut rest = source;
        while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
            rest = &rest[start..];
            let negated = rest.starts_with('-');
            let body = if negated { &rest[1..] } else { rest };
            let (raw, quoted, after) = if let Some(inner) = body.strip_prefix('"') {
                let end = inner.find('"').unwrap_or(inner.len());
                (&inner[..end], true, inner.get(end + 1..).unwrap_or(""))
            } else {
                let end = body.find(char::is_whitespace).unwrap_or(body.len());
                (&body[..end], false, &body[end..])
            };
            rest = after;
            if !quoted && !negated && raw.eq_ignore_ascii_case("or") {
                if alternatives.last().is_some_and(|terms| !terms.is_empty()) {
                    alternatives.push(Vec::new());
                }
                continue;
            }
            let tokens = tokens(raw);
            if !tokens.is_empty()
                && let Some(terms) = alternatives.last_mut()
            {
                terms.push(Term { tokens, negated });
            }
        }
        alternatives.retain(|terms| !terms.is_empty());
        Some(Self { source: source.to_owned(), alternatives })
    }

    pub fn matches(&self, message: &str) -> bool {
        let words = tokens(message);
        let holds = |term: &Term| {
            let found = words.windows(term.tokens.len()).any(|window| window == term.tokens.as_slice());
            found != term.negated
        };
        self.alternatives.iter().any(|terms| terms.iter().all(holds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> TextQuery {
        TextQuery::parse(text).expect("not blank")
    }

    #[test]
    fn words_must_all_appear_in_any_case_and_order() {
        let q = query("Timeout payments");
        assert!(q.matches("payments call: TIMEOUT after 3 s"));
        assert!(!q.matches("timeout calling web"));
    }

    #[test]
    fn a_phrase_needs_consecutive_words_and_a_minus_word_must_be_absent() {
        assert!(query("\"connection refused\"").matches("dial: connection refused"));
        assert!(!query("\"connection refused\"").matches("refused connection"));
        assert!(query("error -retry").matches("error in handler"));
        assert!(!query("error -retry").matches("error, will retry"));
    }

    #[test]
    fn or_accepts_either_side() {
        let q = query("panic or fatal");
        assert!(q.matches("a panic happened"));
        assert!(q.matches("fatal: out of memory"));
        assert!(!q.matches("all good"));
    }

    #[test]
    fn sql_and_html_metacharacters_are_only_separators() {
        let q = query("'; DROP TABLE log_lines; --");
        assert!(q.matches("user typed '; drop table log_lines; --"));
        assert!(!q.matches("drop table users"));
        assert!(query("<script>").matches("<script>alert(1)</script>"));
        assert!(!query("';--").matches("'; --"), "a query without words matches nothing, as in search");
    }

    #[test]
    fn equal_queries_are_equal_filters() {
        assert_eq!(query(" disk full "), query("disk full"));
        assert_ne!(query("disk full"), query("full disk"));
        assert_eq!(TextQuery::parse("   "), None);
    }
}

//! Names in the order people count them: `node-2` before `node-10` (runs of digits compare as
//! numbers), so the topology lists nodes the way their owners numbered them.

/// Orders names as people count: `node-2` before `node-10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaturalKey<'a>(pub &'a str);

impl NaturalKey<'_> {
    /// Runs of digits become numbers, the rest stays text.
    fn parts(&self) -> Vec<Result<u128, &str>> {
        let mut parts = Vec::new();
        let mut rest = self.0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (part, tail) = if digits > 0 {
                rest.split_at(digits)
            } else {
                rest.split_at(rest.bytes().take_while(|b| !b.is_ascii_digit()).count())
            };
            parts.push(if digits > 0 { part.parse().map_err(|_| part) } else { Err(part) });
            rest = tail;
        }
        parts
    }
}

impl Ord for NaturalKey<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts()).then_with(|| self.0.cmp(other.0))
    }
}

impl PartialOrd for NaturalKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

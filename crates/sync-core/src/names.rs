//! How a person may type a name the software knows: a code with hyphens or
//! underscores in any case, or its Chinese or English name; and the known
//! name nearest to a slip, for "did you mean".

/// The form all spellings of one code share: trimmed, lower case, `_` as `-`.
pub fn key(s: &str) -> String {
    s.trim().to_lowercase().replace('_', "-")
}

/// The candidate nearest to `given`, if `given` looks like a slip for it:
/// at most two edits away (a swap of neighbours is one) and fewer than
/// half the characters of either, or a part of exactly one candidate
/// (`井盖` for `井盖破损`), or what exactly one candidate is a part of
/// (`城管局` for `城管`).
pub fn nearest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let given = key(given);
    let len = given.chars().count();
    let close = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&given, &key(c)), *c))
        .filter(|(d, c)| *d <= 2 && *d * 2 < len.min(c.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    let containing: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| {
            let c = key(c);
            len >= 2 && c.chars().count() >= 2 && (c.contains(&given) || given.contains(&c))
        })
        .collect();
    close.or(match containing[..] {
        [only] => Some(only),
        _ => None,
    })
}

/// " did you mean `x`?" for an error message, or nothing.
pub fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or(String::new(), |s| format!(" did you mean `{s}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_find_their_name_and_strangers_find_none() {
        let names = ["manhole-cover", "curb-stone", "lawn", "井盖破损", "路面破损"];
        assert_eq!(key(" In_Progress "), "in-progress");
        assert_eq!(nearest("manhole_cuver", &names), Some("manhole-cover"));
        assert_eq!(nearest("lwan", &names), Some("lawn"));
        assert_eq!(nearest("井盖", &names), Some("井盖破损"));
        assert_eq!(nearest("破损", &names), None, "two names contain it");
        assert_eq!(nearest("pothole", &names), None);
        assert_eq!(nearest("x", &names), None);
    }
}

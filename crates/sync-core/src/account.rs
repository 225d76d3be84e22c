//! Rules about accounts that the device and the server both check.

/// A worker or account id that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a worker id; use 1 to 64 letters, digits, `.`, `_` or `-`")]
pub struct BadWorkerId(pub String);

/// Worker ids name files, URLs and spreadsheet cells; they stay plain.
pub fn check_worker_id(id: &str) -> Result<(), BadWorkerId> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(valid) {
        return Err(BadWorkerId(id.chars().take(80).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_only() {
        for ok in ["w-li", "hx.center_2", &"a".repeat(64)] {
            assert_eq!(check_worker_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "w li", "李华", "a/b", &"a".repeat(65)] {
            assert!(check_worker_id(bad).is_err(), "{bad}");
        }
    }
}

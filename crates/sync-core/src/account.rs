//! Rules about accounts that the device and the server both check.

use serde::{Deserialize, Serialize};

/// What an account may do; the server grants it, the device learns it at
/// enrolment. The status moves each role may make are in `rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A grid worker (网格员): their own grid cells.
    #[default]
    Worker,
    /// A community center (社区网格中心): every cell of its community.
    Center,
    /// The operator: everything.
    Operator,
    /// A department (城管, 市政 …) of one community: it reads the cases
    /// whose last dispatch names it and records its own progress on them.
    Department,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Worker, Role::Center, Role::Operator, Role::Department];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Center => "center",
            Role::Operator => "operator",
            Role::Department => "department",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// A device label that breaks [`check_label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a device label is 1 to 64 characters of text, without control characters")]
pub struct BadLabel;

/// The one rule for device labels, on the device and the server: trimmed,
/// 1 to 64 characters, printable. Returns the label as it is kept.
pub fn check_label(label: &str) -> Result<&str, BadLabel> {
    let label = label.trim();
    let n = label.chars().count();
    if n == 0 || n > 64 || label.chars().any(char::is_control) {
        return Err(BadLabel);
    }
    Ok(label)
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

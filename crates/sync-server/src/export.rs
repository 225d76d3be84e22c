//! Exports on the server: which incidents a center or the operator asked
//! for, read from storage, decoded and rendered by `sync_core::export`, the
//! same code `field export` runs. `sync-server export` runs it on the data
//! dir and `GET /v1/exports/incidents.{csv,geojson,json}` over HTTP.

use chrono::NaiveDate;
use serde::Deserialize;
use sync_core::calendar::parse_day;
use sync_core::export::{self, Format};
use sync_core::taxonomy::TaxonomyError;
use sync_core::{GridMap, Incident, IncidentDoc, Status, Taxonomy};

use crate::storage::{IncidentFilter, Scope, Storage, StorageError};

/// The filters as typed on the command line or in a query string. Empty
/// values count as absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterInput {
    /// First day to include, YYYY-MM-DD, in each community's time zone.
    pub from: Option<String>,
    /// Last day to include (inclusive).
    pub to: Option<String>,
    /// Only this community (an id from the grid file, e.g. HLT-CX-HX).
    pub community: Option<String>,
    /// Only this grid cell.
    pub grid: Option<String>,
    /// Only this status (reported, dispatched, in_progress, resolved, verified, closed, rejected, duplicate).
    pub status: Option<String>,
    /// Only this category code.
    pub category: Option<String>,
}

/// Checked filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub community: Option<String>,
    pub grid: Option<String>,
    pub status: Option<Status>,
    pub category: Option<String>,
}

/// A filter that cannot match anything sensible; the caller's mistake.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("`{value}` is not a date for `{param}`; use YYYY-MM-DD")]
    BadDate { param: &'static str, value: String },
    #[error("`from` ({from}) is after `to` ({to}); put the earlier day first")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error(transparent)]
    Status(#[from] sync_core::incident::StatusError),
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error("grid cell `{grid}` is not in community `{community}`")]
    GridNotInCommunity { grid: String, community: String },
}

impl FilterError {
    /// A stable, machine-readable code for HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            FilterError::BadDate { .. } | FilterError::Reversed { .. } => "bad_date",
            FilterError::Status(_) => "unknown_status",
            FilterError::Taxonomy(TaxonomyError::UnknownCategory { .. }) => "unknown_category",
            FilterError::Taxonomy(TaxonomyError::UnknownCell { .. }) => "unknown_grid",
            FilterError::Taxonomy(TaxonomyError::UnknownCommunity { .. }) => "unknown_community",
            FilterError::Taxonomy(_) => "bad_filter",
            FilterError::GridNotInCommunity { .. } => "bad_filter",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("{0}")]
    OutOfScope(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored document that no longer reads: the server's own data is damaged.
    #[error("incident {id} on the server cannot be read: {reason}")]
    Corrupt { id: String, reason: String },
    #[error(transparent)]
    Render(#[from] export::ExportError),
}

impl ExportError {
    /// A mistake in what the caller asked for, not a failure of the server's data.
    pub fn is_caller_mistake(&self) -> bool {
        matches!(self, ExportError::Filter(_) | ExportError::OutOfScope(_))
    }
}

/// Keeps what a user typed short enough to repeat in an error.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

fn given(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn date(param: &'static str, value: Option<&str>) -> Result<Option<NaiveDate>, FilterError> {
    value
        .map(|v| parse_day(v).map_err(|_| FilterError::BadDate { param, value: shown(v) }))
        .transpose()
}

impl FilterInput {
    /// Checks every filter against the grid map and the category list.
    pub fn parse(&self, grids: &GridMap, taxonomy: &Taxonomy) -> Result<ExportFilter, FilterError> {
        let from = date("from", given(&self.from))?;
        let to = date("to", given(&self.to))?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(FilterError::Reversed { from, to });
        }
        let community = given(&self.community)
            .map(|c| grids.require_community(c).map(|found| found.id.clone()))
            .transpose()?;
        let grid = given(&self.grid)
            .map(|g| grids.require_cell(&shown(g)).map(|p| p.cell.id.clone()))
            .transpose()?;
        if let (Some(c), Some(g)) = (&community, &grid)
            && grids.cell(g).is_some_and(|p| &p.community.id != c)
        {
            return Err(FilterError::GridNotInCommunity {
                grid: g.clone(),
                community: c.clone(),
            });
        }
        // As a person types them: codes in any case, or the names.
        let status = given(&self.status).map(|s| Status::from_input(&shown(s))).transpose()?;
        let category = given(&self.category)
            .map(|c| taxonomy.resolve(&shown(c)).map(|c| c.code.clone()))
            .transpose()?;
        Ok(ExportFilter {
            from,
            to,
            community,
            grid,
            status,
            category,
        })
    }
}

/// The cells a filter asks for, narrowed to what `scope` may read; `None`
/// for every cell. Asking for a community or cell outside the scope is refused.
pub fn cells(
    grids: &GridMap,
    scope: &Scope,
    community: Option<&str>,
    grid: Option<&str>,
) -> Result<Option<Vec<String>>, ExportError> {
    let asked: Option<Vec<String>> = match (grid, community) {
        (Some(g), _) => Some(vec![g.to_owned()]),
        (None, Some(c)) => Some(grids.community_cells(c)),
        (None, None) => None,
    };
    match (scope, asked) {
        (Scope::All, asked) => Ok(asked),
        (Scope::Grids(allowed), None) => Ok(Some(allowed.clone())),
        (Scope::Grids(_), Some(asked)) if asked.iter().all(|c| scope.allows(c)) => Ok(Some(asked)),
        (Scope::Grids(_), Some(_)) => Err(ExportError::OutOfScope(format!(
            "{} is outside this account's community",
            match (grid, community) {
                (Some(g), _) => format!("grid cell `{g}`"),
                (None, c) => format!("community `{}`", c.unwrap_or_default()),
            }
        ))),
    }
}

/// Decodes a stored incident document, inside `catch_unwind`: bytes from
/// before the edit rules existed may make Automerge itself fail.
pub fn decode(id: &str, doc: &[u8]) -> Result<Incident, ExportError> {
    let read = std::panic::catch_unwind(|| IncidentDoc::read_saved(doc).map_err(|e| e.to_string()));
    let reason = match read {
        Ok(Ok(incident)) => return Ok(incident),
        Ok(Err(e)) => e,
        Err(_) => "decoding it panicked".to_owned(),
    };
    tracing::error!(incident = %id, %reason, "a stored incident cannot be read; left out");
    Err(ExportError::Corrupt {
        id: id.to_owned(),
        reason,
    })
}

/// What a reader found: the incidents, and the ids of stored documents
/// that cannot be read, which are left out and named rather than failing
/// the whole answer.
#[derive(Debug, Default)]
pub struct Selected {
    pub incidents: Vec<Incident>,
    pub unreadable: Vec<String>,
    /// What the server knows besides the documents: workers' names and
    /// when each incident first arrived (photo links are the caller's).
    pub extras: export::Extras,
}

/// The incidents in `scope` that match `filter`, oldest first.
pub fn select(
    storage: &dyn Storage,
    grids: &GridMap,
    scope: &Scope,
    filter: &ExportFilter,
) -> Result<Selected, ExportError> {
    let query = IncidentFilter {
        grids: cells(grids, scope, filter.community.as_deref(), filter.grid.as_deref())?,
        statuses: filter.status.into_iter().collect(),
        category: filter.category.clone(),
        captured: capture_window(filter),
        ..IncidentFilter::default()
    };
    let mut out = Selected::default();
    for stored in storage.incidents(&query)? {
        let Ok(incident) = decode(&stored.id, &stored.doc) else {
            out.unreadable.push(stored.id);
            continue;
        };
        let day = export::local_day(grids, &incident);
        if filter.from.is_some_and(|from| day < from) || filter.to.is_some_and(|to| day > to) {
            continue;
        }
        out.extras
            .received
            .insert(stored.id.clone(), stored.first_received_at.clone());
        out.incidents.push(incident);
    }
    out.extras.names = storage.workers()?.into_iter().map(|w| (w.id, w.name)).collect();
    Ok(out)
}

/// The instants whose local day (in any community's zone, UTC−12 to
/// UTC+14) can fall within the filter's days: a day either side of them
/// in UTC. The exact day is checked on each incident.
fn capture_window(filter: &ExportFilter) -> Option<(i64, i64)> {
    if filter.from.is_none() && filter.to.is_none() {
        return None;
    }
    let secs = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    let from = filter.from.map_or(i64::MIN, |d| secs(d) - 86_400);
    let to = filter.to.map_or(i64::MAX, |d| secs(d) + 2 * 86_400);
    Some((from, to))
}

/// `incidents-HLT-CX-HX-2026-11-01-to-2026-11-30.csv`: what was asked, in
/// characters every file system takes (ids and dates were checked already).
pub fn file_name(filter: &ExportFilter, format: Format) -> String {
    let mut name = String::from("incidents");
    for part in [&filter.grid, &filter.community].into_iter().flatten().take(1) {
        name.push('-');
        name.push_str(part);
    }
    for part in [filter.status.map(|s| s.as_str().to_owned()), filter.category.clone()]
        .into_iter()
        .flatten()
    {
        name.push('-');
        name.push_str(&part);
    }
    match (filter.from, filter.to) {
        (Some(f), Some(t)) if f == t => name.push_str(&format!("-{f}")),
        (Some(f), Some(t)) => name.push_str(&format!("-{f}-to-{t}")),
        (Some(f), None) => name.push_str(&format!("-from-{f}")),
        (None, Some(t)) => name.push_str(&format!("-to-{t}")),
        (None, None) => {}
    }
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.{}", format.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> FilterInput {
        let mut a = FilterInput::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "from" => a.from = v,
                "to" => a.to = v,
                "community" => a.community = v,
                "grid" => a.grid = v,
                "status" => a.status = v,
                "category" => a.category = v,
                _ => unreachable!(),
            }
        }
        a
    }

    #[track_caller]
    fn refused(pairs: &[(&str, &str)], code: &str, needle: &str) {
        let e = args(pairs).parse(&GridMap::builtin(), Taxonomy::builtin()).unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }

    #[test]
    fn bad_filters_are_named() {
        refused(&[("from", "2026-11-31")], "bad_date", "YYYY-MM-DD");
        refused(&[("from", "2026-11-21"), ("to", "2026-11-20")], "bad_date", "after");
        refused(&[("status", "open")], "unknown_status", "in_progress");
        refused(&[("category", "grass")], "unknown_category", "lawn");
        refused(&[("community", "HLT-XX")], "unknown_community", "HLT-CX-HX");
        refused(&[("grid", "HX-99")], "unknown_grid", "HLT-CX-HX-01");
        refused(
            &[("community", "HLT-XS-XS"), ("grid", "HLT-CX-HX-01")],
            "bad_filter",
            "not in community",
        );
    }

    #[test]
    fn empty_values_are_absent_and_names_are_safe() {
        let f = args(&[("from", ""), ("status", " ")])
            .parse(&GridMap::builtin(), Taxonomy::builtin())
            .unwrap();
        assert_eq!(f, ExportFilter::default());
        assert_eq!(file_name(&f, Format::Csv), "incidents.csv");
        let f = args(&[("community", "HLT-CX-HX"), ("from", "2026-11-01"), ("to", "2026-11-30")])
            .parse(&GridMap::builtin(), Taxonomy::builtin())
            .unwrap();
        assert_eq!(
            file_name(&f, Format::Geojson),
            "incidents-HLT-CX-HX-2026-11-01-to-2026-11-30.geojson"
        );
    }
}

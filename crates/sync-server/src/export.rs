//! Exports on the server: which incidents a center or the operator asked
//! for, read from [`Storage`], decoded and rendered by `sync_core::export`,
//! the same code `field export` runs. Served on the data dir by
//! `sync-server export` and over HTTP at `GET /v1/exports/incidents.{csv,geojson,json}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde::Deserialize;
use sync_core::export::{self, Format};
use sync_core::taxonomy::TaxonomyError;
use sync_core::{GridMap, Incident, IncidentDoc, Status, Taxonomy};

use crate::api::{ApiError, App, bearer, blocking, require_reader};
use crate::storage::{IncidentFilter, Scope, Storage, StorageError};
use crate::sync::scope_of;

/// The category list the server names categories by.
pub fn taxonomy() -> &'static Taxonomy {
    Taxonomy::builtin()
}

/// The filters as typed on the command line or in a query string. Empty
/// values count as absent.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct FilterArgs {
    /// First day to include, YYYY-MM-DD, in each community's time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Last day to include (inclusive).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
    /// Only this community (an id from the grid file, e.g. HLT-CX-HX).
    #[arg(long)]
    pub community: Option<String>,
    /// Only this grid cell.
    #[arg(long, value_name = "CELL")]
    pub grid: Option<String>,
    /// Only this status (reported, dispatched, in_progress, resolved, verified, closed, rejected, duplicate).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this category code.
    #[arg(long)]
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
    #[error("unknown community `{given}`; known communities are: {known}")]
    UnknownCommunity { given: String, known: String },
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
            FilterError::Taxonomy(_) => "bad_filter",
            FilterError::UnknownCommunity { .. } => "unknown_community",
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

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Filter(f) => ApiError::new(StatusCode::BAD_REQUEST, f.code(), f.to_string()),
            ExportError::OutOfScope(m) => ApiError::new(StatusCode::FORBIDDEN, "out_of_scope", m),
            ExportError::Storage(s) => s.into(),
            e @ (ExportError::Corrupt { .. } | ExportError::Render(_)) => {
                tracing::error!(error = %e, "export failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not read its own records for this export",
                )
            }
        }
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
        .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| FilterError::BadDate { param, value: shown(v) }))
        .transpose()
}

impl FilterArgs {
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
            .map(|c| match grids.community(c) {
                Some(found) => Ok(found.id.clone()),
                None => Err(FilterError::UnknownCommunity {
                    given: shown(c),
                    known: communities(grids).join(", "),
                }),
            })
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
        let status = given(&self.status).map(|s| shown(s).parse::<Status>()).transpose()?;
        let category = given(&self.category)
            .map(|c| taxonomy.require(&shown(c)).map(|c| c.code.clone()))
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

fn communities(grids: &GridMap) -> Vec<&str> {
    grids
        .districts
        .iter()
        .flat_map(|d| &d.streets)
        .flat_map(|s| &s.communities)
        .map(|c| c.id.as_str())
        .collect()
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

/// Decodes a stored incident document.
pub fn decode(id: &str, doc: &[u8]) -> Result<Incident, ExportError> {
    IncidentDoc::read_saved(doc).map_err(|e| ExportError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// The incidents in `scope` that match `filter`, oldest first.
pub fn select(
    storage: &dyn Storage,
    grids: &GridMap,
    scope: &Scope,
    filter: &ExportFilter,
) -> Result<Vec<Incident>, ExportError> {
    let query = IncidentFilter {
        grids: cells(grids, scope, filter.community.as_deref(), filter.grid.as_deref())?,
        status: filter.status.map(|s| s.as_str().to_owned()),
        category: filter.category.clone(),
    };
    let mut out = Vec::new();
    for stored in storage.incidents(&query)? {
        let incident = decode(&stored.id, &stored.doc)?;
        let day = export::local_day(grids, &incident);
        if filter.from.is_some_and(|from| day < from) || filter.to.is_some_and(|to| day > to) {
            continue;
        }
        out.push(incident);
    }
    Ok(out)
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

pub fn routes(app: App) -> Router {
    Router::new()
        .route("/v1/exports/{file}", get(http_export))
        .with_state(app)
}

async fn http_export(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(file): UrlPath<String>,
    query: Result<Query<FilterArgs>, QueryRejection>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = require_reader(&app, bearer(&headers))?;
        let format = file.strip_prefix("incidents.").and_then(Format::parse).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_export",
                "the exports are incidents.csv, incidents.geojson and incidents.json",
            )
        })?;
        let Query(args) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
        let filter = args.parse(&app.grids, taxonomy()).map_err(ExportError::from)?;
        let scope = scope_of(&device, &app.grids);
        let incidents = select(app.storage.as_ref(), &app.grids, &scope, &filter)?;
        let bytes = export::render(format, &incidents, taxonomy()).map_err(ExportError::from)?;
        tracing::info!(device = %device.id, format = format.as_str(), incidents = incidents.len(), "export");
        let disposition = format!("attachment; filename=\"{}\"", file_name(&filter, format));
        Ok((
            [
                (header::CONTENT_TYPE, format.content_type().to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}

/// `sync-server export`: every community, on the data dir.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// Output format.
    #[arg(long, value_parser = ["csv", "geojson", "json"])]
    pub format: String,
    /// Write to this file instead of standard output (replaced whole, never half-written).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run_cli(config: &crate::Config, args: &CliArgs) -> anyhow::Result<()> {
    let format = Format::parse(&args.format).expect("clap checked the format");
    let grids = crate::load_grids(config)?;
    let filter = args.filter.parse(&grids, taxonomy())?;
    let storage = crate::open_storage(&config.data_dir)?;
    let incidents = select(&storage, &grids, &Scope::All, &filter)?;
    let bytes = export::render(format, &incidents, taxonomy())?;
    match &args.out {
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("cannot write to standard output");
                }
                _ => {}
            }
        }
        Some(path) => {
            write_whole(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} incidents to {}", incidents.len(), path.display());
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` in one rename, so a reader never sees half a file.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> FilterArgs {
        let mut a = FilterArgs::default();
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
        let e = args(pairs).parse(&GridMap::builtin(), taxonomy()).unwrap_err();
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
            .parse(&GridMap::builtin(), taxonomy())
            .unwrap();
        assert_eq!(f, ExportFilter::default());
        assert_eq!(file_name(&f, Format::Csv), "incidents.csv");
        let f = args(&[("community", "HLT-CX-HX"), ("from", "2026-11-01"), ("to", "2026-11-30")])
            .parse(&GridMap::builtin(), taxonomy())
            .unwrap();
        assert_eq!(
            file_name(&f, Format::Geojson),
            "incidents-HLT-CX-HX-2026-11-01-to-2026-11-30.geojson"
        );
    }
}

//! The center's actions on one case: the forms on the incident page and
//! the handler they post to. Each form carries the session's CSRF token and
//! is refused unless its Origin is this server; what it asks for is made
//! and admitted by `sync::center`, under the same rules as a device's push.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use sync_core::incident::Dispatch;
use sync_core::{Incident, Status, Taxonomy, rules};

use super::session::{self, SignedIn};
use super::{error_page, secure, signed_in};
use crate::accounts::scope_of;
use crate::clock::ServerTime;
use crate::http::App;
use crate::http::client::{Client, audit};
use crate::http::error::blocking;
use crate::storage::AuditKind;
use crate::sync::Caller;
use crate::sync::center::{Act, ActError, Action, act, token_key};

/// What an action form posts.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    department: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    of: String,
    #[serde(default)]
    note: String,
}

/// The longest time limit a form may give, in hours (a year).
const MAX_HOURS: i64 = 366 * 24;

impl ActForm {
    /// The action asked for, or why the form makes no sense.
    fn action(&self, now: DateTime<FixedOffset>) -> Result<Action, String> {
        let status = |s: Status| Ok(Action::Move(s));
        match self.action.as_str() {
            "dispatch" => self.dispatch(now).map(Action::Dispatch),
            "in_progress" => status(Status::InProgress),
            "resolved" => status(Status::Resolved),
            "rejected" => status(Status::Rejected),
            "closed" => status(Status::Closed),
            "duplicate" if !self.of.trim().is_empty() => Ok(Action::Duplicate {
                of: self.of.trim().chars().take(64).collect(),
            }),
            "duplicate" => Err("Say which case this one duplicates.".to_owned()),
            "note" => Ok(Action::Note),
            _ => Err("That is not an action of this page.".to_owned()),
        }
    }

    fn dispatch(&self, now: DateTime<FixedOffset>) -> Result<Dispatch, String> {
        let department = Taxonomy::builtin()
            .resolve_department(&self.department)
            .map_err(|e| e.to_string())?;
        let hours: i64 = self
            .hours
            .trim()
            .parse()
            .ok()
            .filter(|h| (1..=MAX_HOURS).contains(h))
            .ok_or("The time limit is a whole number of hours, 1 to 8784.")?;
        Ok(Dispatch {
            department: department.code.clone(),
            deadline: now + TimeDelta::hours(hours),
        })
    }
}

pub(super) async fn act_on(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActForm>,
) -> Response {
    let result = blocking(move || {
        let Some(signed) = signed_in(&app, &client, &headers)? else {
            return Ok(error_page(
                StatusCode::UNAUTHORIZED,
                "Sign in first; nothing was changed.",
            ));
        };
        if !session::same_origin(&client, &headers) || form.csrf != signed.csrf {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "This form did not come from this server's own page; nothing was changed.",
            ));
        }
        // One instant for the move and its deadline.
        let now = Utc::now().fixed_offset();
        let action = match form.action(now) {
            Ok(a) => a,
            Err(why) => return Ok(error_page(StatusCode::UNPROCESSABLE_ENTITY, &why)),
        };
        let note = Some(form.note.as_str()).filter(|n| !n.trim().is_empty());
        let done = run(&app, &signed, &id, action, note, now);
        let detail = format!("incident {id}: {}", form.action);
        match done {
            Ok(()) => {
                audit(&app, &client, AuditKind::CenterAction, Some(&signed.who), &detail)?;
                Ok(see_incident(&id))
            }
            Err(e) if e.is_caller_mistake() => Ok(error_page(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())),
            Err(ActError::Storage(e)) => Err(e.into()),
            Err(e) => {
                tracing::error!(incident = %id, error = %e, "center action failed");
                Ok(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server could not record this now; try again.",
                ))
            }
        }
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

/// Makes the change under the push lock, as a sync would.
fn run(
    app: &App,
    signed: &SignedIn,
    id: &str,
    action: Action,
    note: Option<&str>,
    at: DateTime<FixedOffset>,
) -> Result<(), ActError> {
    let (key, token) = token_key(app.storage.as_ref(), &signed.who)?;
    let scope = scope_of(&token, &app.grids);
    let now = ServerTime::now();
    let caller = Caller {
        device: &token,
        scope: &scope,
        now: &now,
    };
    let asked = Act {
        incident: id,
        action,
        note,
    };
    let _guard = app.push_lock.lock().unwrap_or_else(|p| p.into_inner());
    act(app.storage.as_ref(), &caller, &key, &asked, at)
}

fn see_incident(id: &str) -> Response {
    let to = format!("/center/incidents/{id}");
    secure((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// The forms for what the center may do with this case now.
pub(super) fn forms(signed: &SignedIn, incident: &Incident) -> Markup {
    let taxonomy = Taxonomy::builtin();
    let category = taxonomy.get(&incident.category);
    let default_dept = category.and_then(|c| c.department.as_deref()).unwrap_or("");
    let default_hours = category.and_then(|c| c.time_limit_hours).unwrap_or(72);
    let author = signed.who.author();
    let mine = rules::check_department(incident, &author).is_ok();
    let can = |to: Status| mine && rules::check_move(incident, to, &author).is_ok();
    let action = format!("/center/incidents/{}/act", incident.id);
    let csrf = html! { input type="hidden" name="csrf" value=(signed.csrf); };
    html! {
        section id="actions" {
            h2 { "处置 Actions" }
            @if can(Status::Dispatched) {
                form method="post" action=(action) class="action" {
                    (csrf)
                    input type="hidden" name="action" value="dispatch";
                    label { "部门 Department " select name="department" {
                        @for d in &taxonomy.departments {
                            option value=(d.code) selected[d.code == default_dept] { (d.name_zh) " " (d.name_en) }
                        }
                    } }
                    " "
                    label { "时限 Time limit (hours) " input type="number" name="hours" min="1" max=(MAX_HOURS) value=(default_hours); }
                    " "
                    label { "备注 Note " input type="text" name="note" maxlength="2000"; }
                    " " button type="submit" { "派遣 Dispatch" }
                }
            }
            @for (to, label) in [
                (Status::InProgress, "处置中 In progress"),
                (Status::Resolved, "已处置 Resolved"),
                (Status::Rejected, "不予受理 Reject"),
                (Status::Closed, "结案 Close"),
            ] {
                @if can(to) {
                    form method="post" action=(action) class="action" {
                        (csrf)
                        input type="hidden" name="action" value=(to.as_str());
                        label { "备注 Note " input type="text" name="note" maxlength="2000"; }
                        " " button type="submit" { (label) }
                    }
                }
            }
            @if can(Status::Duplicate) {
                form method="post" action=(action) class="action" {
                    (csrf)
                    input type="hidden" name="action" value="duplicate";
                    label { "重复于 Duplicate of (case) " input type="text" name="of" maxlength="64" required; }
                    " " button type="submit" { "标记重复 Mark duplicate" }
                }
            }
            @if mine {
                form method="post" action=(action) class="action" {
                    (csrf)
                    input type="hidden" name="action" value="note";
                    label { "备注 Note " input type="text" name="note" maxlength="2000" required; }
                    " " button type="submit" { "添加备注 Add note" }
                }
            }
        }
    }
}

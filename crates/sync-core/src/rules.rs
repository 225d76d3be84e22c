//! The rules every change to an incident keeps, one set for the device and
//! the server.
//!
//! A change is judged against the document as its author saw it (the state
//! at the change's dependencies), never against whatever else the server
//! has merged since, so two honest concurrent edits both pass. What is
//! judged:
//!
//! - the chain: a change belongs to this incident and follows its author's
//!   previous change ([`Admission`]), checked before Automerge sees it;
//! - the shape: the document still reads, keeps the containers it was
//!   created with and gains no unknown fields;
//! - who may do what ([`check_change`]): fixed fields, append-only lists
//!   whose entries carry their author's account, corrections, status moves
//!   by workflow and role ([`check_move`]), and the [`limits`].
//!
//! The role table is written out in `docs/data-model.md`.

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, Change, ChangeHash};

use crate::account::Role;
use crate::incident::{Incident, IncidentDoc, IncidentId, Note, NoteKind, Status, StatusChange};
use crate::taxonomy::Taxonomy;

/// Sizes that real use fits comfortably, the same on both sides.
pub mod limits {
    /// A description, in UTF-8 bytes (about 2,700 Chinese characters).
    pub const MAX_DESCRIPTION: usize = 8 * 1024;
    /// One note's text, in UTF-8 bytes.
    pub const MAX_NOTE: usize = 8 * 1024;
    /// An address, in UTF-8 bytes.
    pub const MAX_ADDRESS: usize = 512;
    /// Ids, codes, names of accounts, MIME types and times, in bytes.
    pub const MAX_SHORT: usize = 128;
    pub const MAX_NOTES: usize = 200;
    pub const MAX_HISTORY: usize = 200;
    pub const MAX_PHOTOS: usize = 50;
    /// A saved incident document, in bytes.
    pub const MAX_DOC: usize = 2 * 1024 * 1024;
}

/// Which rule a change broke; `code` is what the protocol and logs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The change does not belong here: wrong dependencies or sequence.
    Chain,
    /// The document after the change does not read as an incident.
    Schema,
    /// The change makes or names another incident than the one it came under.
    WrongIncident,
    /// A field fixed at creation was changed, or a container replaced.
    Fixed,
    /// A note, history entry or photo was changed or removed.
    AppendOnly,
    /// An entry names another account than its author's, or a device
    /// creates an incident in someone else's name.
    Author,
    /// A correction by someone who may not make it, or without its entry.
    Correction,
    /// A status move the workflow does not have, or a history that does
    /// not match the move.
    Workflow,
    /// The author's role may not do this.
    Role,
    /// A category the taxonomy does not have.
    Category,
    /// A dispatch without a department of the taxonomy or a sound deadline.
    Department,
    /// Something is larger than [`limits`] allow.
    Limit,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::Chain => "chain",
            Rule::Schema => "schema",
            Rule::WrongIncident => "wrong_incident",
            Rule::Fixed => "fixed_field",
            Rule::AppendOnly => "append_only",
            Rule::Author => "author",
            Rule::Correction => "correction",
            Rule::Workflow => "workflow",
            Rule::Role => "role",
            Rule::Category => "category",
            Rule::Department => "department",
            Rule::Limit => "limit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{}`: {detail}", rule.code())]
pub struct RuleBroken {
    pub rule: Rule,
    pub detail: String,
}

fn broken(rule: Rule, detail: impl Into<String>) -> RuleBroken {
    RuleBroken {
        rule,
        detail: detail.into(),
    }
}

/// Who made a change: the account, device and role behind its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Author<'a> {
    pub account: &'a str,
    pub device: &'a str,
    pub role: Role,
    /// The server's number of the device, which its case numbers carry;
    /// `None` where it is not known (the rule on it is then not checked).
    pub number: Option<u32>,
    /// The department a department account speaks for (a code of the
    /// taxonomy); `None` for every other role.
    pub department: Option<&'a str>,
}

/// The roles besides the operator's that may move an incident from `from`
/// to `to`, after the practice of city grid management: the worker finds
/// and reports, may fix a small problem on the spot, and checks on site a
/// case someone else handled; the center dispatches (which registers the
/// case), rejects, marks duplicates and closes; the department a case is
/// dispatched to records its own progress (the center may record it for
/// a department without an account). Which department may touch which
/// case is [`check_department`]'s business.
pub fn roles_for(from: Status, to: Status) -> &'static [Role] {
    use Status::*;
    const CENTER: &[Role] = &[Role::Center];
    const WORKER: &[Role] = &[Role::Worker];
    const BOTH: &[Role] = &[Role::Worker, Role::Center];
    const PROGRESS: &[Role] = &[Role::Center, Role::Department];
    if !from.can_move_to(to) {
        return &[];
    }
    match (from, to) {
        (Reported, Resolved) | (Resolved, InProgress) => BOTH,
        (Dispatched, InProgress) | (InProgress, Resolved) => PROGRESS,
        (Resolved, Verified) => WORKER,
        (Reported | Dispatched | InProgress, _) | (Verified, Closed) => CENTER,
        _ => &[],
    }
}

/// Whether `author` may move `incident` to `to`: the workflow has the
/// move, the role may make it, and a worker verifies only a fix someone
/// else made.
pub fn check_move(incident: &Incident, to: Status, author: &Author<'_>) -> Result<(), RuleBroken> {
    let from = incident.status;
    if !from.can_move_to(to) {
        return Err(broken(
            Rule::Workflow,
            crate::incident::StatusError::Transition { from, to }.to_string(),
        ));
    }
    if author.role != Role::Operator && !roles_for(from, to).contains(&author.role) {
        return Err(broken(
            Rule::Role,
            format!(
                "a {} account may not move an incident from `{from}` to `{to}`",
                author.role
            ),
        ));
    }
    let resolver = incident.status_history.iter().rev().find(|h| h.to == Status::Resolved);
    if to == Status::Verified && author.role == Role::Worker && resolver.is_some_and(|h| h.by == author.account) {
        return Err(broken(
            Rule::Role,
            format!(
                "{} resolved this incident, so another worker verifies it",
                author.account
            ),
        ));
    }
    Ok(())
}

/// Checks what one change did: `before` is the incident at the change's
/// dependencies (`None` for the change that creates it), `after` the
/// incident with the change applied to that state.
pub fn check_change(
    id: &IncidentId,
    before: Option<&Incident>,
    after: &Incident,
    author: &Author<'_>,
    taxonomy: &Taxonomy,
) -> Result<(), RuleBroken> {
    if after.id != *id {
        return Err(broken(
            Rule::WrongIncident,
            format!("the change makes incident {}, not {id}", after.id),
        ));
    }
    check_limits(after)?;
    match before {
        None => check_creation(after, author)?,
        Some(before) => check_update(before, after, author)?,
    }
    // Entries may be added anywhere among the old ones (two devices at once).
    let old = before.map_or(&[][..], |b| b.status_history.as_slice());
    let added: Vec<&StatusChange> = after.status_history.iter().filter(|h| !old.contains(h)).collect();
    check_dispatches(&added, taxonomy)?;
    if before.is_none_or(|b| b.category != after.category) && taxonomy.get(&after.category).is_none() {
        return Err(broken(
            Rule::Category,
            format!("`{}` is not a category of the taxonomy", after.category),
        ));
    }
    Ok(())
}

fn check_creation(after: &Incident, author: &Author<'_>) -> Result<(), RuleBroken> {
    if matches!(author.role, Role::Center | Role::Department) {
        return Err(broken(
            Rule::Role,
            format!("a {} account does not report incidents; grid workers do", author.role),
        ));
    }
    if after.reporter != author.account || after.device != author.device {
        return Err(broken(
            Rule::Author,
            format!(
                "the incident says it was reported by {} on device {}, but {} on device {} made it",
                after.reporter, after.device, author.account, author.device
            ),
        ));
    }
    let first = after.status_history.as_slice();
    let opened = matches!(first, [h] if h.from.is_none() && h.to == Status::Reported && h.by == author.account);
    if after.status != Status::Reported || !after.status_conflicts.is_empty() || !opened {
        return Err(broken(
            Rule::Workflow,
            "a new incident starts `reported`, with one history entry by its reporter",
        ));
    }
    check_case(None, after, author)?;
    check_new_entries(&after.notes, &[], after, author)
}

/// A new history entry names a department only when it dispatches, one
/// the taxonomy lists, with a deadline after the dispatch and within a year.
fn check_dispatches(added: &[&StatusChange], taxonomy: &Taxonomy) -> Result<(), RuleBroken> {
    for h in added {
        let Some(x) = &h.dispatch else {
            continue;
        };
        if h.to != Status::Dispatched {
            return Err(broken(
                Rule::Department,
                "only a move to `dispatched` names a department",
            ));
        }
        if taxonomy.department(&x.department).is_none() {
            return Err(broken(
                Rule::Department,
                format!("`{}` is not a department of the taxonomy", x.department),
            ));
        }
        let span = x.deadline - h.at;
        if span <= chrono::TimeDelta::zero() || span > chrono::TimeDelta::days(366) {
            return Err(broken(
                Rule::Department,
                "a dispatch's deadline comes after the dispatch, within a year",
            ));
        }
    }
    Ok(())
}

/// A case number is given by the device that made the incident, carries
/// that device's number, and never changes once given.
fn check_case(before: Option<&Incident>, after: &Incident, author: &Author<'_>) -> Result<(), RuleBroken> {
    let Some(case) = &after.case else {
        return match before.and_then(|b| b.case.as_ref()) {
            Some(_) => Err(broken(Rule::Fixed, "the case number is fixed once given")),
            None => Ok(()),
        };
    };
    match before.map(|b| b.case.as_ref()) {
        Some(Some(old)) if old == case => return Ok(()),
        Some(Some(_)) => return Err(broken(Rule::Fixed, "the case number is fixed once given")),
        _ => {}
    }
    if after.device != author.device {
        return Err(broken(
            Rule::Author,
            "only the device that made an incident gives it its case number",
        ));
    }
    match author.number {
        Some(n) if n != case.device() => Err(broken(
            Rule::Author,
            format!(
                "case number {case} names device {}, but this device is number {n}",
                case.device()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_update(before: &Incident, after: &Incident, author: &Author<'_>) -> Result<(), RuleBroken> {
    check_department(before, author)?;
    let fixed = [
        ("schema", before.schema == after.schema),
        ("reporter", before.reporter == after.reporter),
        ("device", before.device == after.device),
        ("captured_at", before.captured_at == after.captured_at),
    ];
    if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
        return Err(broken(
            Rule::Fixed,
            format!("`{field}` is fixed when the incident is made"),
        ));
    }
    let new_notes = appended(&before.notes, &after.notes, "a note")?;
    let new_history = appended(&before.status_history, &after.status_history, "a status history entry")?;
    if let Some(p) = before.photos.iter().find(|p| !after.photos.contains(p)) {
        return Err(broken(
            Rule::AppendOnly,
            format!("photo {} was changed or removed", &p.original.to_hex()[..12]),
        ));
    }
    check_new_entries(&new_notes, &before.photos, after, author)?;
    if new_history.iter().any(|h| h.by != author.account) {
        return Err(broken(
            Rule::Author,
            "a status history entry names another account than its author's",
        ));
    }
    check_status(before, after, new_history.len(), author)?;
    check_case(Some(before), after, author)?;
    check_correction(before, after, &new_notes, author)
}

/// A department account changes only the cases whose last dispatch (as
/// the change's author saw the case) names its department; a case sent on
/// to another department is that one's from then on.
pub fn check_department(before: &Incident, author: &Author<'_>) -> Result<(), RuleBroken> {
    if author.role != Role::Department {
        return Ok(());
    }
    let named = before.dispatch().map(|d| d.department.as_str());
    if named.is_some() && named == author.department {
        return Ok(());
    }
    Err(broken(
        Rule::Role,
        format!(
            "{} may change only the cases dispatched to its department",
            author.account
        ),
    ))
}

/// The entries of `after` that are not in `before`, when `before` is kept
/// whole and in order (new entries may sit anywhere among them).
fn appended<T: PartialEq + Clone>(before: &[T], after: &[T], what: &str) -> Result<Vec<T>, RuleBroken> {
    let mut old = before.iter().peekable();
    let mut new = Vec::new();
    for entry in after {
        if old.peek() == Some(&entry) {
            old.next();
        } else {
            new.push(entry.clone());
        }
    }
    match old.next() {
        None => Ok(new),
        Some(_) => Err(broken(Rule::AppendOnly, format!("{what} was changed or removed"))),
    }
}

/// New notes and photos carry their author's account.
fn check_new_entries(
    new_notes: &[Note],
    old_photos: &[crate::PhotoRef],
    after: &Incident,
    author: &Author<'_>,
) -> Result<(), RuleBroken> {
    if new_notes.iter().any(|n| n.author != author.account) {
        return Err(broken(
            Rule::Author,
            "a note names another author than the account that wrote it",
        ));
    }
    let new_photos = after.photos.iter().filter(|p| !old_photos.contains(p));
    if new_photos.into_iter().any(|p| p.added_by != author.account) {
        return Err(broken(
            Rule::Author,
            "a photo names another account than the one that added it",
        ));
    }
    Ok(())
}

/// A status move comes with exactly one history entry that tells it.
fn check_status(
    before: &Incident,
    after: &Incident,
    new_entries: usize,
    author: &Author<'_>,
) -> Result<(), RuleBroken> {
    if before.status == after.status {
        if new_entries > 0 {
            return Err(broken(Rule::Workflow, "a status history entry without a status move"));
        }
        return Ok(());
    }
    let told = after
        .status_history
        .iter()
        .filter(|h| !before.status_history.contains(h))
        .any(|h| h.from == Some(before.status) && h.to == after.status);
    if new_entries != 1 || !told {
        return Err(broken(
            Rule::Workflow,
            format!(
                "the move from `{}` to `{}` needs one history entry that tells it",
                before.status, after.status
            ),
        ));
    }
    check_move(before, after.status, author)
}

/// Category, description, location and grid may be corrected by the
/// reporter or the center (the grid by the center only), with a note of
/// kind `correction` in the same change.
fn check_correction(
    before: &Incident,
    after: &Incident,
    new_notes: &[Note],
    author: &Author<'_>,
) -> Result<(), RuleBroken> {
    let content = before.category != after.category
        || before.description != after.description
        || before.location != after.location;
    if !content && before.grid == after.grid {
        return Ok(());
    }
    // A move to another cell is a correction too: the reporter files it in
    // the right one of its own cells (the server's scope check keeps it
    // there), the center in any cell of its community.
    let center = matches!(author.role, Role::Center | Role::Operator);
    if !(center || author.account == before.reporter) {
        return Err(broken(
            Rule::Correction,
            format!(
                "only the reporter ({}) or the center corrects an incident",
                before.reporter
            ),
        ));
    }
    if !new_notes.iter().any(|n| n.kind == NoteKind::Correction) {
        return Err(broken(
            Rule::Correction,
            "a correction comes with a note of kind `correction`",
        ));
    }
    Ok(())
}

/// Every size in [`limits`].
pub fn check_limits(i: &Incident) -> Result<(), RuleBroken> {
    use limits::*;
    let over = |what: &str, len: usize, max: usize| -> Result<(), RuleBroken> {
        match len > max {
            true => Err(broken(
                Rule::Limit,
                format!("{what} is {len} bytes; the limit is {max}"),
            )),
            false => Ok(()),
        }
    };
    over("the description", i.description.len(), MAX_DESCRIPTION)?;
    over(
        "the address",
        i.location.address.as_deref().map_or(0, str::len),
        MAX_ADDRESS,
    )?;
    for (what, v) in [
        ("the category", &i.category),
        ("the grid cell", &i.grid),
        ("the reporter", &i.reporter),
    ] {
        over(what, v.len(), MAX_SHORT)?;
    }
    over("the device id", i.device.len(), MAX_SHORT)?;
    for n in &i.notes {
        over("a note", n.text.len(), MAX_NOTE)?;
        over("a note's author", n.author.len(), MAX_SHORT)?;
    }
    for h in &i.status_history {
        over("a status history entry's account", h.by.len(), MAX_SHORT)?;
    }
    for p in &i.photos {
        let taken = p.taken_at.as_deref().map_or(0, str::len);
        over(
            "a photo's fields",
            p.mime.len().max(p.added_by.len()).max(taken),
            MAX_SHORT,
        )?;
    }
    let counts = [
        ("notes", i.notes.len(), MAX_NOTES),
        ("status history entries", i.status_history.len(), MAX_HISTORY),
        ("photos", i.photos.len(), MAX_PHOTOS),
    ];
    match counts.iter().find(|(_, n, max)| n > max) {
        Some((what, n, max)) => Err(broken(Rule::Limit, format!("{n} {what}; the limit is {max}"))),
        None => Ok(()),
    }
}

/// What one change is, as the chain rules need it.
#[derive(Debug, Clone)]
struct Link {
    deps: Vec<ChangeHash>,
    actor: ActorId,
    seq: u64,
    max_op: u64,
}

impl Link {
    fn of(c: &Change) -> Link {
        Link {
            deps: c.deps().to_vec(),
            actor: c.actor_id().clone(),
            seq: c.seq(),
            max_op: c.max_op(),
        }
    }
}

/// One incident's copy taking in changes one at a time, each checked
/// against the rules before it is applied. Dropping it without
/// [`Admission::into_doc`] keeps nothing.
pub struct Admission<'t> {
    doc: IncidentDoc,
    id: IncidentId,
    taxonomy: &'t Taxonomy,
    links: HashMap<ChangeHash, Link>,
    /// Each actor's last change in this incident: (seq, hash).
    latest: HashMap<ActorId, (u64, ChangeHash)>,
    current: Option<Incident>,
}

/// What [`Admission::admit_all`] did with a batch.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Hashes of the changes newly applied, in the order applied.
    pub applied: Vec<ChangeHash>,
    /// Changes whose dependencies this copy lacks: not applied, not judged.
    pub waiting: Vec<Change>,
}

impl<'t> Admission<'t> {
    /// Starts from a copy that holds only admitted changes (or none).
    pub fn new(mut doc: IncidentDoc, id: IncidentId, taxonomy: &'t Taxonomy) -> Result<Admission<'t>, RuleBroken> {
        let mut links = HashMap::new();
        let mut latest: HashMap<ActorId, (u64, ChangeHash)> = HashMap::new();
        for c in doc.all_changes() {
            let link = Link::of(&c);
            let last = latest.entry(link.actor.clone()).or_insert((0, c.hash()));
            if link.seq >= last.0 {
                *last = (link.seq, c.hash());
            }
            links.insert(c.hash(), link);
        }
        let current = match links.is_empty() {
            true => None,
            false => Some(doc.read().map_err(|e| broken(Rule::Schema, e.to_string()))?),
        };
        Ok(Admission {
            doc,
            id,
            taxonomy,
            links,
            latest,
            current,
        })
    }

    /// Admits every change of a batch whose dependencies are met, in
    /// causal order; `authors` names who stands behind an actor. The first
    /// broken rule refuses the whole batch, and the copy is then spent.
    pub fn admit_all<'a>(
        &mut self,
        changes: Vec<Change>,
        authors: impl Fn(&ActorId) -> Option<Author<'a>>,
    ) -> Result<Admitted, RuleBroken> {
        let mut out = Admitted::default();
        let mut seen = HashSet::new();
        let mut rest: Vec<Change> = changes.into_iter().filter(|c| seen.insert(c.hash())).collect();
        loop {
            let (ready, waiting): (Vec<Change>, Vec<Change>) = rest
                .into_iter()
                .partition(|c| c.deps().iter().all(|d| self.links.contains_key(d)));
            if ready.is_empty() {
                out.waiting = waiting;
                return Ok(out);
            }
            for change in ready {
                if self.links.contains_key(&change.hash()) {
                    continue;
                }
                let author = authors(change.actor_id()).ok_or_else(|| {
                    broken(
                        Rule::Author,
                        format!("change {} comes from a device this copy does not know", change.hash()),
                    )
                })?;
                out.applied.push(change.hash());
                self.admit(change, &author)?;
            }
            rest = waiting;
        }
    }

    /// Whether this copy holds the change (admitted now or before): a
    /// lookup in what the admission already knows, where asking the
    /// document would rebuild the change from its operations.
    pub fn holds(&self, hash: &ChangeHash) -> bool {
        self.links.contains_key(hash)
    }

    /// Checks one change whose dependencies are all here, then applies it.
    /// After an error this copy may hold part of what was refused: drop it.
    pub fn admit(&mut self, change: Change, author: &Author<'_>) -> Result<(), RuleBroken> {
        self.check_chain(&change)?;
        let link = Link::of(&change);
        let hash = change.hash();
        let at_heads = {
            let mut heads = self.doc.heads();
            let mut deps = link.deps.clone();
            heads.sort();
            deps.sort();
            heads == deps
        };
        let (before, after) = if at_heads {
            let before_shape = self.doc.shape();
            self.doc
                .apply_changes(vec![change])
                .map_err(|e| broken(Rule::Chain, e.to_string()))?;
            before_shape.check(&self.doc.shape())?;
            let after = self.doc.read().map_err(|e| broken(Rule::Schema, e.to_string()))?;
            (self.current.take(), after)
        } else {
            self.judge_concurrent(change)?
        };
        check_change(&self.id, before.as_ref(), &after, author, self.taxonomy)?;
        self.current = Some(match at_heads {
            true => after,
            false => self.doc.read().map_err(|e| broken(Rule::Schema, e.to_string()))?,
        });
        self.latest.insert(link.actor.clone(), (link.seq, hash));
        self.links.insert(hash, link);
        Ok(())
    }

    /// A change made beside others this copy has: judged on a fork at its
    /// dependencies, then applied here too.
    fn judge_concurrent(&mut self, change: Change) -> Result<(Option<Incident>, Incident), RuleBroken> {
        let deps = change.deps().to_vec();
        let mut fork = self
            .doc
            .fork_at(&deps)
            .map_err(|e| broken(Rule::Chain, e.to_string()))?;
        let before = fork.read().map_err(|e| broken(Rule::Schema, e.to_string()))?;
        let before_shape = fork.shape();
        fork.apply_changes(vec![change.clone()])
            .map_err(|e| broken(Rule::Chain, e.to_string()))?;
        before_shape.check(&fork.shape())?;
        let after = fork.read().map_err(|e| broken(Rule::Schema, e.to_string()))?;
        self.doc
            .apply_changes(vec![change])
            .map_err(|e| broken(Rule::Chain, e.to_string()))?;
        Ok((Some(before), after))
    }

    /// Dependencies and sequence: only the first change has none; each
    /// change follows its actor's previous change in this incident, which
    /// it must build on, and numbers its operations after everything it
    /// builds on.
    fn check_chain(&self, change: &Change) -> Result<(), RuleBroken> {
        let hash = change.hash();
        if change.deps().is_empty() != self.links.is_empty() {
            return Err(broken(
                Rule::Chain,
                match self.links.is_empty() {
                    true => format!("change {hash} builds on changes this incident does not have"),
                    false => format!("change {hash} starts a new document inside incident {}", self.id),
                },
            ));
        }
        let previous = self.latest.get(change.actor_id());
        let expected = previous.map_or(1, |(seq, _)| seq + 1);
        if change.seq() != expected {
            return Err(broken(
                Rule::Chain,
                format!(
                    "change {hash} is number {} of its author, where {expected} comes next",
                    change.seq()
                ),
            ));
        }
        let past = self.ancestors(change.deps());
        if previous.is_some_and(|(_, prev)| !past.contains(prev)) {
            return Err(broken(
                Rule::Chain,
                format!("change {hash} does not build on its author's previous change"),
            ));
        }
        let max_op = past
            .iter()
            .filter_map(|h| self.links.get(h))
            .map(|l| l.max_op)
            .max()
            .unwrap_or(0);
        if change.start_op().get() <= max_op {
            return Err(broken(
                Rule::Chain,
                format!("change {hash} reuses operation numbers it builds on"),
            ));
        }
        Ok(())
    }

    /// Every change that `heads` build on, `heads` included.
    fn ancestors(&self, heads: &[ChangeHash]) -> HashSet<ChangeHash> {
        let mut seen = HashSet::new();
        let mut stack = heads.to_vec();
        while let Some(h) = stack.pop() {
            if seen.insert(h)
                && let Some(link) = self.links.get(&h)
            {
                stack.extend(link.deps.iter().copied());
            }
        }
        seen
    }

    /// The incident as admitted so far.
    pub fn incident(&self) -> Option<&Incident> {
        self.current.as_ref()
    }

    pub fn into_doc(self) -> IncidentDoc {
        self.doc
    }
}

/// The containers and the unknown root fields of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) containers: Vec<(&'static str, Option<automerge::ObjId>)>,
    pub(crate) unknown: Vec<String>,
}

impl Shape {
    /// Refuses what `after` replaced, deleted or added that it may not.
    fn check(&self, after: &Shape) -> Result<(), RuleBroken> {
        if let Some(key) = after.unknown.iter().find(|k| !self.unknown.contains(k)) {
            let key: String = key.chars().take(40).collect();
            return Err(broken(Rule::Fixed, format!("`{key}` is not a field of an incident")));
        }
        let created = self.containers.iter().all(|(_, id)| id.is_none());
        let replaced = self
            .containers
            .iter()
            .zip(&after.containers)
            .find(|((_, old), (_, new))| !created && old != new);
        match replaced {
            Some(((key, _), _)) => Err(broken(
                Rule::Fixed,
                format!("`{key}` was replaced or deleted; it is made once, with the incident"),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ReadDoc};
    use chrono::{DateTime, FixedOffset};

    use super::*;
    use crate::incident::{Correction, Dispatch, Location, NewIncident};

    const LI: Author<'static> = Author {
        account: "w-li",
        device: "dev-li",
        role: Role::Worker,
        number: None,
        department: None,
    };
    const WANG: Author<'static> = Author {
        account: "w-wang",
        device: "dev-wang",
        role: Role::Worker,
        number: None,
        department: None,
    };
    const CENTER: Author<'static> = Author {
        account: "center-hx",
        device: "dev-center",
        role: Role::Center,
        number: None,
        department: None,
    };
    const SHIZHENG: Author<'static> = Author {
        account: "dept-shizheng",
        device: "token-shizheng",
        role: Role::Department,
        number: None,
        department: Some("shizheng"),
    };
    const YUANLIN: Author<'static> = Author {
        account: "dept-yuanlin",
        device: "token-yuanlin",
        role: Role::Department,
        number: None,
        department: Some("yuanlin"),
    };

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(&format!("2026-11-20T{s}+08:00")).unwrap()
    }

    fn actor_of(a: &Author<'_>) -> ActorId {
        ActorId::from(blake3::hash(a.device.as_bytes()).as_bytes()[..16].to_vec())
    }

    fn authors(a: &ActorId) -> Option<Author<'static>> {
        [LI, WANG, CENTER, SHIZHENG, YUANLIN]
            .into_iter()
            .find(|x| actor_of(x) == *a)
    }

    fn new_incident(by: &Author<'_>) -> NewIncident {
        NewIncident {
            id: IncidentId::new(1_763_600_000_000, [7; 10]),
            category: "manhole-cover".into(),
            description: "井盖缺了一角".into(),
            location: Location::default(),
            grid: "HLT-CX-HX-02".into(),
            reporter: by.account.into(),
            device: by.device.into(),
            captured_at: t("09:00:00"),
            photos: vec![],
            case: None,
        }
    }

    /// The server's copy holding Li's new incident, and Li's own copy.
    fn reported() -> (Admission<'static>, IncidentDoc) {
        let mut li = IncidentDoc::create(&new_incident(&LI), actor_of(&LI)).unwrap();
        let id = li.read().unwrap().id;
        let mut server = Admission::new(IncidentDoc::receiver(None).unwrap(), id, Taxonomy::builtin()).unwrap();
        server.admit_all(li.all_changes(), authors).unwrap();
        (server, li)
    }

    /// A copy of the server's document as `who` edits it.
    fn copy_for(server: &mut Admission<'_>, who: &Author<'_>) -> IncidentDoc {
        let bytes = server.doc.save();
        IncidentDoc::load(&bytes, actor_of(who)).unwrap()
    }

    /// Pushes what `doc` has that the server lacks, as the server does: on
    /// a fresh admission over its copy, kept only when every change passes.
    fn push(server: &mut Admission<'static>, doc: &mut IncidentDoc) -> Result<Admitted, RuleBroken> {
        let saved = server.doc.save();
        let mut trial = Admission::new(
            IncidentDoc::receiver(Some(&saved)).unwrap(),
            server.id,
            Taxonomy::builtin(),
        )?;
        let heads = server.doc.heads();
        let changes = doc.automerge().get_changes(&heads);
        let admitted = trial.admit_all(changes, authors)?;
        *server = trial;
        Ok(admitted)
    }

    #[track_caller]
    fn refused(r: Result<Admitted, RuleBroken>, rule: Rule) -> String {
        match r {
            Err(e) if e.rule == rule => e.to_string(),
            other => panic!("expected rule {rule:?}, got {other:?}"),
        }
    }

    #[test]
    fn honest_edits_by_the_right_roles_pass() {
        let (mut server, _) = reported();
        let mut center = copy_for(&mut server, &CENTER);
        center
            .set_status(Status::Dispatched, CENTER.account, t("10:00:00"))
            .unwrap();
        center.add_note(CENTER.account, "派给市政", t("10:00:01")).unwrap();
        center
            .set_status(Status::InProgress, CENTER.account, t("11:00:00"))
            .unwrap();
        center
            .set_status(Status::Resolved, CENTER.account, t("12:00:00"))
            .unwrap();
        assert_eq!(push(&mut server, &mut center).unwrap().applied.len(), 4);
        let mut wang = copy_for(&mut server, &WANG);
        wang.set_status(Status::Verified, WANG.account, t("13:00:00")).unwrap();
        push(&mut server, &mut wang).unwrap();
        let mut center = copy_for(&mut server, &CENTER);
        center
            .set_status(Status::Closed, CENTER.account, t("14:00:00"))
            .unwrap();
        push(&mut server, &mut center).unwrap();
        assert_eq!(server.incident().unwrap().status, Status::Closed);
    }

    #[test]
    fn concurrent_honest_edits_are_judged_where_their_authors_stood() {
        let (mut server, mut li) = reported();
        let mut center = copy_for(&mut server, &CENTER);
        center
            .set_status(Status::Rejected, CENTER.account, t("10:00:00"))
            .unwrap();
        li.add_note(LI.account, "还在", t("10:00:30")).unwrap();
        li.set_status(Status::Resolved, LI.account, t("10:01:00")).unwrap();
        push(&mut server, &mut center).unwrap();
        // Li's move from `reported` is judged at `reported`, not at `rejected`.
        assert_eq!(push(&mut server, &mut li).unwrap().applied.len(), 2);
        let now = server.incident().unwrap();
        assert_eq!(
            (now.status, now.status_conflicts.clone()),
            (Status::Rejected, vec![Status::Resolved])
        );
    }

    #[test]
    fn a_change_that_does_not_follow_its_author_is_refused_before_automerge() {
        let (mut server, mut li) = reported();
        li.add_note(LI.account, "a", t("10:00:00")).unwrap();
        let real = li.automerge().get_last_local_change().unwrap();
        // The same change numbered one further, pushed alone.
        let forged = automerge::ExpandedChange {
            seq: real.seq() + 1,
            hash: None,
            ..real.decode()
        };
        let forged = Change::from(forged);
        let e = server.admit_all(vec![forged], authors).unwrap_err();
        assert_eq!(e.rule, Rule::Chain, "{e}");
        // A root change of another incident, under this one.
        let mut other = new_incident(&LI);
        other.id = IncidentId::new(1_763_600_000_001, [8; 10]);
        let mut x = IncidentDoc::create(&other, actor_of(&LI)).unwrap();
        let msg = refused(server.admit_all(x.all_changes(), authors), Rule::Chain);
        assert!(msg.contains("starts a new document"), "{msg}");
        // Under an id the server has not seen, it makes the wrong incident.
        let mut empty = Admission::new(IncidentDoc::receiver(None).unwrap(), server.id, Taxonomy::builtin()).unwrap();
        refused(empty.admit_all(x.all_changes(), authors), Rule::WrongIncident);
        // The real change still goes in afterwards.
        server.admit_all(vec![real.clone()], authors).unwrap();
        assert_eq!(server.incident().unwrap().notes.len(), 1);
    }

    #[test]
    fn a_colleague_cannot_rewrite_or_erase_an_incident() {
        let (mut server, _) = reported();
        type Attack = Box<dyn Fn(&mut automerge::AutoCommit)>;
        let attempts: Vec<(Rule, Attack)> = vec![
            (Rule::Fixed, Box::new(|d| d.put(ROOT, "reporter", "w-wang").unwrap())),
            (Rule::Fixed, Box::new(|d| d.put(ROOT, "device", "dev-wang").unwrap())),
            (
                Rule::Fixed,
                Box::new(|d| {
                    d.put_object(ROOT, "notes", ObjType::List).unwrap();
                }),
            ),
            (Rule::Fixed, Box::new(|d| d.put(ROOT, "extra", "x").unwrap())),
            (
                Rule::Correction,
                Box::new(|d| d.put(ROOT, "description", "改了").unwrap()),
            ),
            (Rule::Workflow, Box::new(|d| d.put(ROOT, "status", "closed").unwrap())),
            (
                Rule::AppendOnly,
                Box::new(|d| {
                    let (_, h) = d.get(ROOT, "status_history").unwrap().unwrap();
                    d.delete(&h, 0).unwrap();
                }),
            ),
        ];
        for (rule, attack) in attempts {
            let mut wang = copy_for(&mut server, &WANG);
            attack(wang.automerge());
            wang.automerge().commit();
            refused(push(&mut server, &mut wang), rule);
        }
        // A note signed with Li's name.
        let mut wang = copy_for(&mut server, &WANG);
        wang.add_note(LI.account, "我是李", t("10:00:00")).unwrap();
        refused(push(&mut server, &mut wang), Rule::Author);
        // A worker may not dispatch; the center may not report.
        let mut wang = copy_for(&mut server, &WANG);
        wang.set_status(Status::Dispatched, WANG.account, t("10:00:00"))
            .unwrap();
        refused(push(&mut server, &mut wang), Rule::Role);
        let mut c = IncidentDoc::create(&new_incident(&CENTER), actor_of(&CENTER)).unwrap();
        let mut fresh = Admission::new(IncidentDoc::receiver(None).unwrap(), server.id, Taxonomy::builtin()).unwrap();
        refused(fresh.admit_all(c.all_changes(), authors), Rule::Role);
        // Nor may a device report in another worker's name.
        let mut c = IncidentDoc::create(&new_incident(&LI), actor_of(&WANG)).unwrap();
        let mut fresh = Admission::new(IncidentDoc::receiver(None).unwrap(), server.id, Taxonomy::builtin()).unwrap();
        refused(fresh.admit_all(c.all_changes(), authors), Rule::Author);
        assert_eq!(
            server.incident().unwrap().notes.len(),
            0,
            "nothing of the attempts is kept"
        );
    }

    #[test]
    fn corrections_by_the_reporter_or_the_center_with_a_note() {
        let (mut server, mut li) = reported();
        let fix = Correction {
            category: Some("road-surface".into()),
            ..Correction::default()
        };
        assert!(li.correct(&fix, LI.account, t("10:00:00")).unwrap());
        push(&mut server, &mut li).unwrap();
        assert_eq!(server.incident().unwrap().category, "road-surface");
        let note = server.incident().unwrap().notes[0].clone();
        assert_eq!(
            (note.kind, note.text.as_str()),
            (NoteKind::Correction, "category: manhole-cover → road-surface")
        );
        let mut wang = copy_for(&mut server, &WANG);
        wang.correct(
            &Correction {
                description: Some("x".into()),
                ..Correction::default()
            },
            WANG.account,
            t("10:01:00"),
        )
        .unwrap();
        refused(push(&mut server, &mut wang), Rule::Correction);
        // The colleague may not move it either; the reporter may (the
        // server's scope check keeps the reporter to its own cells).
        let mut wang = copy_for(&mut server, &WANG);
        let move_to = |cell: &str| Correction {
            grid: Some(cell.into()),
            ..Correction::default()
        };
        wang.correct(&move_to("HLT-CX-HX-01"), WANG.account, t("10:02:00"))
            .unwrap();
        refused(push(&mut server, &mut wang), Rule::Correction);
        let mut li = copy_for(&mut server, &LI);
        li.correct(&move_to("HLT-CX-HX-03"), LI.account, t("10:02:30")).unwrap();
        push(&mut server, &mut li).unwrap();
        assert_eq!(server.incident().unwrap().grid, "HLT-CX-HX-03");
        let mut center = copy_for(&mut server, &CENTER);
        center
            .correct(
                &Correction {
                    category: Some("no-such".into()),
                    ..Correction::default()
                },
                CENTER.account,
                t("10:03:00"),
            )
            .unwrap();
        refused(push(&mut server, &mut center), Rule::Category);
        let mut center = copy_for(&mut server, &CENTER);
        center
            .correct(
                &Correction {
                    grid: Some("HLT-CX-HX-01".into()),
                    ..Correction::default()
                },
                CENTER.account,
                t("10:04:00"),
            )
            .unwrap();
        push(&mut server, &mut center).unwrap();
        assert_eq!(server.incident().unwrap().grid, "HLT-CX-HX-01");
    }

    #[test]
    fn a_worker_verifies_only_what_someone_else_fixed() {
        let (mut server, mut li) = reported();
        li.set_status(Status::Resolved, LI.account, t("10:00:00")).unwrap();
        push(&mut server, &mut li).unwrap();
        li.set_status(Status::Verified, LI.account, t("10:05:00")).unwrap();
        let msg = refused(push(&mut server, &mut li), Rule::Role);
        assert!(msg.contains("another worker verifies"), "{msg}");
        let mut wang = copy_for(&mut server, &WANG);
        wang.set_status(Status::Verified, WANG.account, t("10:06:00")).unwrap();
        push(&mut server, &mut wang).unwrap();
    }

    /// Li's incident, dispatched by the center to `department`.
    fn dispatched_to(department: &str) -> Admission<'static> {
        let (mut server, _) = reported();
        let mut center = copy_for(&mut server, &CENTER);
        let to = Dispatch {
            department: department.into(),
            deadline: t("20:00:00"),
        };
        center.dispatch(&to, CENTER.account, t("10:00:00")).unwrap();
        push(&mut server, &mut center).unwrap();
        server
    }

    #[test]
    fn a_department_progresses_only_the_cases_dispatched_to_it() {
        let mut server = dispatched_to("shizheng");
        // Another department may neither move nor annotate the case.
        let mut yuanlin = copy_for(&mut server, &YUANLIN);
        yuanlin.add_note(YUANLIN.account, "不归我们", t("10:10:00")).unwrap();
        let msg = refused(push(&mut server, &mut yuanlin), Rule::Role);
        assert!(msg.contains("dispatched to its department"), "{msg}");
        let mut yuanlin = copy_for(&mut server, &YUANLIN);
        yuanlin
            .set_status(Status::InProgress, YUANLIN.account, t("10:11:00"))
            .unwrap();
        refused(push(&mut server, &mut yuanlin), Rule::Role);
        // The department it names records its progress, with notes.
        let mut dept = copy_for(&mut server, &SHIZHENG);
        dept.set_status(Status::InProgress, SHIZHENG.account, t("11:00:00"))
            .unwrap();
        dept.add_note(SHIZHENG.account, "已到现场", t("11:00:01")).unwrap();
        push(&mut server, &mut dept).unwrap();
        // It does not decide the case: no rejection, no dispatch onward.
        for to in [Status::Dispatched] {
            let mut dept = copy_for(&mut server, &SHIZHENG);
            dept.set_status(to, SHIZHENG.account, t("11:30:00")).unwrap();
            refused(push(&mut server, &mut dept), Rule::Role);
        }
        let mut dept = copy_for(&mut server, &SHIZHENG);
        dept.set_status(Status::Resolved, SHIZHENG.account, t("12:00:00"))
            .unwrap();
        push(&mut server, &mut dept).unwrap();
        // Verifying and closing stay with the worker and the center.
        let mut dept = copy_for(&mut server, &SHIZHENG);
        dept.set_status(Status::Verified, SHIZHENG.account, t("12:30:00"))
            .unwrap();
        refused(push(&mut server, &mut dept), Rule::Role);
        let mut li = copy_for(&mut server, &LI);
        li.set_status(Status::Verified, LI.account, t("13:00:00")).unwrap();
        push(&mut server, &mut li).unwrap();
        assert_eq!(server.incident().unwrap().status, Status::Verified);
    }

    #[test]
    fn a_department_loses_a_case_sent_on_and_never_reports_or_corrects() {
        let mut server = dispatched_to("shizheng");
        let mut dept = copy_for(&mut server, &SHIZHENG);
        dept.set_status(Status::Rejected, SHIZHENG.account, t("10:30:00"))
            .unwrap();
        refused(push(&mut server, &mut dept), Rule::Role);
        let mut dept = copy_for(&mut server, &SHIZHENG);
        let fix = Correction {
            category: Some("road-surface".into()),
            ..Correction::default()
        };
        dept.correct(&fix, SHIZHENG.account, t("10:31:00")).unwrap();
        refused(push(&mut server, &mut dept), Rule::Correction);
        // The center sends it on to 园林: 市政 may no longer touch it.
        let mut center = copy_for(&mut server, &CENTER);
        center
            .set_status(Status::InProgress, CENTER.account, t("11:00:00"))
            .unwrap();
        let on = Dispatch {
            department: "yuanlin".into(),
            deadline: t("22:00:00"),
        };
        center.dispatch(&on, CENTER.account, t("11:01:00")).unwrap();
        push(&mut server, &mut center).unwrap();
        let mut dept = copy_for(&mut server, &SHIZHENG);
        dept.set_status(Status::InProgress, SHIZHENG.account, t("11:30:00"))
            .unwrap();
        refused(push(&mut server, &mut dept), Rule::Role);
        let mut yuanlin = copy_for(&mut server, &YUANLIN);
        yuanlin
            .set_status(Status::InProgress, YUANLIN.account, t("11:31:00"))
            .unwrap();
        push(&mut server, &mut yuanlin).unwrap();
        // A department never makes an incident.
        let mut made = IncidentDoc::create(&new_incident(&SHIZHENG), actor_of(&SHIZHENG)).unwrap();
        let mut fresh = Admission::new(IncidentDoc::receiver(None).unwrap(), server.id, Taxonomy::builtin()).unwrap();
        refused(fresh.admit_all(made.all_changes(), authors), Rule::Role);
    }

    #[test]
    fn limits_are_kept() {
        let (mut server, mut li) = reported();
        li.add_note(LI.account, &"长".repeat(limits::MAX_NOTE / 3 + 1), t("10:00:00"))
            .unwrap();
        refused(push(&mut server, &mut li), Rule::Limit);
    }

    #[test]
    fn every_move_of_the_workflow_has_a_role_and_no_other_move_has_one() {
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(!roles_for(from, to).is_empty(), from.can_move_to(to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn a_dispatch_names_a_listed_department_and_a_deadline_after_it() {
        use crate::incident::Dispatch;
        let (mut server, _) = reported();
        let to = |department: &str, hours: i64| Dispatch {
            department: department.into(),
            deadline: t("10:00:00") + chrono::TimeDelta::hours(hours),
        };
        for (bad, why) in [
            (to("nowhere", 24), "not a department"),
            (to("shizheng", -1), "after the dispatch"),
        ] {
            let mut center = copy_for(&mut server, &CENTER);
            center.dispatch(&bad, CENTER.account, t("10:00:00")).unwrap();
            assert!(refused(push(&mut server, &mut center), Rule::Department).contains(why));
        }
        let mut center = copy_for(&mut server, &CENTER);
        center
            .dispatch(&to("shizheng", 24), CENTER.account, t("10:00:00"))
            .unwrap();
        push(&mut server, &mut center).unwrap();
        let incident = server.incident().unwrap();
        assert_eq!(incident.dispatch(), Some(&to("shizheng", 24)));
        assert!(!incident.overdue(t("10:00:00") + chrono::TimeDelta::hours(23)));
        assert!(incident.overdue(t("10:00:00") + chrono::TimeDelta::hours(25)));
    }
}

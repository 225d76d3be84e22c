//! The incident categories and the grid hierarchy a device works in.
//!
//! Both are plain data kept in `fixtures/` and copied into the device store by
//! `field init`, so a city can ship its own lists without a new build. The
//! copies embedded here are the defaults.

use geo::{Contains, Point, Polygon};
use serde::{Deserialize, Serialize};

/// The categories file shipped in `fixtures/categories.json`.
pub const DEFAULT_CATEGORIES_JSON: &str = include_str!("../../../fixtures/categories.json");
/// The grid hierarchy shipped in `fixtures/grids.json`.
pub const DEFAULT_GRIDS_JSON: &str = include_str!("../../../fixtures/grids.json");

#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("the {what} file is not valid: {source}")]
    Parse {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {what} file is not valid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("unknown category `{code}`;{hint} valid categories are: {valid}")]
    UnknownCategory { code: String, hint: String, valid: String },
    #[error("unknown department `{code}`;{hint} valid departments are: {valid}")]
    UnknownDepartment { code: String, hint: String, valid: String },
    #[error("unknown grid cell `{id}`; valid cells are: {valid}")]
    UnknownCell { id: String, valid: String },
    #[error("unknown community `{id}`; known communities are: {valid}")]
    UnknownCommunity { id: String, valid: String },
}

/// City grid management splits issues into facilities (部件, things that are
/// broken) and events (事件, things that happen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CategoryGroup {
    Facility,
    Event,
}

impl CategoryGroup {
    pub fn name_zh(self) -> &'static str {
        match self {
            CategoryGroup::Facility => "部件",
            CategoryGroup::Event => "事件",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub group: CategoryGroup,
    /// The department a case of this kind usually goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The time limit (处置时限) a dispatch gives by default, in hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_hours: Option<u32>,
}

/// A department cases are dispatched to (城管, 市政, 园林 …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
}

/// A city's categories and the departments that handle them, from one
/// file (`fixtures/categories.json` by default; a city installs its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taxonomy {
    pub version: u32,
    pub categories: Vec<Category>,
    #[serde(default)]
    pub departments: Vec<Department>,
}

impl Taxonomy {
    pub fn from_json(json: &str) -> Result<Self, TaxonomyError> {
        let taxonomy: Taxonomy = serde_json::from_str(json).map_err(|source| TaxonomyError::Parse {
            what: "categories",
            source,
        })?;
        let mut codes: Vec<&str> = taxonomy.categories.iter().map(|c| c.code.as_str()).collect();
        codes.sort_unstable();
        if let Some(w) = codes.windows(2).find(|w| w[0] == w[1]) {
            return Err(TaxonomyError::Invalid {
                what: "categories",
                reason: format!("category code `{}` appears twice", w[0]),
            });
        }
        if taxonomy.categories.is_empty() {
            return Err(TaxonomyError::Invalid {
                what: "categories",
                reason: "it lists no category".into(),
            });
        }
        taxonomy.check_departments()?;
        Ok(taxonomy)
    }

    /// Each department once; each category's department one of them and
    /// its time limit between 1 hour and a year.
    fn check_departments(&self) -> Result<(), TaxonomyError> {
        let invalid = |reason: String| TaxonomyError::Invalid {
            what: "categories",
            reason,
        };
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = self.departments.iter().find(|d| !seen.insert(d.code.as_str())) {
            return Err(invalid(format!("department code `{}` appears twice", d.code)));
        }
        for c in &self.categories {
            if let Some(d) = c.department.as_deref().filter(|d| self.department(d).is_none()) {
                return Err(invalid(format!(
                    "category `{}` names department `{d}`, which is not listed",
                    c.code
                )));
            }
            if c.time_limit_hours.is_some_and(|h| !(1..=24 * 366).contains(&h)) {
                return Err(invalid(format!(
                    "category `{}` has a time limit outside 1 hour to a year",
                    c.code
                )));
            }
        }
        Ok(())
    }

    pub fn department(&self, code: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.code == code)
    }

    /// A department as a person types it: its code in any case, or its
    /// Chinese or English name; a near miss gets "did you mean".
    pub fn resolve_department(&self, input: &str) -> Result<&Department, TaxonomyError> {
        find_named(&self.departments, input, |d| [&d.code, &d.name_zh, &d.name_en]).map_err(|hint| {
            TaxonomyError::UnknownDepartment {
                code: input.chars().take(80).collect(),
                hint,
                valid: listed(&self.departments, |d| [&d.code, &d.name_zh]),
            }
        })
    }

    /// The shipped category list, parsed once per process.
    pub fn builtin() -> &'static Taxonomy {
        static BUILTIN: std::sync::OnceLock<Taxonomy> = std::sync::OnceLock::new();
        BUILTIN.get_or_init(|| Self::from_json(DEFAULT_CATEGORIES_JSON).expect("the shipped categories file is valid"))
    }

    pub fn get(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    /// Looks a code up, or explains which codes exist.
    pub fn require(&self, code: &str) -> Result<&Category, TaxonomyError> {
        self.get(code).ok_or_else(|| TaxonomyError::UnknownCategory {
            code: code.to_owned(),
            hint: String::new(),
            valid: self.listed(),
        })
    }

    /// A category as a person types it: the code in any case with `-` or
    /// `_` (`manhole_cover`), or its Chinese or English name (`井盖破损`,
    /// `Manhole cover`); a near miss gets "did you mean".
    pub fn resolve(&self, input: &str) -> Result<&Category, TaxonomyError> {
        find_named(&self.categories, input, |c| [&c.code, &c.name_zh, &c.name_en]).map_err(|hint| {
            TaxonomyError::UnknownCategory {
                code: input.chars().take(80).collect(),
                hint,
                valid: self.listed(),
            }
        })
    }

    /// Every category as `code (中文名)`, for messages.
    fn listed(&self) -> String {
        listed(&self.categories, |c| [&c.code, &c.name_zh])
    }

    pub fn codes(&self) -> Vec<&str> {
        self.categories.iter().map(|c| c.code.as_str()).collect()
    }
}

/// The item whose code (in any case, `-` or `_`), Chinese name or English
/// name is `input`; else the "did you mean" hint for it.
fn find_named<'a, T>(items: &'a [T], input: &str, names: impl Fn(&T) -> [&String; 3]) -> Result<&'a T, String> {
    let key = crate::names::key(input);
    let found = items.iter().find(|item| {
        let [code, zh, en] = names(item);
        crate::names::key(code) == key || zh == input.trim() || crate::names::key(en) == key
    });
    found.ok_or_else(|| {
        let known: Vec<&str> = items
            .iter()
            .flat_map(|item| {
                let [code, zh, _] = names(item);
                [code.as_str(), zh.as_str()]
            })
            .collect();
        crate::names::did_you_mean(crate::names::nearest(input, &known))
    })
}

/// `code (中文名), …`, for messages.
fn listed<T>(items: &[T], names: impl Fn(&T) -> [&String; 2]) -> String {
    let all: Vec<String> = items
        .iter()
        .map(|item| {
            let [code, zh] = names(item);
            format!("{code} ({zh})")
        })
        .collect();
    all.join(", ")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridMap {
    pub version: u32,
    pub districts: Vec<District>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct District {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    pub streets: Vec<Street>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Street {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    pub communities: Vec<Community>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Community {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    /// IANA zone whose calendar day the community center reconciles by.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub cells: Vec<Cell>,
}

fn default_timezone() -> String {
    crate::calendar::DEFAULT_TIMEZONE.to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    /// A GeoJSON Polygon geometry, longitude first.
    pub polygon: serde_json::Value,
}

/// One grid cell with the names of everything above it.
#[derive(Debug, Clone, Copy)]
pub struct CellPath<'a> {
    pub district: &'a District,
    pub street: &'a Street,
    pub community: &'a Community,
    pub cell: &'a Cell,
}

impl GridMap {
    pub fn from_json(json: &str) -> Result<Self, TaxonomyError> {
        let map: GridMap =
            serde_json::from_str(json).map_err(|source| TaxonomyError::Parse { what: "grids", source })?;
        for community in map.communities() {
            if community.timezone.parse::<chrono_tz::Tz>().is_err() {
                return Err(TaxonomyError::Invalid {
                    what: "grids",
                    reason: format!(
                        "community `{}`: `{}` is not an IANA time zone such as Asia/Shanghai",
                        community.id, community.timezone
                    ),
                });
            }
        }
        let mut ids = Vec::new();
        for path in map.cells() {
            polygon_of(path.cell).map_err(|reason| TaxonomyError::Invalid {
                what: "grids",
                reason: format!("cell `{}`: {reason}", path.cell.id),
            })?;
            ids.push(path.cell.id.as_str());
        }
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(TaxonomyError::Invalid {
                what: "grids",
                reason: format!("cell id `{}` appears twice", w[0]),
            });
        }
        Ok(map)
    }

    pub fn builtin() -> Self {
        Self::from_json(DEFAULT_GRIDS_JSON).expect("the shipped grids file is valid")
    }

    pub fn cells(&self) -> impl Iterator<Item = CellPath<'_>> {
        self.districts.iter().flat_map(|district| {
            district.streets.iter().flat_map(move |street| {
                street.communities.iter().flat_map(move |community| {
                    community.cells.iter().map(move |cell| CellPath {
                        district,
                        street,
                        community,
                        cell,
                    })
                })
            })
        })
    }

    pub fn cell(&self, id: &str) -> Option<CellPath<'_>> {
        self.cells().find(|p| p.cell.id == id)
    }

    pub fn require_cell(&self, id: &str) -> Result<CellPath<'_>, TaxonomyError> {
        self.cell(id).ok_or_else(|| TaxonomyError::UnknownCell {
            id: id.to_owned(),
            valid: self.cells().map(|p| p.cell.id.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Every community, in file order.
    pub fn communities(&self) -> impl Iterator<Item = &Community> {
        self.districts
            .iter()
            .flat_map(|d| &d.streets)
            .flat_map(|s| &s.communities)
    }

    pub fn community(&self, id: &str) -> Option<&Community> {
        self.communities().find(|c| c.id == id)
    }

    /// An unknown community, with the known ones listed.
    pub fn require_community(&self, id: &str) -> Result<&Community, TaxonomyError> {
        self.community(id).ok_or_else(|| TaxonomyError::UnknownCommunity {
            id: id.chars().take(80).collect(),
            valid: self.communities().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The ids of a community's cells, in file order (none for an unknown community).
    pub fn community_cells(&self, community: &str) -> Vec<String> {
        self.cells()
            .filter(|p| p.community.id == community)
            .map(|p| p.cell.id.clone())
            .collect()
    }

    /// The cells whose polygon contains the point, in file order.
    pub fn cells_containing(&self, lat: f64, lon: f64) -> Vec<CellPath<'_>> {
        let point = Point::new(lon, lat);
        self.cells()
            .filter(|p| polygon_of(p.cell).is_ok_and(|poly| poly.contains(&point)))
            .collect()
    }

    /// Whether the point lies inside the named cell; `None` for an unknown cell.
    pub fn cell_contains(&self, id: &str, lat: f64, lon: f64) -> Option<bool> {
        let path = self.cell(id)?;
        let poly = polygon_of(path.cell).ok()?;
        Some(poly.contains(&Point::new(lon, lat)))
    }
}

/// Reads a GeoJSON Polygon geometry: an outer ring and optional holes, each a
/// closed list of `[lon, lat]` pairs.
fn polygon_of(cell: &Cell) -> Result<Polygon<f64>, String> {
    let geometry = &cell.polygon;
    if geometry.get("type").and_then(|t| t.as_str()) != Some("Polygon") {
        return Err("polygon must be a GeoJSON geometry of type Polygon".into());
    }
    let rings = geometry
        .get("coordinates")
        .and_then(|c| c.as_array())
        .ok_or("polygon has no coordinates array")?;
    let mut parsed = Vec::with_capacity(rings.len());
    for ring in rings {
        let points = ring.as_array().ok_or("a polygon ring is not an array")?;
        let mut coords = Vec::with_capacity(points.len());
        for p in points {
            let pair = p
                .as_array()
                .filter(|a| a.len() >= 2)
                .ok_or("a position is not [lon, lat]")?;
            let lon = pair[0].as_f64().ok_or("a longitude is not a number")?;
            let lat = pair[1].as_f64().ok_or("a latitude is not a number")?;
            coords.push((lon, lat));
        }
        if coords.len() < 4 || coords.first() != coords.last() {
            return Err("a polygon ring must be closed and have at least 4 positions".into());
        }
        parsed.push(geo::LineString::from(coords));
    }
    let mut rings = parsed.into_iter();
    let exterior = rings.next().ok_or("polygon has no outer ring")?;
    Ok(Polygon::new(exterior, rings.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_taxonomy_has_the_seed_categories() {
        let t = Taxonomy::builtin();
        for code in [
            "manhole-cover",
            "road-surface",
            "curb-stone",
            "sidewalk-slab",
            "lawn",
            "tree-missing",
            "illegal-parking",
            "illegal-construction",
            "clutter",
            "house-leak",
            "neighbor-dispute",
            "other",
        ] {
            assert!(t.get(code).is_some(), "{code} missing");
        }
        assert_eq!(t.require("manhole-cover").unwrap().name_zh, "井盖破损");
        let err = t.require("pothole").unwrap_err().to_string();
        assert!(err.contains("pothole") && err.contains("road-surface"), "{err}");
    }

    #[test]
    fn hexiang_has_four_cells_and_points_find_their_cell() {
        let g = GridMap::builtin();
        let hx = g.community("HLT-CX-HX").unwrap();
        assert_eq!(hx.name_zh, "鹤乡社区");
        assert_eq!(hx.cells.len(), 4);
        let found = g.cells_containing(41.1205, 122.0712);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cell.id, "HLT-CX-HX-02");
        assert_eq!(found[0].street.name_zh, "创新街道");
        assert_eq!(g.cell_contains("HLT-CX-HX-01", 41.1205, 122.0712), Some(false));
        assert!(g.cells_containing(39.9, 116.4).is_empty());
    }

    #[test]
    fn broken_grid_files_are_refused() {
        let open_ring = r#"{"version":1,"districts":[{"id":"D","name_zh":"d","name_en":"d","streets":[{"id":"S","name_zh":"s","name_en":"s","communities":[{"id":"C","name_zh":"c","name_en":"c","timezone":"Asia/Shanghai","cells":[{"id":"C-01","name_zh":"x","name_en":"x","polygon":{"type":"Polygon","coordinates":[[[1,1],[2,1],[2,2]]]}}]}]}]}]}"#;
        let err = GridMap::from_json(open_ring).unwrap_err().to_string();
        assert!(err.contains("C-01") && err.contains("closed"), "{err}");

        let closed = open_ring.replace("[2,2]]", "[2,2],[1,1]]");
        let mars = closed.replace("Asia/Shanghai", "Mars/Olympus");
        let err = GridMap::from_json(&mars).unwrap_err().to_string();
        assert!(err.contains("community `C`") && err.contains("Mars/Olympus"), "{err}");
        let unnamed = closed.replace(r#""timezone":"Asia/Shanghai","#, "");
        assert_eq!(
            GridMap::from_json(&unnamed).unwrap().community("C").unwrap().timezone,
            "Asia/Shanghai"
        );
    }
}

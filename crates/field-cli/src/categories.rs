use std::path::Path;

use anyhow::Result;
use sync_core::{Store, Taxonomy};

use crate::app::{emit, print_json, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    // Before `field init` the built-in list is what init would install.
    let taxonomy = if data_dir.join(sync_core::store::DB_FILE).exists() {
        match Store::open(data_dir).and_then(|s| s.taxonomy()) {
            Ok(t) => t,
            Err(sync_core::StoreError::NotInitialised) => Taxonomy::builtin().clone(),
            Err(e) => return Err(e.into()),
        }
    } else {
        Taxonomy::builtin().clone()
    };
    if args.json {
        return print_json(&taxonomy.categories);
    }
    let mut t = table(&["CODE", "中文", "ENGLISH", "GROUP"]);
    for c in &taxonomy.categories {
        t.add_row([
            c.code.clone(),
            c.name_zh.clone(),
            c.name_en.clone(),
            format!("{} {:?}", c.group.name_zh(), c.group).to_lowercase(),
        ]);
    }
    emit(format!("{t}\n").as_bytes())?;
    Ok(())
}

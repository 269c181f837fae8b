//! `shadowattn soc derive`: rewrites the profiles a recipe derives from a fit (phones whose
//! part Qualcomm's emulator does not estimate) after the fit changes.

use clap::Args;
use shadowattn_simulator::fit::derive::{derive_in, write, Derived, Recipe};
use std::error::Error;
use std::path::{Path, PathBuf};

/// Options of `soc derive`.
#[derive(Args, Debug)]
pub struct DeriveArgs {
    /// The recipe: which profile is derived from which fit, why, and the generation
    /// differences applied after the copy (paths in it are relative to its folder).
    #[arg(long, default_value = "simulator/derived-profiles.toml")]
    recipe: PathBuf,
    /// Derive only this target (its file stem, e.g. `snapdragon-8-gen-3`).
    #[arg(long)]
    only: Option<String>,
    /// Write nothing; print the lines that would change and fail if any would.
    #[arg(long)]
    check: bool,
}

/// Runs `soc derive`.
pub fn run_derive(args: &DeriveArgs) -> Result<(), Box<dyn Error>> {
    let recipe = Recipe::load(&args.recipe)?;
    let dir = args.recipe.parent().unwrap_or(Path::new("."));
    let mut stale = Vec::new();
    for derivation in recipe.select(args.only.as_deref())? {
        let derived = derive_in(dir, derivation)?;
        let changed = changed_lines(&derived);
        if args.check {
            if changed.is_empty() {
                println!("up to date: {}", derived.path.display());
            } else {
                println!("out of date: {}", derived.path.display());
                for (old, new) in &changed {
                    println!("-{old}\n+{new}");
                }
                stale.push(derived.path.display().to_string());
            }
        } else if write(&derived)? {
            println!(
                "wrote: {} ({} line(s) changed)",
                derived.path.display(),
                changed.len()
            );
        } else {
            println!("unchanged: {}", derived.path.display());
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} differ from what {} derives; run `shadowattn soc derive --recipe {}`",
        stale.join(", "),
        args.recipe.display(),
        args.recipe.display()
    )
    .into())
}

/// The lines a derivation changes, as (old, new); a derivation edits lines in place.
fn changed_lines(d: &Derived) -> Vec<(&str, &str)> {
    d.old
        .lines()
        .zip(d.new.lines())
        .filter(|(a, b)| a != b)
        .collect()
}

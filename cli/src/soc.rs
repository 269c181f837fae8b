//! `shadowattn soc list | show | validate | fit | check | derive | numerics`: the SoC profiles of the simulator.

use clap::Subcommand;
use shadowattn_simulator::npu::profile::{builtin_names, count, real, BUILTIN};
use shadowattn_simulator::SocProfile;
use std::error::Error;
use std::path::Path;

/// `soc` subcommands.
#[derive(Subcommand)]
pub enum SocCommand {
    /// List the built-in profiles.
    List,
    /// Print a profile (a built-in name or a .toml file) with every number and its source.
    Show {
        /// Built-in name or file.
        profile: String,
    },
    /// Check a profile file; errors name the file, key and line.
    Validate {
        /// The file.
        file: String,
    },
    /// Fit a new SoC's profile to Qualcomm's cost model of a socModel (needs the QNN library).
    Fit(crate::soc_fit::FitArgs),
    /// A profile's error against Qualcomm's cost model on graph families no fit sees.
    Check(crate::soc_fit::CheckArgs),
    /// Rewrite the profiles a recipe derives from a fit (every fitted number copied, then the
    /// generation differences), keeping every other byte of them.
    Derive(crate::soc_derive::DeriveArgs),
    /// Probe a socModel's numerics and refusals on the QNN library (what `fit` writes into
    /// `[numerics]` and `[limits]`).
    Numerics(crate::soc_numerics::NumericsArgs),
}

fn load(profile: &str) -> Result<(SocProfile, String), Box<dyn Error>> {
    if profile.ends_with(".toml") {
        let text =
            std::fs::read_to_string(profile).map_err(|e| format!("cannot read {profile}: {e}"))?;
        Ok((SocProfile::parse(profile, &text)?, text))
    } else {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == profile)
            .map(|(_, t)| t.to_string())
            .unwrap_or_default();
        Ok((SocProfile::builtin(profile)?, text))
    }
}

/// Runs the command.
pub fn run(cmd: &SocCommand) -> Result<(), Box<dyn Error>> {
    match cmd {
        SocCommand::List => {
            for name in builtin_names() {
                let p = SocProfile::builtin(name)?;
                println!(
                    "{name}\t{}\t{}\tNPU {} GHz, {} MB on-chip",
                    p.soc,
                    p.npu_arch,
                    real(&p.npu.clock_ghz),
                    count(&p.npu.onchip_bytes) >> 20
                );
            }
        }
        SocCommand::Show { profile } => {
            let (p, text) = load(profile)?;
            print!("{text}");
            let twins = p.compute_twins();
            if !twins.is_empty() {
                println!(
                    "\n# compute: this NPU computes exactly as {}: no public figure distinguishes their accelerators (clocks and unit counts are unpublished); predictions differ only by DDR/DMA rates and CPU cores",
                    twins.join(", ")
                );
            }
        }
        SocCommand::Validate { file } => {
            let p = SocProfile::load(Path::new(file))?;
            println!("ok: {file} ({}, {})", p.soc, p.npu_arch);
        }
        SocCommand::Fit(args) => crate::soc_fit::run_fit(args)?,
        SocCommand::Check(args) => crate::soc_fit::run_check(args)?,
        SocCommand::Derive(args) => crate::soc_derive::run_derive(args)?,
        SocCommand::Numerics(args) => crate::soc_numerics::run(args)?,
    }
    Ok(())
}

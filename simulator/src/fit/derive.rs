//! Profiles derived from a fit: a SoC without estimates in Qualcomm's emulator (a phone) takes
//! every number the fit determines ([`FREE_PARAMETERS`]) from a fitted profile of its HTP
//! lineage, then generation differences (a number scaled by the ratio of another number of the
//! target and of the phone the fit is taken as) are applied on top. Which profile, from which
//! fit, why, and which differences is data, a [`Recipe`] (`simulator/derived-profiles.toml`);
//! `shadowattn soc derive` writes it, and every other byte of the target is kept.

use crate::error::SimError;
use crate::fit::profile_edit::{round_sig, set_numbers, Key};
use crate::fit::vendor::{Parameter, FREE_PARAMETERS};
use crate::npu::profile::{SocProfile, SOURCE_KINDS};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a profile cannot be derived.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeriveError {
    /// A file that cannot be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A recipe that is not valid TOML or has unknown or missing fields.
    #[error("recipe {file}: {detail}")]
    Recipe {
        /// The recipe file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A difference that changes a number the fit does not determine.
    #[error("recipe {file}: difference `{difference}` changes `{key}`, which is not a fitted parameter; fitted: {known}")]
    UnknownParameter {
        /// The recipe file.
        file: String,
        /// The difference's name.
        difference: String,
        /// The key it names.
        key: String,
        /// The fit's parameters.
        known: String,
    },
    /// A difference whose source does not say what kind of source it is.
    #[error("recipe {file}: difference `{difference}`: its source must start with one of {kinds}")]
    UnsourcedDifference {
        /// The recipe file.
        file: String,
        /// The difference's name.
        difference: String,
        /// The accepted prefixes.
        kinds: String,
    },
    /// A profile of the recipe that names a difference the recipe does not define.
    #[error("recipe {file}: {target} names the difference `{name}`, which is not defined; defined: {known}")]
    UnknownDifference {
        /// The recipe file.
        file: String,
        /// The target profile.
        target: String,
        /// The name.
        name: String,
        /// The defined differences.
        known: String,
    },
    /// A profile with differences but no phone the fit is taken as (the ratios' denominator).
    #[error("recipe {file}: {target} applies differences but has no `taken_as` (the profile the fit stands for, whose numbers the ratios divide by)")]
    NoReference {
        /// The recipe file.
        file: String,
        /// The target profile.
        target: String,
    },
    /// A profile derived from itself.
    #[error("recipe {file}: {target} is derived from itself")]
    FromItself {
        /// The recipe file.
        file: String,
        /// The profile.
        target: String,
    },
    /// A target asked for that the recipe does not derive.
    #[error("the recipe derives no profile `{name}`; it derives: {known}")]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// The recipe's targets.
        known: String,
    },
    /// A source or target whose NPU is not a Hexagon HTP.
    #[error("{file}: npu_arch is `{npu_arch}`, not an HTP generation; HTP fits are copied only between HTP profiles")]
    NotHtp {
        /// The profile.
        file: String,
        /// Its NPU architecture.
        npu_arch: String,
    },
    /// A source profile whose `soc` does not name the socModel it was fitted to.
    #[error("{file}: soc is `{soc}`, not `PART (socModel N)` as `shadowattn soc fit` writes; is it a fitted profile?")]
    NotAFit {
        /// The profile.
        file: String,
        /// Its `soc`.
        soc: String,
    },
    /// A source profile with a parameter the fit did not determine.
    #[error("{file}: `{key}` was not fitted (its source: {found}); refit the profile (ci/fit-profiles.sh) before deriving from it")]
    NotFitted {
        /// The profile.
        file: String,
        /// The parameter's key.
        key: String,
        /// Its source.
        found: String,
    },
    /// A profile that cannot be parsed, lacks a number, or would not parse once written.
    #[error(transparent)]
    Profile(#[from] SimError),
}

/// Result alias of this module.
pub type Result<T, E = DeriveError> = std::result::Result<T, E>;

/// A recipe file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    #[serde(default)]
    profile: Vec<DerivationFile>,
    #[serde(default)]
    difference: BTreeMap<String, DifferenceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivationFile {
    target: String,
    from: String,
    taken_as: Option<String>,
    reason: String,
    #[serde(default)]
    differences: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DifferenceFile {
    parameter: String,
    unit: String,
    scaled_by: String,
    scaled_by_unit: String,
    source: String,
}

/// A generation difference: a fitted parameter scaled by the ratio of another number of the
/// target profile over the same number of the profile the fit is taken as.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Its name in the recipe.
    pub name: String,
    /// The fitted parameter it scales.
    pub parameter: Parameter,
    /// The parameter's unit (for the written source).
    pub unit: String,
    /// The dotted key of the number whose ratio scales it (`npu.ddr_gbps`).
    pub scaled_by: String,
    /// That number's unit.
    pub scaled_by_unit: String,
    /// Why the ratio carries over (starts with a source kind).
    pub source: String,
}

/// One derived profile: where its fitted numbers come from, why, and the differences.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivation {
    /// The profile written, relative to the recipe's folder.
    pub target: String,
    /// The fitted profile its numbers are copied from, relative to the recipe's folder.
    pub from: String,
    /// The profile the fit is taken as (the differences' denominators), if any difference.
    pub taken_as: Option<String>,
    /// Why the fit's numbers apply to the target.
    pub reason: String,
    /// The differences applied after the copy, in order.
    pub differences: Vec<Difference>,
}

/// Every derived profile of a recipe file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The derivations, in the file's order.
    pub profiles: Vec<Derivation>,
}

/// A profile's file name (the last path component) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileText {
    /// The name written into sources (`sa8255.toml`).
    pub file: String,
    /// The TOML.
    pub text: String,
}

/// The fitted profile a derivation copies from.
#[derive(Clone, Debug, PartialEq)]
pub struct FitSource {
    /// Its file name.
    pub file: String,
    /// The part (`SA8255`).
    pub part: String,
    /// The QNN socModel it was fitted to.
    pub soc_model: u32,
    /// Its NPU architecture (`HTP V73`).
    pub arch: String,
    /// Every fitted parameter's value.
    pub values: Vec<(Parameter, f64)>,
}

/// One target's text before and after derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The target's path.
    pub path: PathBuf,
    /// Its text now.
    pub old: String,
    /// Its derived text.
    pub new: String,
}

impl Recipe {
    /// Parses and checks the recipe `text` (the file `file`).
    pub fn parse(file: &str, text: &str) -> Result<Recipe> {
        let raw: RecipeFile = toml::from_str(text).map_err(|e| DeriveError::Recipe {
            file: file.to_string(),
            detail: e.to_string().trim_end().to_string(),
        })?;
        let mut differences = BTreeMap::new();
        for (name, d) in raw.difference {
            differences.insert(name.clone(), difference(file, name, d)?);
        }
        let profiles = raw
            .profile
            .into_iter()
            .map(|p| derivation(file, p, &differences))
            .collect::<Result<_>>()?;
        Ok(Recipe { profiles })
    }

    /// Reads and parses the recipe at `path`.
    pub fn load(path: &Path) -> Result<Recipe> {
        Recipe::parse(&path.display().to_string(), &read(path)?)
    }

    /// The derivations whose target's file stem is `name` (all of them for `None`).
    pub fn select(&self, name: Option<&str>) -> Result<Vec<&Derivation>> {
        let Some(name) = name else {
            return Ok(self.profiles.iter().collect());
        };
        let found: Vec<_> = self
            .profiles
            .iter()
            .filter(|d| Path::new(&d.target).file_stem().is_some_and(|s| s == name))
            .collect();
        if found.is_empty() {
            return Err(DeriveError::UnknownTarget {
                name: name.to_string(),
                known: self
                    .profiles
                    .iter()
                    .map(|d| d.target.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(found)
    }
}

/// A checked difference.
fn difference(file: &str, name: String, d: DifferenceFile) -> Result<Difference> {
    let parameter = FREE_PARAMETERS
        .iter()
        .copied()
        .find(|p| p.key() == d.parameter)
        .ok_or_else(|| DeriveError::UnknownParameter {
            file: file.to_string(),
            difference: name.clone(),
            key: d.parameter.clone(),
            known: FREE_PARAMETERS.map(Parameter::key).join(", "),
        })?;
    if !SOURCE_KINDS.iter().any(|k| d.source.starts_with(k)) {
        return Err(DeriveError::UnsourcedDifference {
            file: file.to_string(),
            difference: name,
            kinds: SOURCE_KINDS.join(", "),
        });
    }
    Ok(Difference {
        name,
        parameter,
        unit: d.unit,
        scaled_by: d.scaled_by,
        scaled_by_unit: d.scaled_by_unit,
        source: d.source,
    })
}

/// A checked derivation, its differences resolved by name.
fn derivation(
    file: &str,
    p: DerivationFile,
    differences: &BTreeMap<String, Difference>,
) -> Result<Derivation> {
    if p.target == p.from {
        return Err(DeriveError::FromItself {
            file: file.to_string(),
            target: p.target,
        });
    }
    if !p.differences.is_empty() && p.taken_as.is_none() {
        return Err(DeriveError::NoReference {
            file: file.to_string(),
            target: p.target,
        });
    }
    let resolved = p
        .differences
        .iter()
        .map(|name| {
            differences
                .get(name)
                .cloned()
                .ok_or_else(|| DeriveError::UnknownDifference {
                    file: file.to_string(),
                    target: p.target.clone(),
                    name: name.clone(),
                    known: differences.keys().cloned().collect::<Vec<_>>().join(", "),
                })
        })
        .collect::<Result<_>>()?;
    Ok(Derivation {
        target: p.target,
        from: p.from,
        taken_as: p.taken_as,
        reason: p.reason,
        differences: resolved,
    })
}

impl FitSource {
    /// Reads the fitted part, its socModel and its fitted values from `profile`; every
    /// parameter must have been fitted (its source says so).
    pub fn parse(profile: &ProfileText) -> Result<FitSource> {
        let file = profile.file.as_str();
        let parsed = SocProfile::parse(file, &profile.text)?;
        htp(file, &parsed)?;
        let (part, soc_model) = socmodel_of(&parsed.soc).ok_or_else(|| DeriveError::NotAFit {
            file: file.to_string(),
            soc: parsed.soc.clone(),
        })?;
        every_parameter_fitted(file, &profile.text)?;
        Ok(FitSource {
            file: file.to_string(),
            part,
            soc_model,
            arch: parsed.npu_arch.clone(),
            values: FREE_PARAMETERS.map(|p| (p, p.get(&parsed))).to_vec(),
        })
    }

    /// How sources name it: `the socModel 52 (SA8255, HTP V73) fit in sa8255.toml`.
    pub fn label(&self) -> String {
        format!(
            "the socModel {} ({}, {}) fit in {}",
            self.soc_model, self.part, self.arch, self.file
        )
    }
}

/// An error unless every fitted parameter's source in `text` says `soc fit` determined it.
fn every_parameter_fitted(file: &str, text: &str) -> Result<()> {
    let doc = toml_table(file, text)?;
    for p in FREE_PARAMETERS {
        let source = sourced(file, &doc, p.key())?.1;
        if !source.starts_with("derived: fitted") {
            return Err(DeriveError::NotFitted {
                file: file.to_string(),
                key: p.key().to_string(),
                found: source,
            });
        }
    }
    Ok(())
}

/// `PART (socModel N)` split into the part and N.
fn socmodel_of(soc: &str) -> Option<(String, u32)> {
    let (part, rest) = soc.strip_suffix(')')?.rsplit_once(" (socModel ")?;
    Some((part.to_string(), rest.parse().ok()?))
}

/// An error unless `profile`'s NPU is an HTP generation.
fn htp(file: &str, profile: &SocProfile) -> Result<()> {
    if profile.npu_arch.starts_with("HTP ") {
        Ok(())
    } else {
        Err(DeriveError::NotHtp {
            file: file.to_string(),
            npu_arch: profile.npu_arch.clone(),
        })
    }
}

/// `text` as a TOML table.
fn toml_table(file: &str, text: &str) -> Result<toml::Table> {
    toml::from_str(text).map_err(|e| {
        DeriveError::Profile(SimError::Profile {
            file: file.to_string(),
            line: 0,
            key: "<document>".to_string(),
            detail: e.message().to_string(),
        })
    })
}

/// The value and source of the `{ value, source }` number at the dotted `key`.
fn sourced(file: &str, doc: &toml::Table, key: &str) -> Result<(f64, String)> {
    let missing = || SimError::MissingKey {
        file: file.to_string(),
        key: key.to_string(),
    };
    let mut parts = key.split('.');
    let first = parts.next().and_then(|k| doc.get(k));
    let item = parts
        .try_fold(first, |item, part| Some(item?.get(part)))
        .flatten()
        .ok_or_else(missing)?;
    let value = match item.get("value") {
        Some(toml::Value::Float(v)) => *v,
        Some(toml::Value::Integer(v)) => *v as f64,
        _ => return Err(missing().into()),
    };
    let source = item
        .get("source")
        .and_then(toml::Value::as_str)
        .ok_or_else(missing)?;
    Ok((value, source.to_string()))
}

/// The numbers a derivation sets before its differences: every fitted value, its source
/// `assumption: copied from <fit>: <reason>`.
pub fn copied_numbers(fit: &FitSource, reason: &str) -> Vec<(Parameter, f64, String)> {
    let source = format!("assumption: copied from {}: {reason}", fit.label());
    fit.values
        .iter()
        .map(|&(p, v)| (p, v, source.clone()))
        .collect()
}

/// Scales `difference.parameter` in `numbers` by the ratio of `scaled_by` in `target` over
/// `reference` (rounded as fitted numbers are), and says so in its source.
pub fn apply_difference(
    numbers: &mut [(Parameter, f64, String)],
    difference: &Difference,
    fit: &FitSource,
    target: &ProfileText,
    reference: &ProfileText,
    reason: &str,
) -> Result<()> {
    let key = &difference.scaled_by;
    let (mine, _) = sourced(&target.file, &toml_table(&target.file, &target.text)?, key)?;
    let (theirs, _) = sourced(
        &reference.file,
        &toml_table(&reference.file, &reference.text)?,
        key,
    )?;
    let Some(number) = numbers.iter_mut().find(|n| n.0 == difference.parameter) else {
        return Err(SimError::MissingKey {
            file: fit.file.clone(),
            key: difference.parameter.key().to_string(),
        }
        .into());
    };
    let copied = number.1;
    number.1 = round_sig(copied * mine / theirs);
    number.2 = format!(
        "derived: {} ({copied} {}, taken as {}'s) scaled by the {key} ratio {mine} / {theirs} {} ({} over {}; {}); {reason}",
        fit.label(),
        difference.unit,
        reference.file,
        difference.scaled_by_unit,
        target.file,
        reference.file,
        difference.source,
    );
    Ok(())
}

/// The target's text with the fit's numbers copied and the differences applied; every other
/// byte is kept.
pub fn derived_text(
    derivation: &Derivation,
    fit: &FitSource,
    target: &ProfileText,
    reference: Option<&ProfileText>,
) -> Result<String> {
    htp(
        &target.file,
        &SocProfile::parse(&target.file, &target.text)?,
    )?;
    let mut numbers = copied_numbers(fit, &derivation.reason);
    for difference in &derivation.differences {
        let reference = reference.ok_or_else(|| DeriveError::NoReference {
            file: "(no recipe: derived_text was given no reference)".to_string(),
            target: derivation.target.clone(),
        })?;
        apply_difference(
            &mut numbers,
            difference,
            fit,
            target,
            reference,
            &derivation.reason,
        )?;
    }
    let keyed: Vec<_> = numbers
        .into_iter()
        .map(|(p, v, s)| (Key::Fitted(p), v, s))
        .collect();
    Ok(set_numbers(&target.file, &target.text, &keyed)?)
}

/// Reads a file.
fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| DeriveError::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })
}

/// The profile at `dir`/`relative`, named by its file name.
fn profile_at(dir: &Path, relative: &str) -> Result<(PathBuf, ProfileText)> {
    let path = dir.join(relative);
    let file = Path::new(relative)
        .file_name()
        .map_or(relative.to_string(), |n| n.to_string_lossy().into_owned());
    let text = read(&path)?;
    Ok((path, ProfileText { file, text }))
}

/// Derives `derivation` from the files under `dir` (the recipe's folder); writes nothing.
pub fn derive_in(dir: &Path, derivation: &Derivation) -> Result<Derived> {
    let (_, source) = profile_at(dir, &derivation.from)?;
    let (path, target) = profile_at(dir, &derivation.target)?;
    let reference = match &derivation.taken_as {
        Some(r) => Some(profile_at(dir, r)?.1),
        None => None,
    };
    let new = derived_text(
        derivation,
        &FitSource::parse(&source)?,
        &target,
        reference.as_ref(),
    )?;
    Ok(Derived {
        path,
        old: target.text,
        new,
    })
}

/// Writes a derived profile if it changed; whether it did.
pub fn write(derived: &Derived) -> Result<bool> {
    if derived.old == derived.new {
        return Ok(false);
    }
    std::fs::write(&derived.path, &derived.new).map_err(|source| DeriveError::Io {
        action: "write",
        path: derived.path.display().to_string(),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests;

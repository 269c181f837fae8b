//! Writing profiles by editing their TOML text: a fitted profile (the base profile's TOML with
//! the fitted numbers and their sources replaced, every other number marked as copied from the
//! base, and a new name), and numbers set in place in an existing profile with every other byte
//! kept (what `soc derive` writes).

use crate::error::{Result, SimError};
use crate::fit::vendor::Parameter;
use crate::npu::profile::SocProfile;
use toml_edit::{DocumentMut, Item};

/// What the written profile is called and says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Short name (`sa8540`).
    pub name: String,
    /// Marketing name and part number.
    pub soc: String,
    /// NPU architecture.
    pub npu_arch: String,
    /// Comment lines at the top of the file (without `#`).
    pub header: Vec<String>,
}

/// A plain (unsourced) value of a profile table: `[numerics]` and `[limits]` hold these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plain {
    /// A boolean.
    Bool(bool),
    /// A string.
    Text(String),
}

/// A table of plain values that replaces the base's table of that name, with its comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The table's name (`numerics`).
    pub table: &'static str,
    /// Comment lines above it (without `#`).
    pub comment: Vec<String>,
    /// Its keys in order.
    pub keys: Vec<(&'static str, Plain)>,
}

/// A number of a profile to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A free parameter of the fit.
    Fitted(Parameter),
    /// Any other sourced number, by its dotted key (`npu.clock_ghz`).
    Other(&'static str),
}

impl Key {
    /// The dotted key.
    pub fn path(self) -> &'static str {
        match self {
            Key::Fitted(p) => p.key(),
            Key::Other(k) => k,
        }
    }
}

/// `base_text` (the base profile's TOML, named `base_name`) with `fitted` values and sources
/// set, every other sourced number's source prefixed "assumption: copied from <base>", the
/// base's tables named in `sections` replaced by them (placed where the base has them, else
/// after the top-level keys), and `identity`; the result is checked by parsing it as a profile.
pub fn fitted_profile_text(
    base_name: &str,
    base_text: &str,
    identity: &Identity,
    fitted: &[(Key, f64, String)],
    sections: &[Section],
) -> Result<String> {
    // The base's leading comment describes the base: drop it.
    let body: String = base_text
        .lines()
        .skip_while(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut doc: DocumentMut = body
        .parse()
        .map_err(|e| SimError::ProfileEdit(format!("base profile {base_name}: {e}")))?;
    doc["name"] = toml_edit::value(identity.name.as_str());
    doc["soc"] = toml_edit::value(identity.soc.as_str());
    doc["npu_arch"] = toml_edit::value(identity.npu_arch.as_str());
    if identity.name != base_name {
        mark_copied(doc.as_item_mut(), base_name);
    }
    for (key, value, source) in fitted {
        set_number(number_mut(&mut doc, base_name, key.path())?, *value, source);
    }
    for section in sections {
        let position = doc
            .get(section.table)
            .and_then(Item::as_table)
            .and_then(toml_edit::Table::position)
            // Before [npu] (position 0 is the document's top-level keys).
            .unwrap_or(1);
        let mut table = toml_edit::Table::new();
        for (key, value) in &section.keys {
            table[*key] = match value {
                Plain::Bool(b) => toml_edit::value(*b),
                Plain::Text(t) => toml_edit::value(t.as_str()),
            };
        }
        table.set_position(position);
        let comment: String = section.comment.iter().map(|l| format!("# {l}\n")).collect();
        table.decor_mut().set_prefix(format!("\n{comment}"));
        doc[section.table] = Item::Table(table);
    }
    let mut text: String = identity.header.iter().map(|l| format!("# {l}\n")).collect();
    text.push_str(&doc.to_string());
    SocProfile::parse(&identity.name, &text)?;
    Ok(text)
}

/// `text` (the profile `file`) with `numbers` set, values and sources, and every other byte
/// kept: comments, order, layout, and the text of a value or source that does not change. The
/// result is checked by parsing it as a profile.
pub fn set_numbers(file: &str, text: &str, numbers: &[(Key, f64, String)]) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| SimError::ProfileEdit(format!("{file}: {e}")))?;
    for (key, value, source) in numbers {
        set_number(number_mut(&mut doc, file, key.path())?, *value, source);
    }
    let out = doc.to_string();
    SocProfile::parse(file, &out)?;
    Ok(out)
}

/// The `{ value, source }` number at the dotted `key` of `doc` (the profile `file`).
fn number_mut<'a>(doc: &'a mut DocumentMut, file: &str, key: &str) -> Result<&'a mut Item> {
    let missing = || SimError::MissingKey {
        file: file.to_string(),
        key: key.to_string(),
    };
    let mut item = doc.as_item_mut();
    for part in key.split('.') {
        item = item.get_mut(part).ok_or_else(missing)?;
    }
    if item.get("value").is_none() || item.get("source").is_none() {
        return Err(missing());
    }
    Ok(item)
}

/// Sets a number's value and source; a value equal to the written one keeps its text, and a
/// count stays an integer (a real that happens to be whole may be written as one too).
fn set_number(item: &mut Item, value: f64, source: &str) {
    let old = &item["value"];
    let written = old
        .as_float()
        .or_else(|| old.as_integer().map(|i| i as f64));
    if written != Some(value) {
        item["value"] = if old.as_integer().is_some() && value.fract() == 0.0 {
            toml_edit::value(value as i64)
        } else {
            toml_edit::value(value)
        };
    }
    if item["source"].as_str() != Some(source) {
        item["source"] = toml_edit::value(source);
    }
}

/// `x` to 5 significant digits, the precision fitted and derived numbers are written with.
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(4 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Prefixes the source of every `{ value, source }` number under `item` with the copy note.
fn mark_copied(item: &mut Item, base: &str) {
    if item.get("value").is_some() {
        if let Some(old) = item
            .get("source")
            .and_then(Item::as_str)
            .map(str::to_string)
        {
            if !old.starts_with("assumption: copied from") {
                item["source"] =
                    toml_edit::value(format!("assumption: copied from {base} ({old})"));
            }
        }
        return;
    }
    match item {
        Item::Table(t) => t.iter_mut().for_each(|(_, v)| mark_copied(v, base)),
        Item::ArrayOfTables(a) => a
            .iter_mut()
            .for_each(|t| t.iter_mut().for_each(|(_, v)| mark_copied(v, base))),
        Item::Value(_) | Item::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npu::profile::{real, BUILTIN};

    #[test]
    fn fitted_numbers_are_set_and_the_rest_marked_copied() {
        let (name, text) = BUILTIN.iter().find(|(n, _)| *n == "sa8255").unwrap();
        let id = Identity {
            name: "my-soc".into(),
            soc: "My SoC".into(),
            npu_arch: "HTP V79".into(),
            header: vec!["fitted for a test".into()],
        };
        let out = fitted_profile_text(
            name,
            text,
            &id,
            &[(
                Key::Fitted(Parameter::Int8CyclesPerTile),
                7.5,
                "derived: fitted to 3 estimates".into(),
            )],
            &[],
        )
        .unwrap();
        assert!(out.starts_with("# fitted for a test\n"), "{out}");
        let p = SocProfile::parse("my-soc", &out).unwrap();
        assert_eq!(p.name, "my-soc");
        assert_eq!(p.npu_arch, "HTP V79");
        assert_eq!(real(&p.npu.matrix.int8.cycles_per_tile), 7.5);
        assert_eq!(
            p.npu.matrix.int8.cycles_per_tile.get_ref().source,
            "derived: fitted to 3 estimates"
        );
        let clock = &p.npu.clock_ghz.get_ref().source;
        assert!(
            clock.starts_with("assumption: copied from sa8255 ("),
            "{clock}"
        );
        let core = &p.cpu.cores[0].clock_ghz.get_ref().source;
        assert!(
            core.starts_with("assumption: copied from sa8255 ("),
            "{core}"
        );
        // Refitting a profile onto itself keeps its own sources.
        let same = fitted_profile_text(
            "sa8255",
            text,
            &Identity {
                name: "sa8255".into(),
                ..id.clone()
            },
            &[],
            &[],
        )
        .unwrap();
        let p3 = SocProfile::parse("x", &same).unwrap();
        assert!(!p3
            .npu
            .clock_ghz
            .get_ref()
            .source
            .starts_with("assumption: copied"));
        // A section replaces the base's table, or is added where the base has none.
        let numerics = Section {
            table: "numerics",
            comment: vec!["probed".into()],
            keys: vec![
                ("f32_as_f16", Plain::Bool(false)),
                ("integer_rounding", Plain::Text("golden".into())),
                ("source", Plain::Text("measured: a probe".into())),
            ],
        };
        for base in ["sa8255", "dimensity-9300"] {
            let (_, text) = BUILTIN.iter().find(|(n, _)| *n == base).unwrap();
            let with =
                fitted_profile_text(base, text, &id, &[], std::slice::from_ref(&numerics)).unwrap();
            let p = SocProfile::parse("x", &with).unwrap();
            assert!(!p.numerics.f32_as_f16, "{base}");
            assert_eq!(p.numerics.source, "measured: a probe", "{base}");
            assert_eq!(with.matches("[numerics]").count(), 1, "{base}: {with}");
            assert!(with.contains("# probed\n[numerics]"), "{base}: {with}");
        }
        // Copying twice does not stack the note.
        let again = fitted_profile_text("my-soc", &out, &id, &[], &[]).unwrap();
        let p2 = SocProfile::parse("x", &again).unwrap();
        assert_eq!(p2.npu.clock_ghz.get_ref().source, *clock);
    }
}

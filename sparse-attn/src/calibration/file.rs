//! The versioned calibration file: pretty JSON with a format name and a version. Version 2
//! added [`Calibration::pilot_acc_range`] and [`Calibration::center_keys`], version 3
//! [`Calibration::budget`]; older files are read as they are, those fields taking their
//! defaults (range absent, keys not centered, the even rule).

use super::shape::ModelShape;
use super::Calibration;
use crate::error::{Result, SparseAttnError};
use shadowattn_hal::cache_file::write_atomic;
use std::path::Path;

/// Format name written into calibration files.
pub const FORMAT: &str = "shadowattn-calibration";
/// The calibration file version this build writes. Version 2 added
/// [`Calibration::pilot_acc_range`] and [`Calibration::center_keys`], version 3
/// [`Calibration::budget`]; older files are read with the range absent, keys not centered and
/// the even rule.
pub const VERSION: u32 = 3;

impl Calibration {
    /// The calibration as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("calibrations serialize")
    }

    /// Reads a calibration, checking its format, version and that it belongs to `expected`.
    pub fn from_json(text: &str, expected: Option<&ModelShape>) -> Result<Self> {
        let head: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| SparseAttnError::calibration("calibration", format!("not JSON: {e}")))?;
        check_header(&head)?;
        let c: Calibration = serde_json::from_value(head)
            .map_err(|e| SparseAttnError::calibration("calibration", e.to_string()))?;
        c.validate()?;
        if let Some(m) = expected {
            if &c.model != m {
                return Err(SparseAttnError::calibration(
                    "calibration.model",
                    format!("the file calibrates {:?}, not {:?}", c.model, m),
                ));
            }
        }
        Ok(c)
    }

    /// Writes the calibration to `path` (atomically, owner-only).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|e| SparseAttnError::Io {
            action: "write",
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Reads a calibration from `path` (see [`Calibration::from_json`]).
    pub fn load(path: &Path, expected: Option<&ModelShape>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SparseAttnError::Io {
            action: "read",
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::from_json(&text, expected)
    }
}

/// Checks a file's `format` and `version` before its fields are read: the format must be
/// [`FORMAT`] and the version one this build reads (1 to [`VERSION`]).
fn check_header(head: &serde_json::Value) -> Result<()> {
    if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(SparseAttnError::calibration(
            "calibration.format",
            format!(
                "expected \"{FORMAT}\", got {}",
                head.get("format").unwrap_or(&serde_json::Value::Null)
            ),
        ));
    }
    match head.get("version").and_then(|v| v.as_u64()) {
        // Older versions lack only fields with defaults: read as they are.
        Some(v) if (1..=u64::from(VERSION)).contains(&v) => Ok(()),
        other => Err(SparseAttnError::calibration(
            "calibration.version",
            format!("this build reads versions 1 to {VERSION}, the file is version {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::calibration::{mean_scales, Calibration, LayerSample, ModelShape, RatioConfig};

    #[test]
    fn files_round_trip_and_reject_other_versions_and_models() {
        let model = ModelShape {
            name: "m".into(),
            layers: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        let q = vec![0.5f32; 2 * 3 * 4];
        let k = vec![-1.0f32; 3 * 4];
        let samples = [
            LayerSample {
                layer: 0,
                q: &q,
                k: &k,
                rows: 3,
            },
            LayerSample {
                layer: 1,
                q: &q,
                k: &k,
                rows: 3,
            },
        ];
        let imp = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let c = Calibration::calibrate(
            model.clone(),
            &samples,
            &imp,
            RatioConfig::default(),
            1,
            0.5,
        )
        .unwrap();
        assert!((c.mean_q_scale - 0.5 / 127.0).abs() < 1e-9);
        let text = c.to_json();
        assert_eq!(Calibration::from_json(&text, Some(&model)).unwrap(), c);
        let other = ModelShape {
            layers: 3,
            ..model.clone()
        };
        let e = Calibration::from_json(&text, Some(&other)).unwrap_err();
        assert!(e.to_string().contains("calibration.model"), "{e}");
        let e = Calibration::from_json(&text.replace("\"version\": 3", "\"version\": 7"), None)
            .unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        // q·k = 4 · (0.5 · −1) = −2 on every pair; scales 0.5/127 and 1/127.
        let range = c.pilot_acc_range.unwrap();
        assert!((range - 2.0 * 127.0 * 127.0 / 0.5).abs() < 1e-2, "{range}");
        // A version-1 file (no range) is read, and asking it for an INT8 pilot names the fix.
        let old = Calibration {
            version: 1,
            pilot_acc_range: None,
            ..c.clone()
        };
        let migrated = Calibration::from_json(&old.to_json(), Some(&model)).unwrap();
        assert_eq!(migrated, old);
        // A version-2 file has no budget rule: its ratios were allocated for the even rule.
        let threshold = Calibration {
            budget: shadowattn_hal::BudgetRule {
                split: shadowattn_hal::RowSplit::Threshold,
                anchors: shadowattn_hal::Anchors {
                    sinks: 4,
                    recent: 16,
                },
                floor: 0.5,
                cap: Some(4.0),
            },
            ..c.clone()
        };
        let json = threshold.to_json();
        assert!(json.contains("\"split\": \"threshold\""), "{json}");
        assert_eq!(Calibration::from_json(&json, None).unwrap(), threshold);
        let mut v2: serde_json::Value = serde_json::from_str(&json).unwrap();
        v2["version"] = 2.into();
        v2.as_object_mut().unwrap().remove("budget");
        let read = Calibration::from_json(&v2.to_string(), None).unwrap();
        assert_eq!(read.budget, shadowattn_hal::BudgetRule::EVEN);
        let bad_rule = json.replace("\"floor\": 0.5", "\"floor\": 1.5");
        let e = Calibration::from_json(&bad_rule, None).unwrap_err();
        assert!(e.to_string().contains("budget"), "{e}");
        let bad_range = Calibration {
            pilot_acc_range: Some(f32::NAN),
            ..c.clone()
        };
        assert!(bad_range.validate().is_err());
        let e =
            Calibration::from_json(&text.replace("shadowattn-calibration", "x"), None).unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
        let bad_ratio = text.replacen(
            "\"ratios\": [\n    [\n      ",
            "\"ratios\": [\n    [\n      7.0, ",
            1,
        );
        assert!(Calibration::from_json(&bad_ratio, None).is_err());
        let bad = ModelShape {
            kv_heads: 3,
            ..model
        };
        assert!(mean_scales(&bad, &samples).is_err());
    }
}

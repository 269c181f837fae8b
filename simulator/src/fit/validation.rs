//! The error of a profile against a vendor's estimates, per graph family: the median
//! |log(simulated / vendor)|, the shares within ±5 %, ±10 % and ±25 %, and the worst graph.

use crate::fit::vendor::Residual;
use serde::Serialize;

/// A family's error statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyError {
    /// The family.
    pub family: String,
    /// Graphs compared.
    pub cells: usize,
    /// Median |ln(simulated / vendor)|.
    pub median_abs_log_error: f64,
    /// Share of graphs with |simulated / vendor − 1| ≤ 5 %.
    pub within_5_percent: f64,
    /// Share of graphs with |simulated / vendor − 1| ≤ 10 %.
    pub within_10_percent: f64,
    /// Share of graphs with |simulated / vendor − 1| ≤ 25 %.
    pub within_25_percent: f64,
    /// The graph with the largest |log error|.
    pub worst_graph: String,
    /// Its signed relative error, simulated / vendor − 1.
    pub worst_relative_error: f64,
}

/// The statistics of `residuals` as one family called `family`; `None` when it is empty.
pub fn family_error(family: &str, residuals: &[Residual]) -> Option<FamilyError> {
    let worst = residuals
        .iter()
        .max_by(|a, b| a.log_error().abs().total_cmp(&b.log_error().abs()))?;
    let mut abs: Vec<f64> = residuals.iter().map(|r| r.log_error().abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = if abs.len() % 2 == 1 {
        abs[abs.len() / 2]
    } else {
        (abs[abs.len() / 2 - 1] + abs[abs.len() / 2]) / 2.0
    };
    let share = |bound: f64| {
        residuals
            .iter()
            .filter(|r| r.relative_error().abs() <= bound + 1e-12)
            .count() as f64
            / residuals.len() as f64
    };
    Some(FamilyError {
        family: family.to_string(),
        cells: residuals.len(),
        median_abs_log_error: median,
        within_5_percent: share(0.05),
        within_10_percent: share(0.10),
        within_25_percent: share(0.25),
        worst_graph: worst.spec.to_string(),
        worst_relative_error: worst.relative_error(),
    })
}

/// The table as Markdown, one row per family.
pub fn markdown(rows: &[FamilyError]) -> String {
    let mut s = String::from(
        "| family | graphs | median abs log error | within ±5 % | within ±10 % | within ±25 % | worst graph | its error |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.1} % | {:.0} % | {:.0} % | {:.0} % | {} | {:+.1} % |\n",
            r.family,
            r.cells,
            r.median_abs_log_error * 100.0,
            r.within_5_percent * 100.0,
            r.within_10_percent * 100.0,
            r.within_25_percent * 100.0,
            r.worst_graph,
            r.worst_relative_error * 100.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::graph_families::GraphSpec;

    fn r(predicted: f64) -> Residual {
        Residual {
            spec: GraphSpec::pilot(1, 128, predicted as usize, 64),
            reference: 100.0,
            predicted,
        }
    }

    #[test]
    fn the_statistics_of_fixed_numbers() {
        // Relative errors +2 %, −4 %, +5 %, −8 %, +30 %.
        let rs = [r(102.0), r(96.0), r(105.0), r(92.0), r(130.0)];
        let e = family_error("f", &rs).unwrap();
        assert_eq!(e.cells, 5);
        // |ln| sorted: 0.0198, 0.0408, 0.0488, 0.0834, 0.2624 → median ln(1.05).
        assert!((e.median_abs_log_error - 1.05f64.ln()).abs() < 1e-12);
        assert!((e.within_5_percent - 0.6).abs() < 1e-12);
        assert!((e.within_10_percent - 0.8).abs() < 1e-12);
        assert!((e.within_25_percent - 0.8).abs() < 1e-12);
        assert!((e.worst_relative_error - 0.3).abs() < 1e-12);
        assert_eq!(e.worst_graph, GraphSpec::pilot(1, 128, 130, 64).to_string());
        // An even count takes the mean of the middle two.
        let e = family_error("f", &rs[..4]).unwrap();
        assert!((e.median_abs_log_error - (0.96f64.ln().abs() + 1.05f64.ln()) / 2.0).abs() < 1e-12);
        assert!(family_error("f", &[]).is_none());
        // The bounds are ±5 %, ±10 % and ±25 % exactly: +5.5 % is within 10 % only, −5 %
        // within all, +25 % within 25 % only, +25.5 % within none.
        let edge = family_error("f", &[r(105.5), r(95.0), r(125.0), r(125.5)]).unwrap();
        assert!((edge.within_5_percent - 0.25).abs() < 1e-12, "{edge:?}");
        assert!((edge.within_10_percent - 0.5).abs() < 1e-12, "{edge:?}");
        assert!((edge.within_25_percent - 0.75).abs() < 1e-12, "{edge:?}");
        let table = markdown(&[family_error("f", &rs).unwrap()]);
        assert!(
            table.contains("| f | 5 | 4.9 % | 60 % | 80 % | 80 % |"),
            "{table}"
        );
    }
}

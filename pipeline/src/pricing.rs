//! What the stages of a layer cost: a model that prices one launch or one step, and the priced
//! launches and units of one layer.

use crate::error::{PipelineError, Result};
use crate::stages::{Launch, Step};
use serde::{Deserialize, Serialize};

/// The work of one unit that its CPU steps depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitWork {
    /// Valid (query row, key) scores the top-k looks at, over all rows.
    pub valid_keys: u64,
    /// Selected (query row, key) pairs sparse attention attends to, over all rows.
    pub kept_pairs: u64,
}

/// Prices launches and steps, from a model of the device or from measurements on it.
pub trait CostModel: std::fmt::Debug + Send + Sync {
    /// NPU time of one launch of `fused` units, ns.
    fn launch_ns(&self, fused: usize) -> Result<f64>;

    /// CPU time of `step` for a unit doing `work`, ns.
    fn step_ns(&self, step: Step, work: UnitWork) -> f64;

    /// Checks the model's own figures, so a bad model is refused before any layer is planned.
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

impl<M: CostModel + ?Sized> CostModel for Box<M> {
    fn launch_ns(&self, fused: usize) -> Result<f64> {
        (**self).launch_ns(fused)
    }

    fn step_ns(&self, step: Step, work: UnitWork) -> f64 {
        (**self).step_ns(step, work)
    }

    fn validate(&self) -> Result<()> {
        (**self).validate()
    }
}

impl<M: CostModel + ?Sized> CostModel for std::sync::Arc<M> {
    fn launch_ns(&self, fused: usize) -> Result<f64> {
        (**self).launch_ns(fused)
    }

    fn step_ns(&self, step: Step, work: UnitWork) -> f64 {
        (**self).step_ns(step, work)
    }

    fn validate(&self) -> Result<()> {
        (**self).validate()
    }
}

/// CPU time of each step of one unit, ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCosts {
    /// Top-k, ns.
    pub topk_ns: f64,
    /// Sparse attention, ns.
    pub attention_ns: f64,
}

impl StepCosts {
    /// The time of `step`, ns.
    pub fn get(&self, step: Step) -> f64 {
        match step {
            Step::TopK => self.topk_ns,
            Step::Attention => self.attention_ns,
        }
    }

    /// Every step of a unit doing `work`, priced by `model`.
    pub fn priced(model: &dyn CostModel, work: UnitWork) -> Self {
        StepCosts {
            topk_ns: model.step_ns(Step::TopK, work),
            attention_ns: model.step_ns(Step::Attention, work),
        }
    }
}

/// The priced work of one layer: every launch and every unit's steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerCosts {
    /// NPU time of each launch, ns, indexed like the launches.
    pub launches: Vec<f64>,
    /// CPU times of each unit, indexed by unit.
    pub units: Vec<StepCosts>,
}

impl LayerCosts {
    /// `launches` and the units doing `work` (indexed by unit), priced by `model`.
    pub fn priced(model: &dyn CostModel, launches: &[Launch], work: &[UnitWork]) -> Result<Self> {
        Ok(LayerCosts {
            launches: launches
                .iter()
                .map(|l| model.launch_ns(l.units.len()))
                .collect::<Result<_>>()?,
            units: work.iter().map(|&w| StepCosts::priced(model, w)).collect(),
        })
    }

    /// Checks that the costs price exactly `launches` and their units, with durations only.
    pub fn check(&self, launches: &[Launch]) -> Result<()> {
        let bad = |detail: String| Err(PipelineError::Costs(detail));
        if self.launches.len() != launches.len() {
            return bad(format!(
                "{} launch costs for {} launches",
                self.launches.len(),
                launches.len()
            ));
        }
        Launch::check_cover(launches, self.units.len())?;
        let duration = |v: f64| v.is_finite() && v >= 0.0;
        if let Some((i, v)) = self
            .launches
            .iter()
            .enumerate()
            .find(|(_, v)| !duration(**v))
        {
            return bad(format!("launch {i} costs {v}, which is not a duration"));
        }
        for (u, c) in self.units.iter().enumerate() {
            for step in Step::ALL {
                if !duration(c.get(step)) {
                    return bad(format!(
                        "the {} of unit {u} costs {}, which is not a duration",
                        step.name(),
                        c.get(step)
                    ));
                }
            }
        }
        Ok(())
    }
}

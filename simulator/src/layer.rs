//! Timing a whole shadowAttn layer: NPU pilot launches overlapped with CPU stages on N cores.
//!
//! The NPU runs fused groups one after another in the given order. Each head then needs its
//! top-k (after its group's launch) and its sparse attention (after its top-k). CPU work is list
//! scheduled: whenever a core is free it takes, among the tasks whose inputs are ready, the one
//! that can start earliest, ties going to the earlier head in the CPU order (and top-k before
//! sparse attention of the same head).

use crate::error::{Result, SimError};
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};

/// One fused NPU launch.
#[derive(Clone, Debug, PartialEq)]
pub struct NpuGroup {
    /// Heads in the launch.
    pub heads: Vec<usize>,
    /// Duration of the launch, ns.
    pub npu_ns: f64,
}

/// CPU costs of one head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadCost {
    /// Top-k, ns.
    pub topk_ns: f64,
    /// Sparse softmax·V, ns.
    pub attention_ns: f64,
}

/// A layer's plan: NPU order of groups, CPU order of heads, and per-head CPU costs.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    /// Fused groups in NPU order.
    pub groups: Vec<NpuGroup>,
    /// Heads in CPU priority order.
    pub cpu_order: Vec<usize>,
    /// CPU costs, indexed by head.
    pub heads: Vec<HeadCost>,
}

/// The simulated layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTiming {
    /// Every NPU launch and CPU stage.
    pub events: Vec<ProfileEvent>,
    /// Time from the first launch to the last stage, ns.
    pub makespan_ns: u64,
    /// Time the NPU is busy, ns.
    pub npu_busy_ns: u64,
    /// Time the CPU cores are busy, summed over cores, ns.
    pub cpu_busy_ns: u64,
}

fn event(name: String, kind: EventKind, track: String, start: f64, end: f64) -> ProfileEvent {
    let start_ns = start.round() as u64;
    ProfileEvent {
        name,
        kind,
        track,
        start_ns,
        duration_ns: (end.round() as u64).saturating_sub(start_ns).max(1),
        cycles: None,
        source: FigureSource::Simulated,
    }
}

impl LayerPlan {
    fn validate(&self) -> Result<()> {
        let n = self.heads.len();
        let mut in_group = vec![0usize; n];
        for g in &self.groups {
            if g.heads.is_empty() {
                return Err(SimError::Schedule("an NPU group has no heads".into()));
            }
            if !(g.npu_ns.is_finite() && g.npu_ns >= 0.0) {
                return Err(SimError::Schedule(format!(
                    "NPU time {} is not a duration",
                    g.npu_ns
                )));
            }
            for &h in &g.heads {
                *in_group.get_mut(h).ok_or_else(|| {
                    SimError::Schedule(format!("head {h} has no CPU cost ({n} heads)"))
                })? += 1;
            }
        }
        if let Some(h) = in_group.iter().position(|&c| c != 1) {
            return Err(SimError::Schedule(format!(
                "head {h} appears in {} NPU groups; each head needs exactly one",
                in_group[h]
            )));
        }
        let mut seen = vec![false; n];
        for &h in &self.cpu_order {
            if h >= n || std::mem::replace(&mut seen[h], true) {
                return Err(SimError::Schedule(format!(
                    "CPU order {:?} is not a permutation of the {n} heads",
                    self.cpu_order
                )));
            }
        }
        if self.cpu_order.len() != n {
            return Err(SimError::Schedule(format!(
                "CPU order lists {} of {n} heads",
                self.cpu_order.len()
            )));
        }
        for (h, c) in self.heads.iter().enumerate() {
            if !(c.topk_ns.is_finite()
                && c.topk_ns >= 0.0
                && c.attention_ns.is_finite()
                && c.attention_ns >= 0.0)
            {
                return Err(SimError::Schedule(format!(
                    "head {h} has a cost that is not a duration"
                )));
            }
        }
        Ok(())
    }

    /// Simulates the layer on `cores` CPU cores.
    pub fn simulate(&self, cores: usize) -> Result<LayerTiming> {
        self.validate()?;
        if cores == 0 {
            return Err(SimError::Schedule("at least one CPU core is needed".into()));
        }
        let n = self.heads.len();
        let mut events = Vec::new();
        let mut npu_done = vec![0.0f64; n];
        let mut t_npu = 0.0;
        for (i, g) in self.groups.iter().enumerate() {
            let end = t_npu + g.npu_ns;
            let heads: Vec<String> = g.heads.iter().map(|h| h.to_string()).collect();
            events.push(event(
                format!("pilot group {i} (heads {})", heads.join(",")),
                EventKind::Launch,
                "npu".into(),
                t_npu,
                end,
            ));
            for &h in &g.heads {
                npu_done[h] = end;
            }
            t_npu = end;
        }
        // Tasks in priority order: (head, is_attention).
        let mut tasks: Vec<(usize, bool)> = self
            .cpu_order
            .iter()
            .flat_map(|&h| [(h, false), (h, true)])
            .collect();
        let mut topk_done: Vec<Option<f64>> = vec![None; n];
        let mut free = vec![0.0f64; cores];
        let mut cpu_busy = 0.0;
        let mut makespan = t_npu;
        while !tasks.is_empty() {
            let (core, core_free) = free
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("cores >= 1");
            let mut best: Option<(usize, f64)> = None;
            for (i, &(h, attn)) in tasks.iter().enumerate() {
                let ready = if attn {
                    match topk_done[h] {
                        Some(t) => t,
                        None => continue,
                    }
                } else {
                    npu_done[h]
                };
                let start = ready.max(core_free);
                if best.is_none_or(|(_, s)| start < s) {
                    best = Some((i, start));
                }
            }
            let (i, start) = best.expect("a top-k task is always schedulable");
            let (h, attn) = tasks.remove(i);
            let c = self.heads[h];
            let dur = if attn { c.attention_ns } else { c.topk_ns };
            let end = start + dur;
            if attn {
                events.push(event(
                    format!("sparse attention h{h}"),
                    EventKind::ComputeStage,
                    format!("cpu{core}"),
                    start,
                    end,
                ));
            } else {
                topk_done[h] = Some(end);
                events.push(event(
                    format!("top-k h{h}"),
                    EventKind::ComputeStage,
                    format!("cpu{core}"),
                    start,
                    end,
                ));
            }
            free[core] = end;
            cpu_busy += dur;
            makespan = makespan.max(end);
        }
        Ok(LayerTiming {
            events,
            makespan_ns: makespan.round() as u64,
            npu_busy_ns: t_npu.round() as u64,
            cpu_busy_ns: cpu_busy.round() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(groups: Vec<Vec<usize>>, npu: f64, topk: f64, attn: f64) -> LayerPlan {
        let n: usize = groups.iter().map(Vec::len).sum();
        LayerPlan {
            groups: groups
                .into_iter()
                .map(|heads| NpuGroup { heads, npu_ns: npu })
                .collect(),
            cpu_order: (0..n).collect(),
            heads: vec![
                HeadCost {
                    topk_ns: topk,
                    attention_ns: attn
                };
                n
            ],
        }
    }

    #[test]
    fn stages_overlap_and_respect_dependencies() {
        let t = plan(vec![vec![0], vec![1], vec![2]], 10.0, 3.0, 5.0)
            .simulate(1)
            .unwrap();
        // NPU finishes at 30; the last head's top-k starts at 30, attention after: 30 + 3 + 5.
        assert_eq!(t.makespan_ns, 38);
        assert_eq!(t.npu_busy_ns, 30);
        assert_eq!(t.cpu_busy_ns, 24);
        for h in 0..3 {
            let find = |p: &str| {
                t.events
                    .iter()
                    .find(|e| e.name == format!("{p} h{h}"))
                    .unwrap()
                    .clone()
            };
            assert!(find("top-k").end_ns() <= find("sparse attention").start_ns);
            assert!(find("top-k").start_ns >= 10 * (h as u64 + 1));
        }
    }

    #[test]
    fn more_cores_never_take_longer_and_bad_plans_are_rejected() {
        let p = plan(vec![vec![0, 1, 2, 3]], 10.0, 4.0, 20.0);
        let one = p.simulate(1).unwrap().makespan_ns;
        let two = p.simulate(2).unwrap().makespan_ns;
        assert!(two < one, "{two} vs {one}");
        assert!(p.simulate(0).is_err());
        let mut bad = p.clone();
        bad.groups.push(NpuGroup {
            heads: vec![0],
            npu_ns: 1.0,
        });
        assert!(bad.simulate(1).is_err());
        let mut bad = p.clone();
        bad.cpu_order = vec![0, 0, 1, 2];
        assert!(bad.simulate(1).is_err());
        let mut bad = p;
        bad.heads[1].topk_ns = f64::NAN;
        assert!(bad.simulate(1).is_err());
    }
}

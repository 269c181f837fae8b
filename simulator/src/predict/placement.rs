//! Which CPU cores run each CPU stage of a prefill: top-k, sparse attention, the dense
//! baseline and the glue between NPU graphs, each a team of threads on the SoC's clusters.

use crate::error::{Result, SimError};
use crate::npu::profile::{count, CpuCore, SocProfile};

/// The threads of one stage: `(cluster, threads)` pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Team {
    members: Vec<(CpuCore, usize)>,
}

impl Team {
    /// `threads` threads on cluster `core`.
    pub fn on(core: &CpuCore, threads: usize) -> Self {
        Team {
            members: vec![(core.clone(), threads)],
        }
    }

    /// A team from `cluster:threads` parts joined by `+` (`prime:1+mid:3`), each cluster one of
    /// `soc`'s with at least that many cores.
    pub fn parse(soc: &SocProfile, text: &str) -> Result<Self> {
        let bad = |detail: String| SimError::Placement(format!("team `{text}`: {detail}"));
        let mut members: Vec<(CpuCore, usize)> = Vec::new();
        for part in text.split('+') {
            let (name, n) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("`{part}` is not `cluster:threads`")))?;
            let threads: usize = n
                .parse()
                .ok()
                .filter(|&t| t > 0)
                .ok_or_else(|| bad(format!("`{n}` is not a thread count of at least 1")))?;
            let core = soc.core(name).ok_or_else(|| {
                let known: Vec<&str> = soc.cpu.cores.iter().map(|c| c.name.as_str()).collect();
                bad(format!(
                    "{} has no cluster `{name}` (it has {})",
                    soc.name,
                    known.join(", ")
                ))
            })?;
            if members.iter().any(|(c, _)| c.name == name) {
                return Err(bad(format!("cluster `{name}` is named twice")));
            }
            if threads as u64 > count(&core.count) {
                return Err(bad(format!(
                    "{threads} threads on `{name}`, which has {} core(s)",
                    count(&core.count)
                )));
            }
            members.push((core.clone(), threads));
        }
        Ok(Team { members })
    }

    /// Threads in the team.
    pub fn threads(&self) -> usize {
        self.members.iter().map(|(_, n)| n).sum()
    }

    /// The team's one cluster and its threads, when it has one cluster.
    pub fn single(&self) -> Option<(&CpuCore, usize)> {
        match self.members.as_slice() {
            [(core, n)] => Some((core, *n)),
            _ => None,
        }
    }

    /// Wall time of work split evenly over the threads (a static split, as an OpenMP team's
    /// default schedule): the slowest thread's share, where `whole_ns(core)` is the whole work
    /// on one core of that cluster.
    pub fn split_ns(&self, whole_ns: impl Fn(&CpuCore) -> f64) -> f64 {
        let slowest = self
            .members
            .iter()
            .map(|(core, _)| whole_ns(core))
            .fold(0.0, f64::max);
        slowest / self.threads() as f64
    }

    /// The same threads on `soc`'s clusters of the same names (a cluster `soc` lacks keeps
    /// its own figures).
    pub fn rebound(&self, soc: &SocProfile) -> Self {
        Team {
            members: self
                .members
                .iter()
                .map(|(c, n)| (soc.core(&c.name).unwrap_or(c).clone(), *n))
                .collect(),
        }
    }

    /// `1 prime (Cortex-X4) + 3 mid (Cortex-A720)`.
    pub fn describe(&self) -> String {
        self.members
            .iter()
            .map(|(c, n)| format!("{n} {} ({})", c.name, c.model))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The team of every CPU stage of a prefill.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlacement {
    /// Top-k over the pilot's scores.
    pub topk: Team,
    /// shadowAttn's sparse attention.
    pub attention: Team,
    /// The dense attention baseline and the dense layers (and decode).
    pub dense: Team,
    /// Normalization, RoPE, (de)quantization and the other glue between NPU graphs.
    pub glue: Team,
}

/// The stage names `--placement` takes.
pub const STAGES: [&str; 4] = ["topk", "attention", "dense", "glue"];

impl StagePlacement {
    /// Every stage on `threads` cores of `core`, top-k and attention of a head on one worker.
    pub fn uniform(core: &CpuCore, threads: usize) -> Self {
        let team = Team::on(core, threads);
        StagePlacement {
            topk: team.clone(),
            attention: team.clone(),
            dense: team.clone(),
            glue: team,
        }
    }

    /// `self` with the stages of `text` (`stage=team,…`, e.g.
    /// `topk=mid:2,attention=prime:1,dense=prime:1+mid:3`) placed as it says.
    pub fn with(mut self, soc: &SocProfile, text: &str) -> Result<Self> {
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (stage, team) = part.split_once('=').ok_or_else(|| {
                SimError::Placement(format!(
                    "placement `{part}` is not `stage=cluster:threads[+cluster:threads]` (stages: {})",
                    STAGES.join(", ")
                ))
            })?;
            let team = Team::parse(soc, team)?;
            match stage {
                "topk" => self.topk = team,
                "attention" => self.attention = team,
                "dense" => self.dense = team,
                "glue" => self.glue = team,
                other => {
                    return Err(SimError::Placement(format!(
                        "placement names stage `{other}`; stages: {}",
                        STAGES.join(", ")
                    )))
                }
            }
        }
        Ok(self)
    }

    /// The same placement on `soc`'s clusters of the same names (e.g. `soc` at one end of
    /// [`crate::predict::setups::at_end`]).
    pub fn rebound(&self, soc: &SocProfile) -> Self {
        StagePlacement {
            topk: self.topk.rebound(soc),
            attention: self.attention.rebound(soc),
            dense: self.dense.rebound(soc),
            glue: self.glue.rebound(soc),
        }
    }

    /// Whether top-k and attention of a head run as one job on one team (the core's executor)
    /// rather than as two stages on two teams.
    pub fn joint(&self) -> bool {
        self.topk == self.attention
    }

    /// One line per stage, for reports.
    pub fn describe(&self) -> String {
        format!(
            "top-k on {}; sparse attention on {}; dense attention on {}; glue on {}",
            self.topk.describe(),
            self.attention.describe(),
            self.dense.describe(),
            self.glue.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_parse_and_split_work_by_their_slowest_thread() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let t = Team::parse(&soc, "prime:1+mid:3").unwrap();
        assert_eq!(t.threads(), 4);
        assert!(t.single().is_none());
        // A static split: each thread takes a quarter, the mid cores finish last.
        let ns = t.split_ns(|c| if c.name == "mid" { 400.0 } else { 200.0 });
        assert_eq!(ns, 100.0);
        for bad in ["prime:2", "mid:0", "gpu:1", "mid", "mid:1+mid:1", "mid:x"] {
            let e = Team::parse(&soc, bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let mid = soc.core("mid").unwrap();
        let p = StagePlacement::uniform(mid, 1)
            .with(&soc, "topk=mid:2,attention=prime:1")
            .unwrap();
        assert!(!p.joint());
        assert_eq!(p.dense, Team::on(mid, 1));
        assert!(StagePlacement::uniform(mid, 1).joint());
        assert_eq!(t.describe(), "1 prime (Cortex-X4) + 3 mid (Cortex-A720)");
        assert_eq!(
            p.describe(),
            "top-k on 2 mid (Cortex-A720); sparse attention on 1 prime (Cortex-X4); \
             dense attention on 1 mid (Cortex-A720); glue on 1 mid (Cortex-A720)"
        );
        let e = StagePlacement::uniform(mid, 1)
            .with(&soc, "pack=mid:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`pack`"), "{e}");
    }
}

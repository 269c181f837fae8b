//! The simulated SoC as a device model: what the registry hands callers so they can price a
//! layer, and the NPU-only strategies, without naming the profile type.

use crate::npu::profile::{count, CpuCore, SocProfile};
use crate::predict::layer::SocCosts;
use crate::predict::npu_strategies::{npu_fp16_flash, npu_full_int8, AttentionChunk};
use crate::predict::setups::{at_end, End};
use shadowattn_hal::ir::Graph;
use shadowattn_hal::AttentionShape;
use shadowattn_pipeline::{
    DeviceModel, LayerPrices, NpuStrategies, NpuStrategyPrice, PipelineError, Placement,
    SelectionSharing,
};

/// A SoC profile as a [`DeviceModel`].
#[derive(Clone, Debug)]
pub struct SimulatedSoc {
    profile: SocProfile,
}

impl SimulatedSoc {
    /// The model of `profile`'s SoC.
    pub fn new(profile: SocProfile) -> Self {
        SimulatedSoc { profile }
    }

    /// The core cluster `placement` picks ([`placed_core`]).
    pub fn core(&self, placement: &Placement) -> shadowattn_pipeline::Result<&CpuCore> {
        placed_core(&self.profile, placement)
    }
}

/// The core cluster of `soc` that `placement` picks, checked to have that many cores.
pub fn placed_core<'a>(
    soc: &'a SocProfile,
    placement: &Placement,
) -> shadowattn_pipeline::Result<&'a CpuCore> {
    let core = match &placement.cluster {
        Some(name) => soc.core(name).ok_or_else(|| {
            let names: Vec<&str> = soc.cpu.cores.iter().map(|c| c.name.as_str()).collect();
            PipelineError::Device(format!(
                "SoC `{}` has no core cluster `{name}`; it has: {}",
                soc.name,
                names.join(", ")
            ))
        })?,
        None => soc
            .core("mid")
            .or_else(|| soc.cpu.cores.first())
            .ok_or_else(|| {
                PipelineError::Device(format!("SoC profile `{}` has no CPU core", soc.name))
            })?,
    };
    let available = count(&core.count) as usize;
    if placement.cores == 0 || placement.cores > available {
        return Err(PipelineError::Device(format!(
            "{} cores is outside 1..={available} ({available} `{}` cores on {})",
            placement.cores, core.name, soc.name
        )));
    }
    Ok(core)
}

impl DeviceModel for SimulatedSoc {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn describe(&self) -> String {
        let twins = self.profile.compute_twins();
        let alike = if twins.is_empty() {
            String::new()
        } else {
            format!(
                "; its NPU computes as {}'s, no public figure distinguishes them",
                twins.join(", ")
            )
        };
        format!(
            "simulator of {} ({}; pilot launches priced as {}, other graphs as {}{alike})",
            self.profile.soc,
            self.profile.npu_arch,
            self.profile.pilot_path(),
            self.profile.graph_path()
        )
    }

    fn ends(&self) -> Vec<(&'static str, Box<dyn DeviceModel>)> {
        End::BOTH
            .into_iter()
            .map(|end| {
                let device: Box<dyn DeviceModel> =
                    Box::new(SimulatedSoc::new(at_end(&self.profile, end)));
                (end.name(), device)
            })
            .collect()
    }

    fn cluster(&self, placement: &Placement) -> shadowattn_pipeline::Result<String> {
        Ok(self.core(placement)?.name.clone())
    }

    fn layer_prices(
        &self,
        placement: &Placement,
        pilots: &[(usize, Graph)],
        (kv_len, head_dim): (usize, usize),
        sharing: SelectionSharing,
        split: shadowattn_hal::RowSplit,
    ) -> shadowattn_pipeline::Result<Box<dyn LayerPrices>> {
        let costs = SocCosts::new(
            &self.profile,
            self.core(placement)?,
            pilots.iter().cloned(),
            kv_len,
            head_dim,
            sharing,
        )
        .with_split(split)
        .map_err(|e| PipelineError::Device(e.to_string()))?;
        Ok(Box::new(costs))
    }

    fn npu_strategies(&self, shape: &AttentionShape) -> shadowattn_pipeline::Result<NpuStrategies> {
        let chunk = AttentionChunk {
            q_heads: shape.q_heads,
            kv_heads: shape.kv_heads,
            q_len: shape.q_len,
            kv_len: shape.kv_len,
            head_dim: shape.head_dim,
            causal: shape.causal,
        };
        let device = |e: crate::SimError| PipelineError::Device(e.to_string());
        let full = npu_full_int8(&self.profile, &chunk).map_err(device)?;
        let flash = npu_fp16_flash(&self.profile, &chunk).map_err(device)?;
        Ok(NpuStrategies {
            full_int8: NpuStrategyPrice {
                launch_warm_ns: full.launch_warm_ns,
                host_io_ns: full.host_io_ns,
                accelerator_ns: full.accelerator_ns(),
                blocks: None,
            },
            fp16_flash: NpuStrategyPrice {
                launch_warm_ns: flash.launch_warm_ns,
                host_io_ns: flash.host_io_ns,
                accelerator_ns: flash.accelerator_ns(),
                blocks: Some((flash.blocks.br, flash.blocks.bc)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soc() -> SimulatedSoc {
        SimulatedSoc::new(SocProfile::builtin("snapdragon-8-gen-3").unwrap())
    }

    #[test]
    fn placement_names_the_cluster_and_refuses_what_the_soc_lacks() {
        let s = soc();
        let at = |cluster: Option<&str>, cores| Placement {
            cluster: cluster.map(str::to_string),
            cores,
        };
        assert_eq!(s.cluster(&at(None, 1)).unwrap(), "mid");
        assert_eq!(s.cluster(&at(Some("prime"), 1)).unwrap(), "prime");
        let e = s.cluster(&at(Some("tiny"), 1)).unwrap_err().to_string();
        assert!(
            e.contains("no core cluster `tiny`") && e.contains("mid"),
            "{e}"
        );
        let e = s.cluster(&at(Some("prime"), 2)).unwrap_err().to_string();
        assert!(e.contains("outside 1..=1"), "{e}");
        assert!(s.cluster(&at(None, 0)).is_err());
    }

    #[test]
    fn npu_strategies_are_the_baselines_prices() {
        let s = soc();
        let shape = AttentionShape::causal(12, 2, 128, 2048, 128);
        let p = s.npu_strategies(&shape).unwrap();
        let chunk = AttentionChunk {
            q_heads: 12,
            kv_heads: 2,
            q_len: 128,
            kv_len: 2048,
            head_dim: 128,
            causal: true,
        };
        let full = npu_full_int8(&s.profile, &chunk).unwrap();
        let flash = npu_fp16_flash(&s.profile, &chunk).unwrap();
        assert_eq!(p.full_int8.total_ns(), full.launch_ns(false));
        assert_eq!(p.fp16_flash.total_ns(), flash.launch_ns());
        assert_eq!(
            p.fp16_flash.blocks,
            Some((flash.blocks.br, flash.blocks.bc))
        );
        assert!(p.full_int8.total_ns() > 0.0 && p.full_int8.blocks.is_none());
    }
}

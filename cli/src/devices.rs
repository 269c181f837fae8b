//! `shadowattn devices`: every backend the registry knows, whether it loads here (with its
//! version) or why not (every path tried).

use crate::backends::open_options;
use shadowattn_opencl::list_devices;
use shadowattn_registry::{compute_backends, npu_backends, ComputeSpec, NpuSpec};

fn line(name: &str, result: Result<String, String>) {
    match result {
        Ok(v) => println!("{name}\tavailable\t{v}"),
        Err(why) => {
            let mut lines = why.lines();
            println!("{name}\tunavailable\t{}", lines.next().unwrap_or_default());
            for l in lines {
                println!("  {}", l.trim_start());
            }
        }
    }
}

fn npu(spec: &NpuSpec) {
    let result = spec.open(&open_options()).map(|opened| {
        let b = opened.backend;
        match (spec, &opened.device) {
            (NpuSpec::Cpu, _) => format!(
                "golden reference {} (the interpreter as NPU, the kernels as compute)",
                b.version()
            ),
            (_, Some(device)) => device.describe(),
            _ => b.version(),
        }
    });
    line(&spec.to_string(), result.map_err(|e| e.to_string()));
}

/// Every OpenCL device, by `opencl:<platform>:<device>`, or why there is none.
fn opencl_devices() {
    match list_devices(None) {
        Ok((lib, devices)) if !devices.is_empty() => {
            for d in devices {
                line(
                    &format!("opencl:{}:{}", d.platform_index, d.index),
                    Ok(format!(
                        "{} on {}, {}, {} CUs, {} MiB, fp16 {} ({})",
                        d.name,
                        d.platform_name,
                        d.device_type.label(),
                        d.compute_units,
                        d.global_mem_size >> 20,
                        if d.has_fp16() { "yes" } else { "no" },
                        lib.path()
                    )),
                );
            }
        }
        Ok((lib, _)) => line(
            "opencl",
            Err(format!("{}: the platforms expose no device", lib.path())),
        ),
        Err(e) => line("opencl", Err(e.to_string())),
    }
}

/// Runs the command.
pub fn run() {
    for spec in npu_backends() {
        npu(&spec);
    }
    let mut listed_opencl = false;
    for spec in compute_backends() {
        match &spec {
            // The golden kernels are the `cpu` line above.
            ComputeSpec::Cpu => {}
            ComputeSpec::CpuFast { .. } => {
                let result = spec.open(&open_options()).map(|b| {
                    format!(
                        "fast CPU kernels, K/V stored as {:?}",
                        b.capabilities().kv_storage
                    )
                });
                line(&spec.to_string(), result.map_err(|e| e.to_string()));
            }
            ComputeSpec::OpenCl { .. } if !listed_opencl => {
                listed_opencl = true;
                opencl_devices();
            }
            ComputeSpec::OpenCl { .. } => {}
        }
    }
}

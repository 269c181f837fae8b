//! `shadowattn devices`: which backends load here, with versions, or every path tried and why.

use shadowattn_hal::NpuBackend;
use shadowattn_neuron::NeuronLibrary;
use shadowattn_opencl::list_devices;
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::profile::builtin_names;
use shadowattn_simulator::SocProfile;

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

/// Runs the command.
pub fn run() {
    line(
        "cpu",
        Ok(format!("golden reference {}", env!("CARGO_PKG_VERSION"))),
    );
    for soc in builtin_names() {
        line(
            &format!("sim:{soc}"),
            SocProfile::builtin(soc)
                .map(|p| format!("simulator of {} ({})", p.soc, p.npu_arch))
                .map_err(|e| e.to_string()),
        );
    }
    line(
        "qnn:htp",
        QnnBackend::open(QnnOptions::default())
            .map(|b| format!("{} ({})", b.version(), b.library().path()))
            .map_err(|e| e.to_string()),
    );
    line(
        "neuron",
        NeuronLibrary::find(None)
            .map(|l| {
                let v = l.version();
                format!(
                    "Neuron runtime {}.{}.{} ({})",
                    v.major,
                    v.minor,
                    v.patch,
                    l.path()
                )
            })
            .map_err(|e| e.to_string()),
    );
    // Compute-kernel backends on the GPU side: every OpenCL device, by `opencl:<platform>:<device>`.
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
